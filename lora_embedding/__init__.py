"""Embed LoRA files from their weights, and search, cluster and sort a LoRA library.

The package imports nothing heavy at import time, so host applications
(ComfyUI, Stable Diffusion WebUI) can import it during start-up.
"""

__version__ = "0.1.0"

"""The Gradio UI, shared by the Stable Diffusion WebUI tab and the standalone app.

Importing this package does not import Gradio; :func:`build_ui` and
:func:`launch` do.
"""

__all__ = ["build_ui", "launch"]


def build_ui(*args, **kwargs):
    """Build the app as a ``gr.Blocks``; see :func:`lora_embedding.ui.app.build_ui`."""
    from .app import build_ui as build

    return build(*args, **kwargs)


def launch(*args, **kwargs):
    """Build and serve the standalone app; see :func:`lora_embedding.ui.app.launch`."""
    from .app import launch as serve

    return serve(*args, **kwargs)

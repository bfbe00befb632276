"""Stable Diffusion WebUI (AUTOMATIC1111 and Forge) entry: adds the "LoRA Embedding" tab.

WebUI imports every file in an extension's ``scripts/`` folder at start-up,
so this file only registers a callback. The library, Gradio UI and numpy
are imported when WebUI builds its tabs, and no LoRA is read until the user
presses a button in the tab.
"""

import logging
import os
import sys

from modules import script_callbacks, scripts, shared

logger = logging.getLogger(__name__)

TAB_TITLE = "LoRA Embedding"
TAB_ID = "lora_embedding"

# WebUI sets basedir() to the extension being loaded only while it imports
# the extension's scripts, so it is read here and not inside the callback.
EXTENSION_DIR = scripts.basedir()


def _lora_folder():
    """Return WebUI's LoRA folder: ``--lora-dir``, else ``models/Lora`` under WebUI's models folder."""
    folder = getattr(getattr(shared, "cmd_opts", None), "lora_dir", None)
    if folder:
        return os.path.abspath(folder)
    models = getattr(shared, "models_path", None) or os.path.join(os.getcwd(), "models")
    return os.path.abspath(os.path.join(models, "Lora"))


def _make_package_importable():
    if EXTENSION_DIR and EXTENSION_DIR not in sys.path:
        sys.path.insert(0, EXTENSION_DIR)


def on_ui_tabs():
    """Build the tab; WebUI calls this once while it builds its interface."""
    _make_package_importable()
    from lora_embedding.ui import build_ui

    folder = _lora_folder()
    logger.info("LoRA Embedding tab for %s", folder)
    blocks = build_ui([folder], executor="thread", folders_editable=True)
    return [(blocks, TAB_TITLE, TAB_ID)]


script_callbacks.on_ui_tabs(on_ui_tabs)

"""ComfyUI entry point of the LoRA Embedding node pack.

ComfyUI imports this file from ``custom_nodes/<folder>/``. It only declares
the nodes: nothing is scanned or embedded until a node runs. Any error here
is logged and leaves the pack without nodes, so ComfyUI always starts.
"""

import importlib.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))


def _make_core_importable():
    # The nodes import the core package as ``lora_embedding``, and a clone in
    # custom_nodes is not on sys.path. Appending (not prepending) keeps
    # ComfyUI's own modules, such as its ``nodes``, ahead of this folder.
    if importlib.util.find_spec("lora_embedding") is None:
        sys.path.append(_PACK_DIR)


def _registration():
    try:
        _make_core_importable()
        from .nodes import registration

        return registration()
    except Exception:  # host-safety boundary: a broken pack must not stop ComfyUI from starting
        logger.exception("LoRA Embedding: the node pack failed to load from %s; its nodes are unavailable", _PACK_DIR)
        return {"NODE_CLASS_MAPPINGS": {}, "NODE_DISPLAY_NAME_MAPPINGS": {}}


_EXPORTS = _registration()

if "comfy_entrypoint" in _EXPORTS:
    comfy_entrypoint = _EXPORTS["comfy_entrypoint"]
    __all__ = ["comfy_entrypoint"]
else:
    NODE_CLASS_MAPPINGS = _EXPORTS["NODE_CLASS_MAPPINGS"]
    NODE_DISPLAY_NAME_MAPPINGS = _EXPORTS["NODE_DISPLAY_NAME_MAPPINGS"]
    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

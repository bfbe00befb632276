"""The ComfyUI nodes of LoRA Embedding: thin wrappers over ``lora_embedding.library``.

:func:`registration` returns what the pack's root ``__init__.py`` exports:
a V3 ``comfy_entrypoint`` when ComfyUI has ``comfy_api.latest``, otherwise
legacy ``NODE_CLASS_MAPPINGS``. A node is registered one way only.
"""

import logging

logger = logging.getLogger(__name__)

__all__ = ["node_specs", "registration"]


def node_specs():
    """Return the declaration of every node, in menu order."""
    from . import find_similar, index_library, library_map, load_similar, recommend

    return [find_similar.SPEC, load_similar.SPEC, recommend.SPEC, library_map.SPEC, index_library.SPEC]


def _has_v3_api():
    try:
        from comfy_api.latest import ComfyExtension, io  # noqa: F401
    except ImportError:
        return False
    return True


def _v3_exports():
    from comfy_api.latest import ComfyExtension

    from .v3_adapter import build_node

    class LoraEmbeddingExtension(ComfyExtension):
        async def get_node_list(self):
            try:
                return [build_node(spec) for spec in node_specs()]
            except Exception:  # host-safety boundary: ComfyUI must start even when a node cannot be built
                logger.exception("LoRA Embedding: building the nodes failed; the pack registers none")
                return []

    async def comfy_entrypoint():
        return LoraEmbeddingExtension()

    return {"comfy_entrypoint": comfy_entrypoint}


def _v1_exports():
    from .v1_adapter import build_node

    specs = node_specs()
    return {
        "NODE_CLASS_MAPPINGS": {spec.node_id: build_node(spec) for spec in specs},
        "NODE_DISPLAY_NAME_MAPPINGS": {spec.node_id: spec.display_name for spec in specs},
    }


def registration():
    """Return the module attributes that register the nodes with the running ComfyUI."""
    if _has_v3_api():
        return _v3_exports()
    logger.info("LoRA Embedding: comfy_api.latest not found, registering legacy nodes")
    return _v1_exports()

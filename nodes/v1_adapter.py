"""Build legacy ComfyUI nodes (``INPUT_TYPES`` classes) from the pack's node declarations.

Used only on ComfyUI versions without ``comfy_api.latest``. These nodes show
their result text but not their preview images on the node. The IMAGE
outputs work as usual.
"""

import logging

from .lora_names import LoraNameList, lora_names
from .sockets import LORA_NAME

logger = logging.getLogger(__name__)

__all__ = ["build_node"]


def _input(spec):
    options = {"tooltip": spec.tooltip}
    settings = {"default": spec.default, "min": spec.minimum, "max": spec.maximum, "step": spec.step}
    options.update({key: value for key, value in settings.items() if value is not None})
    if spec.kind == "STRING":
        options["multiline"] = spec.multiline
    if spec.seed:
        options["control_after_generate"] = True
    if spec.kind == LORA_NAME:
        return (lora_names(), options)
    if spec.kind == "COMBO":
        return (list(spec.options), options)
    return (spec.kind, options)


def build_node(spec):
    """Return a legacy node class that runs ``spec``."""

    def input_types(cls):
        required = {item.name: _input(item) for item in spec.inputs if not item.optional}
        optional = {item.name: _input(item) for item in spec.inputs if item.optional}
        return {"required": required, "optional": optional}

    def run(self, **inputs):
        result = spec.run(**inputs)
        ui_output = {"text": (result.text,)} if result.text is not None else {}
        return {"ui": ui_output, "result": tuple(result.values)}

    attributes = {
        "INPUT_TYPES": classmethod(input_types),
        "RETURN_TYPES": tuple(LoraNameList() if item.kind == LORA_NAME else item.kind for item in spec.outputs),
        "RETURN_NAMES": tuple(item.name for item in spec.outputs),
        "OUTPUT_IS_LIST": tuple(item.is_list for item in spec.outputs),
        "OUTPUT_TOOLTIPS": tuple(item.tooltip for item in spec.outputs),
        "FUNCTION": "run",
        "CATEGORY": spec.category,
        "DESCRIPTION": spec.description,
        "OUTPUT_NODE": spec.output_node,
        "run": run,
    }
    if spec.fingerprint is not None:
        attributes["IS_CHANGED"] = classmethod(lambda cls, **inputs: spec.fingerprint(**inputs))
    return type(spec.node_id, (), attributes)

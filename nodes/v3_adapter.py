"""Build ComfyUI V3 nodes (``comfy_api.latest.io.ComfyNode``) from the pack's node declarations."""

import logging

from comfy_api.latest import io, ui

from .lora_names import LoraNameList, lora_names
from .sockets import LORA_NAME

logger = logging.getLogger(__name__)

__all__ = ["build_node"]


def _input(spec):
    common = {"tooltip": spec.tooltip, "optional": spec.optional}
    if spec.kind == LORA_NAME:
        return io.Combo.Input(spec.name, options=lora_names(), **common)
    if spec.kind == "COMBO":
        return io.Combo.Input(spec.name, options=list(spec.options), default=spec.default, **common)
    if spec.kind == "INT":
        return io.Int.Input(spec.name, default=spec.default, min=spec.minimum, max=spec.maximum, step=spec.step,
                            control_after_generate=True if spec.seed else None, **common)
    if spec.kind == "FLOAT":
        return io.Float.Input(spec.name, default=spec.default, min=spec.minimum, max=spec.maximum, step=spec.step,
                              **common)
    if spec.kind == "BOOLEAN":
        return io.Boolean.Input(spec.name, default=spec.default, **common)
    if spec.kind == "STRING":
        return io.String.Input(spec.name, default=spec.default, multiline=spec.multiline, **common)
    if spec.kind == "MODEL":
        return io.Model.Input(spec.name, **common)
    return io.Clip.Input(spec.name, **common)


def _output(spec):
    common = {"display_name": spec.name, "tooltip": spec.tooltip, "is_output_list": spec.is_list}
    if spec.kind == LORA_NAME:
        return io.Combo.Output(options=LoraNameList(lora_names()), **common)
    kinds = {"STRING": io.String, "FLOAT": io.Float, "IMAGE": io.Image, "MODEL": io.Model, "CLIP": io.Clip}
    return kinds[spec.kind].Output(**common)


def _ui(result, node_class):
    """Return the ``ui`` dict of a run: its text and its preview images saved to ComfyUI's temp folder."""
    ui_output = {}
    if result.text is not None:
        ui_output.update(ui.PreviewText(result.text).as_dict())
    if result.preview is not None:
        ui_output.update(ui.PreviewImage(result.preview, cls=node_class).as_dict())
    return ui_output or None


def build_node(spec):
    """Return an ``io.ComfyNode`` subclass that runs ``spec``."""

    class Node(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id=spec.node_id,
                display_name=spec.display_name,
                category=spec.category,
                description=spec.description,
                inputs=[_input(item) for item in spec.inputs],
                outputs=[_output(item) for item in spec.outputs],
                is_output_node=spec.output_node,
            )

        @classmethod
        def execute(cls, **inputs):
            result = spec.run(**inputs)
            return io.NodeOutput(*result.values, ui=_ui(result, cls))

        if spec.fingerprint is not None:
            @classmethod
            def fingerprint_inputs(cls, **inputs):
                return spec.fingerprint(**inputs)

    Node.__name__ = Node.__qualname__ = spec.node_id
    return Node

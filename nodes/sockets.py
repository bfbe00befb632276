"""Host-neutral declarations of the pack's nodes: their inputs, outputs and run function.

Each node module declares one :class:`NodeSpec`. ``v3_adapter`` turns it into
a ComfyUI V3 ``io.ComfyNode`` class and ``v1_adapter`` into a legacy
``INPUT_TYPES`` class, so one declaration serves both APIs and the node
logic stays testable without ComfyUI.
"""

from dataclasses import dataclass

__all__ = ["InputSpec", "NodeResult", "NodeSpec", "OutputSpec", "LORA_NAME", "CATEGORY"]

CATEGORY = "loaders/LoRA Embedding"
"""The "Add Node" menu folder of every node in the pack."""

LORA_NAME = "LORA_NAME"
"""Socket kind of a LoRA file name from ComfyUI's ``loras`` list.

As an input it is a combo of ``folder_paths.get_filename_list("loras")``. As
an output it has the same combo type, so it links to ``LoraLoader.lora_name``.
"""

INPUT_KINDS = ("LORA_NAME", "COMBO", "INT", "FLOAT", "BOOLEAN", "STRING", "MODEL", "CLIP")
OUTPUT_KINDS = ("LORA_NAME", "STRING", "FLOAT", "IMAGE", "MODEL", "CLIP")


@dataclass
class InputSpec:
    """One node input.

    Attributes
    ----------
    name : str
        The keyword the run function receives.
    kind : str
        One of ``INPUT_KINDS``.
    tooltip : str
        Help text shown when hovering the socket.
    default, minimum, maximum, step : optional
        Widget settings for numbers, combos and text.
    options : list of str, optional
        The choices of a ``COMBO`` input.
    optional : bool
        Whether the input may stay unconnected.
    multiline : bool
        For ``STRING``: a text box instead of a one-line field.
    seed : bool
        For ``INT``: show ComfyUI's "control after generate" widget.
    """

    name: str
    kind: str
    tooltip: str
    default: object = None
    minimum: float = None
    maximum: float = None
    step: float = None
    options: list = None
    optional: bool = False
    multiline: bool = False
    seed: bool = False

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"input {self.name!r}: kind={self.kind!r} is invalid; use one of {INPUT_KINDS}")
        if not self.tooltip:
            raise ValueError(f"input {self.name!r} has no tooltip; every input needs one")


@dataclass
class OutputSpec:
    """One node output.

    Attributes
    ----------
    name : str
        Socket label.
    kind : str
        One of ``OUTPUT_KINDS``.
    tooltip : str
    is_list : bool
        The output is a ComfyUI output list: downstream nodes run once per item.
    """

    name: str
    kind: str
    tooltip: str
    is_list: bool = False

    def __post_init__(self):
        if self.kind not in OUTPUT_KINDS:
            raise ValueError(f"output {self.name!r}: kind={self.kind!r} is invalid; use one of {OUTPUT_KINDS}")


@dataclass
class NodeResult:
    """The return value of a node's run function.

    Attributes
    ----------
    values : tuple
        One value per output, in declaration order. An ``is_list`` output
        gets a Python list.
    text : str, optional
        Text shown on the node after it runs.
    preview : torch.Tensor, optional
        An IMAGE batch ``[B, H, W, C]`` shown on the node after it runs.
    """

    values: tuple
    text: str = None
    preview: object = None


@dataclass
class NodeSpec:
    """A node of the pack, independent of the ComfyUI node API version.

    Attributes
    ----------
    node_id : str
        The id saved in workflows; never change it.
    display_name, description : str
    inputs : list of InputSpec
    outputs : list of OutputSpec
    run : callable
        ``run(**inputs) -> NodeResult``.
    fingerprint : callable, optional
        ``fingerprint(**inputs) -> value``; ComfyUI runs the node again
        when the value differs from the last run.
    output_node : bool
        The node runs even when nothing consumes its outputs.
    """

    node_id: str
    display_name: str
    description: str
    inputs: list
    outputs: list
    run: object
    fingerprint: object = None
    output_node: bool = False
    category: str = CATEGORY

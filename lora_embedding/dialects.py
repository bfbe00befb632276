"""Split LoRA file keys into module prefixes and tensor roles, and group them per module.

A key is ``<component prefix><module path><separator><tensor suffix>``. The
tensor suffix (``lora_down.weight``, ``lora_A.default.weight``,
``_lora.down.weight``, ``hada_w1_a``, ``alpha`` ...) is matched by one
anchored regular expression, so parsing is linear in the number of keys.
The component prefix (``lora_unet_``, ``text_encoder.``, ``base_model.model.``,
``lycoris_`` ...) shows which model part the path belongs to and which
dialect wrote it. Module paths are compared in their underscored spelling,
which makes kohya names, dotted diffusers paths and the half-converted keys
of ``convert_state_dict_to_kohya`` (``…_attn2.to_k.lora_magnitude_vector``)
land in the same group.
"""

import re
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["ModuleGroup", "detect_format", "group_keys", "parse_key"]

# Tensor suffix -> role. Longer, more specific suffixes win because the regex
# prefers the earliest (so longest) suffix that matches at the end of the key.
SUFFIX_ROLES = {
    "lora_down.weight": "down",
    "lora_up.weight": "up",
    "lora_mid.weight": "mid",
    "lora.down.weight": "down",
    "lora.up.weight": "up",
    "lora_linear_layer.down.weight": "down",
    "lora_linear_layer.up.weight": "up",
    "down.weight": "down",
    "up.weight": "up",
    "lora_A": "down",
    "lora_B": "up",
    "lora_B.bias": "bias",
    "alpha": "alpha",
    "scale": "scale",
    "dora_scale": "dora_scale",
    "lora_magnitude_vector": "dora_scale",
    "hada_w1_a": "hada_w1_a",
    "hada_w1_b": "hada_w1_b",
    "hada_w2_a": "hada_w2_a",
    "hada_w2_b": "hada_w2_b",
    "hada_t1": "hada_t1",
    "hada_t2": "hada_t2",
    "lokr_w1": "lokr_w1",
    "lokr_w1_a": "lokr_w1_a",
    "lokr_w1_b": "lokr_w1_b",
    "lokr_w2": "lokr_w2",
    "lokr_w2_a": "lokr_w2_a",
    "lokr_w2_b": "lokr_w2_b",
    "lokr_t2": "lokr_t2",
    "diff": "diff",
    "diff_b": "bias",
    "w_norm": "w_norm",
    "b_norm": "b_norm",
    "weight": "ia3_weight",
    "on_input": "on_input",
    "a1.weight": "glora_a1",
    "a2.weight": "glora_a2",
    "b1.weight": "glora_b1",
    "b2.weight": "glora_b2",
    "bm.weight": "glora_bm",
    "oft_blocks": "oft_blocks",
    "oft_diag": "oft_diag",
    "rescale": "rescale",
    "set_weight": "set_weight",
    "reshape_weight": "reshape_weight",
}

_ADAPTER_SUFFIX = r"lora_(?P<ab>[AB])\.(?P<adapter>[A-Za-z0-9_]+)\.(?P<kind>weight|bias)"
_SUFFIX_PATTERN = re.compile(
    r"^(?P<prefix>.+?)[._](?P<suffix>"
    + _ADAPTER_SUFFIX
    + "|"
    + "|".join(re.escape(suffix) for suffix in sorted(SUFFIX_ROLES, key=len, reverse=True))
    + r"|lora_(?:A|B)\.weight"
    + r"|lora_magnitude_vector\.[A-Za-z0-9_]+"
    + r")$"
)

# Component prefixes, most specific first: (prefix, component, dialect hint).
# ``auto`` means the path itself shows whether it is UNet/transformer or a text encoder.
COMPONENT_PREFIXES = (
    ("transformer.base_model.model.", "unet", "peft"),
    ("unet.base_model.model.", "unet", "peft"),
    ("text_encoder.base_model.model.", "te1", "peft"),
    ("base_model.model.", "auto", "peft"),
    ("lora_unet_", "unet", "kohya"),
    ("lora_te1_", "te1", "kohya"),
    ("lora_te2_", "te2", "kohya"),
    ("lora_te3_", "te3", "kohya"),
    ("lora_te_", "te", "kohya"),
    ("lora_te1.", "te1", "kohya"),
    ("lora_te2.", "te2", "kohya"),
    ("lora_unet.", "unet", "kohya"),
    ("lora_transformer_", "unet", "onetrainer"),
    ("lycoris_", "unet", "lycoris_standalone"),
    ("oft_unet_", "unet", "kohya"),
    ("diffusion_model.", "unet", "comfyui"),
    ("unet.", "unet", "diffusers"),
    ("transformer.", "unet", "diffusers"),
    ("text_encoder_2.", "te2", "diffusers"),
    ("text_encoder_3.", "te3", "diffusers"),
    ("text_encoder.", "te1", "diffusers"),
)

_LORA_ROLES = frozenset(
    {"down", "up", "hada_w1_a", "lokr_w1", "lokr_w1_a", "lokr_w2", "lokr_w2_a", "diff", "w_norm",
     "glora_a1", "oft_blocks", "oft_diag"}
)


@dataclass
class ModuleGroup:
    """The tensors of one stored module, by role.

    Attributes
    ----------
    component : str
        ``unet``, ``te``, ``te1``, ``te2``, ``te3`` or ``auto``.
    path : str
        The module path, underscored, without component prefix.
    keys : dict of str to str
        Role -> file key.
    dialect : str
        The dialect hint from the prefix and suffixes.
    """

    component: str
    path: str
    keys: dict = field(default_factory=dict)
    dialect: str = "unknown"

    @property
    def name(self):
        """A readable module name: component and path."""
        return f"{self.component}:{self.path}"

    def is_adapter(self):
        """Return True when the group contains an update (not only modifiers such as alpha)."""
        return bool(_LORA_ROLES.intersection(self.keys)) or (
            "ia3_weight" in self.keys and "on_input" in self.keys
        )

    def is_set_weight(self):
        """Return True for a weight replacement (BFL control ``…norm.scale``, ``set_weight``)."""
        roles = set(self.keys)
        return roles in ({"scale"}, {"set_weight"}) or roles == {"reshape_weight"}


def parse_key(key):
    """Split a key into ``(module prefix, role)``, or return None for an unknown suffix."""
    match = _SUFFIX_PATTERN.match(key)
    if match is None:
        return None
    suffix = match.group("suffix")
    if match.group("ab") is not None:
        if match.group("kind") == "bias":
            role = "bias" if match.group("ab") == "B" else None
        else:
            role = "down" if match.group("ab") == "A" else "up"
        return (match.group("prefix"), role) if role else None
    if suffix.startswith("lora_magnitude_vector"):
        return match.group("prefix"), "dora_scale"
    role = SUFFIX_ROLES.get(suffix) or {"lora_A.weight": "down", "lora_B.weight": "up"}.get(suffix)
    return match.group("prefix"), role


def split_component(prefix):
    """Return ``(component, underscored path, dialect hint)`` for a module prefix."""
    component, dialect, rest = "auto", "unknown", prefix
    for start, start_component, hint in COMPONENT_PREFIXES:
        if prefix.startswith(start):
            component, dialect, rest = start_component, hint, prefix[len(start):]
            break
    path = rest.replace(".", "_")
    # Files converted from diffusers sometimes keep the component: ``lora_unet_unet_down_blocks…``.
    if component == "unet" and dialect in ("kohya", "onetrainer"):
        if path.startswith("unet_"):
            path = path[len("unet_"):]
            dialect = "kohya_converted"
        elif path.startswith(("transformer_transformer_blocks", "transformer_single_transformer_blocks")):
            path = path[len("transformer_"):]
    if "_processor_to_" in path:
        # Old diffusers attention processors: ``attn1.processor.to_q_lora`` -> ``attn1.to_q``.
        path = path.replace("_processor_to_", "_to_")
        dialect = "diffusers_old"
    return component, path, dialect


def _dialect_from_suffix(key, dialect):
    if dialect in ("diffusers", "unknown", "comfyui") or dialect == "peft":
        if ".lora.down." in key or ".lora.up." in key:
            return "diffusers_new"
        if "lora_linear_layer" in key:
            return "diffusers_new"
        if "_lora.down." in key or "_lora.up." in key:
            return "diffusers_old"
        if "processor.qkv_lora" in key or "processor.proj_lora" in key:
            return "xlabs"
        if ".lora_A" in key or ".lora_B" in key:
            return "peft"
    if dialect == "kohya" and ("_lora_down." in key or "_lora_up." in key):
        return "kohya_converted"
    return dialect


def group_keys(keys):
    """Group file keys by module.

    Parameters
    ----------
    keys : iterable of str

    Returns
    -------
    groups : dict of (str, str) to ModuleGroup
        Keyed by ``(component, underscored path)``, in file order.
    unparsed : list of str
        Keys whose suffix is not a known tensor role.
    """
    groups = {}
    unparsed = []
    for key in keys:
        parsed = parse_key(key)
        if parsed is None or parsed[1] is None:
            unparsed.append(key)
            continue
        prefix, role = parsed
        component, path, dialect = split_component(prefix)
        group = groups.get((component, path))
        if group is None:
            group = groups[(component, path)] = ModuleGroup(component, path)
        if role in group.keys:
            # Two keys for one role (``x.lora_A.weight`` and ``x.lora_A.default.weight``): keep the first.
            unparsed.append(key)
            continue
        group.keys[role] = key
        if role not in ("alpha", "scale", "dora_scale"):
            group.dialect = _dialect_from_suffix(key, dialect)
        elif group.dialect == "unknown":
            group.dialect = dialect
    return groups, unparsed


def detect_format(groups, metadata):
    """Name the dialect of a file from its groups and metadata.

    Returns
    -------
    str
        ``kohya``, ``lycoris``, ``lycoris_standalone``, ``kohya_converted``,
        ``diffusers_old``, ``diffusers_new``, ``peft``, ``onetrainer``,
        ``xlabs``, ``bfl_control``, ``comfyui`` or ``unknown``.
    """
    adapters = [group for group in groups.values() if group.is_adapter()]
    if not adapters:
        return "unknown"
    # Text-encoder keys often keep plain kohya names (OneTrainer's ``lora_te1_``), so the
    # UNet or transformer groups decide when there are any.
    unet = [group for group in adapters if group.component in ("unet", "auto")]
    counts = Counter(group.dialect for group in unet or adapters)
    dialect = counts.most_common(1)[0][0]
    if dialect == "peft" and any(group.dialect == "diffusers_new" for group in adapters):
        # "New diffusers" files keep PEFT names for layers outside attention.
        dialect = "diffusers_new"
    if dialect in ("peft", "unknown") and any(
        group.is_set_weight() for group in groups.values()
    ) and any(group.path == "img_in" for group in adapters):
        return "bfl_control"
    if dialect == "kohya":
        module = metadata.get("ss_network_module", "")
        non_lora = any(not ({"down", "up"} & set(group.keys)) for group in adapters)
        if "lycoris" in module or non_lora:
            return "lycoris"
    return dialect

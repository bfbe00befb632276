"""Native module vocabularies of each base-model family and the aliases that name them.

Every vocabulary is generated from the architecture (channel widths, block
layout, transformer depths), never by parsing underscores out of key names.
A module id is the native checkpoint path without ``.weight``:
``diffusion_model.`` plus the LDM/sgm path (SD1.x, SD2.x, SDXL), the BFL path
(Flux) or the MMDiT path (SD3); ``clip_l.``/``clip_h.``/``clip_g.``/``t5xxl.``
plus the Hugging Face path for text encoders.

Aliases (diffusers paths, kohya names, split q/k/v of fused weights) are keyed
by their underscored spelling, so ``down_blocks.0.attentions.0.proj_in`` and
``lora_unet_down_blocks_0_attentions_0_proj_in`` find the same entry.
"""

import functools
from dataclasses import dataclass

__all__ = [
    "FAMILIES",
    "Target",
    "alias_table",
    "module_shape",
    "module_vocabulary",
    "underscored",
]

FAMILIES = ("SD1.x", "SD2.x", "SDXL", "SDXL-refiner", "SD3", "Flux")

UNET_PREFIX = "diffusion_model."


def underscored(path):
    """Return the alias key of a module path: dots replaced by underscores."""
    return path.replace(".", "_")


@dataclass(frozen=True)
class Target:
    """Where an alias points: a module, optionally a row range of it.

    Attributes
    ----------
    module_id : str
    row_start : int or None
        First row of the slice of a fused weight, or None for the whole weight.
    row_count : int or None
    swap_halves : bool
        True when the alias stores the two output halves in the opposite order
        (diffusers ``norm_out`` stores [scale, shift], BFL [shift, scale]).
    """

    module_id: str
    row_start: int = None
    row_count: int = None
    swap_halves: bool = False


@dataclass(frozen=True)
class UNetSpec:
    """The layout of an LDM UNet, as the original configs give it."""

    model_channels: int
    channel_mult: tuple
    transformer_depth: tuple  # per level, 0 for no attention
    middle_depth: int
    context_dim: int
    linear_projection: bool  # SD2/SDXL use Linear proj_in/proj_out, SD1 1x1 convs
    time_embed_dim: int


UNET_SPECS = {
    "SD1.x": UNetSpec(320, (1, 2, 4, 4), (1, 1, 1, 0), 1, 768, False, 1280),
    "SD2.x": UNetSpec(320, (1, 2, 4, 4), (1, 1, 1, 0), 1, 1024, True, 1280),
    "SDXL": UNetSpec(320, (1, 2, 4), (0, 2, 10), 10, 2048, True, 1280),
    "SDXL-refiner": UNetSpec(384, (1, 2, 4, 4), (0, 4, 4, 0), 4, 1280, True, 1536),
}

# (module name, layer count, width, MLP width) of the CLIP text encoders in Hugging Face naming.
CLIP_SPECS = {
    "clip_l": (12, 768, 3072),
    "clip_h": (23, 1024, 4096),  # SD2's OpenCLIP-H, penultimate-layer conversion
    "clip_g": (32, 1280, 5120),
}

# Which text encoder each file component names, per family (first match wins).
TEXT_ENCODER_COMPONENTS = {
    "SD1.x": {"te": ("clip_l",), "te1": ("clip_l",)},
    "SD2.x": {"te": ("clip_h",), "te1": ("clip_h",)},
    "SDXL": {"te": ("clip_l",), "te1": ("clip_l",), "te2": ("clip_g",)},
    "SDXL-refiner": {"te": ("clip_g",), "te1": ("clip_g",)},
    "SD3": {"te": ("clip_l",), "te1": ("clip_l",), "te2": ("clip_g",), "te3": ("t5xxl",)},
    "Flux": {"te": ("clip_l",), "te1": ("clip_l",), "te2": ("t5xxl",), "te3": ("t5xxl",)},
}

FLUX_HIDDEN = 3072
FLUX_MLP = 12288
FLUX_DOUBLE_BLOCKS = 19
FLUX_SINGLE_BLOCKS = 38

# SD3 variants: (depth, hidden size); hidden = 64 * depth.
SD3_VARIANTS = {"SD3": (24, 1536), "SD3-large": (38, 2432)}


class _Builder:
    """Collect modules (id, shape) in order plus their aliases."""

    def __init__(self):
        self.default = []
        self.conv = []
        self.shapes = {}
        self.aliases = {}

    def add(self, module_id, shape, aliases=(), kind="default"):
        if module_id not in self.shapes:
            self.shapes[module_id] = tuple(shape)
            if kind == "default":
                self.default.append(module_id)
            elif kind == "conv":
                self.conv.append(module_id)
        self.aliases.setdefault(underscored(module_id.split(".", 1)[1]), Target(module_id))
        for alias in aliases:
            target = alias if isinstance(alias, tuple) else (alias, Target(module_id))
            self.aliases.setdefault(underscored(target[0]), target[1])


# ---------------------------------------------------------------- text encoders


def _add_clip(builder, name):
    layers, width, mlp = CLIP_SPECS[name]
    for layer in range(layers):
        base = f"text_model.encoder.layers.{layer}"
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            old_name = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "out_proj": "to_out"}[projection]
            builder.add(
                f"{name}.{base}.self_attn.{projection}",
                (width, width),
                aliases=[f"{base}.self_attn.{old_name}"],
            )
        builder.add(f"{name}.{base}.mlp.fc1", (mlp, width))
        builder.add(f"{name}.{base}.mlp.fc2", (width, mlp))
    builder.add(f"{name}.text_projection", (width, width), kind="extra")


def _add_t5(builder):
    width, inner, feed_forward = 4096, 4096, 10240
    for block in range(24):
        base = f"t5xxl.encoder.block.{block}"
        for projection in ("q", "k", "v"):
            builder.add(f"{base}.layer.0.SelfAttention.{projection}", (inner, width), kind="extra")
        builder.add(f"{base}.layer.0.SelfAttention.o", (width, inner), kind="extra")
        builder.add(f"{base}.layer.1.DenseReluDense.wi_0", (feed_forward, width), kind="extra")
        builder.add(f"{base}.layer.1.DenseReluDense.wi_1", (feed_forward, width), kind="extra")
        builder.add(f"{base}.layer.1.DenseReluDense.wo", (width, feed_forward), kind="extra")


# ---------------------------------------------------------------- LDM UNets


def _add_spatial_transformer(builder, ldm, diffusers, channels, depth, spec):
    """Add one Transformer2D block (proj_in, transformer blocks, proj_out)."""
    projection = (channels, channels) if spec.linear_projection else (channels, channels, 1, 1)
    builder.add(f"{UNET_PREFIX}{ldm}.proj_in", projection, aliases=[f"{diffusers}.proj_in"])
    for block in range(depth):
        inner = f"transformer_blocks.{block}"
        for attention in ("attn1", "attn2"):
            key_width = channels if attention == "attn1" else spec.context_dim
            for projection_name, width in (("to_q", channels), ("to_k", key_width), ("to_v", key_width)):
                path = f"{inner}.{attention}.{projection_name}"
                builder.add(f"{UNET_PREFIX}{ldm}.{path}", (channels, width), aliases=[f"{diffusers}.{path}"])
            path = f"{inner}.{attention}.to_out.0"
            builder.add(
                f"{UNET_PREFIX}{ldm}.{path}",
                (channels, channels),
                aliases=[f"{diffusers}.{path}", f"{diffusers}.{inner}.{attention}.to_out", f"{ldm}.{inner}.{attention}.to_out"],
            )
        for path, shape in (("ff.net.0.proj", (8 * channels, channels)), ("ff.net.2", (channels, 4 * channels))):
            builder.add(f"{UNET_PREFIX}{ldm}.{inner}.{path}", shape, aliases=[f"{diffusers}.{inner}.{path}"])
    builder.add(f"{UNET_PREFIX}{ldm}.proj_out", projection, aliases=[f"{diffusers}.proj_out"])


def _add_resnet(builder, ldm, diffusers, in_channels, out_channels, spec):
    """Add the LoCon targets of one ResnetBlock2D (LDM names with diffusers aliases)."""
    parts = [
        ("in_layers.2", "conv1", (out_channels, in_channels, 3, 3)),
        ("emb_layers.1", "time_emb_proj", (out_channels, spec.time_embed_dim)),
        ("out_layers.3", "conv2", (out_channels, out_channels, 3, 3)),
    ]
    if in_channels != out_channels:
        parts.append(("skip_connection", "conv_shortcut", (out_channels, in_channels, 1, 1)))
    for ldm_name, diffusers_name, shape in parts:
        builder.add(f"{UNET_PREFIX}{ldm}.{ldm_name}", shape, aliases=[f"{diffusers}.{diffusers_name}"], kind="conv")
    for ldm_name, diffusers_name, channels in (("in_layers.0", "norm1", in_channels), ("out_layers.0", "norm2", out_channels)):
        builder.add(f"{UNET_PREFIX}{ldm}.{ldm_name}", (channels,), aliases=[f"{diffusers}.{diffusers_name}"], kind="extra")


def _walk_unet(spec):
    """Yield the UNet's blocks in LDM order as (kind, ldm path, diffusers path, in, out, depth)."""
    channels = spec.model_channels
    skip_channels = [channels]
    levels = len(spec.channel_mult)
    for level, mult in enumerate(spec.channel_mult):
        for index in range(2):
            number = 1 + 3 * level + index
            out = spec.model_channels * mult
            yield ("resnet", f"input_blocks.{number}.0", f"down_blocks.{level}.resnets.{index}", channels, out, 0)
            channels = out
            if spec.transformer_depth[level]:
                yield ("attention", f"input_blocks.{number}.1", f"down_blocks.{level}.attentions.{index}",
                       channels, channels, spec.transformer_depth[level])
            skip_channels.append(channels)
        if level != levels - 1:
            yield ("down", f"input_blocks.{3 + 3 * level}.0.op", f"down_blocks.{level}.downsamplers.0.conv",
                   channels, channels, 0)
            skip_channels.append(channels)

    yield ("resnet", "middle_block.0", "mid_block.resnets.0", channels, channels, 0)
    yield ("attention", "middle_block.1", "mid_block.attentions.0", channels, channels, spec.middle_depth)
    yield ("resnet", "middle_block.2", "mid_block.resnets.1", channels, channels, 0)

    for up_level, level in enumerate(reversed(range(levels))):
        out = spec.model_channels * spec.channel_mult[level]
        for index in range(3):
            number = 3 * up_level + index
            in_channels = channels + skip_channels.pop()
            yield ("resnet", f"output_blocks.{number}.0", f"up_blocks.{up_level}.resnets.{index}", in_channels, out, 0)
            channels = out
            has_attention = bool(spec.transformer_depth[level])
            if has_attention:
                yield ("attention", f"output_blocks.{number}.1", f"up_blocks.{up_level}.attentions.{index}",
                       channels, channels, spec.transformer_depth[level])
            if index == 2 and level != 0:
                position = 2 if has_attention else 1
                yield ("up", f"output_blocks.{number}.{position}.conv", f"up_blocks.{up_level}.upsamplers.0.conv",
                       channels, channels, 0)


def _build_unet_family(builder, spec):
    for kind, ldm, diffusers, in_channels, out_channels, depth in _walk_unet(spec):
        if kind == "attention":
            _add_spatial_transformer(builder, ldm, diffusers, out_channels, depth, spec)
        elif kind == "resnet":
            _add_resnet(builder, ldm, diffusers, in_channels, out_channels, spec)
        else:
            builder.add(f"{UNET_PREFIX}{ldm}", (out_channels, in_channels, 3, 3), aliases=[diffusers], kind="conv")

    last = spec.model_channels * spec.channel_mult[0]
    extras = [
        ("input_blocks.0.0", "conv_in", (spec.model_channels, 4, 3, 3)),
        ("out.2", "conv_out", (4, last, 3, 3)),
        ("time_embed.0", "time_embedding.linear_1", (spec.time_embed_dim, spec.model_channels)),
        ("time_embed.2", "time_embedding.linear_2", (spec.time_embed_dim, spec.time_embed_dim)),
    ]
    for ldm, diffusers, shape in extras:
        builder.add(f"{UNET_PREFIX}{ldm}", shape, aliases=[diffusers], kind="extra")


# ---------------------------------------------------------------- Flux


def _build_flux(builder):
    hidden, mlp = FLUX_HIDDEN, FLUX_MLP
    for block in range(FLUX_DOUBLE_BLOCKS):
        native = f"{UNET_PREFIX}double_blocks.{block}"
        diffusers = f"transformer_blocks.{block}"
        for stream, index, attention_prefix, ff_name, norm_name in (
            ("img", 1, "to_", "ff", "norm1"),
            ("txt", 2, "add_", "ff_context", "norm1_context"),
        ):
            qkv = f"{native}.{stream}_attn.qkv"
            split = [
                (f"{diffusers}.attn.{attention_prefix}{letter}" + ("_proj" if stream == "txt" else ""),
                 Target(qkv, position * hidden, hidden))
                for position, letter in enumerate("qkv")
            ]
            builder.add(qkv, (3 * hidden, hidden),
                        aliases=split + [f"double_blocks.{block}.processor.qkv_lora{index}"])
            out_alias = f"{diffusers}.attn.to_out.0" if stream == "img" else f"{diffusers}.attn.to_add_out"
            builder.add(f"{native}.{stream}_attn.proj", (hidden, hidden),
                        aliases=[out_alias, f"double_blocks.{block}.processor.proj_lora{index}"])
            builder.add(f"{native}.{stream}_mlp.0", (mlp, hidden),
                        aliases=[f"{diffusers}.{ff_name}.net.0.proj", f"{diffusers}.{ff_name}.linear_in"])
            builder.add(f"{native}.{stream}_mlp.2", (hidden, mlp),
                        aliases=[f"{diffusers}.{ff_name}.net.2", f"{diffusers}.{ff_name}.linear_out"])
            builder.add(f"{native}.{stream}_mod.lin", (6 * hidden, hidden), aliases=[f"{diffusers}.{norm_name}.linear"])

    for block in range(FLUX_SINGLE_BLOCKS):
        native = f"{UNET_PREFIX}single_blocks.{block}"
        diffusers = f"single_transformer_blocks.{block}"
        linear1 = f"{native}.linear1"
        split = [(f"{diffusers}.attn.to_{letter}", Target(linear1, position * hidden, hidden))
                 for position, letter in enumerate("qkv")]
        split.append((f"{diffusers}.proj_mlp", Target(linear1, 3 * hidden, mlp)))
        # XLabs single-block LoRAs cover only the q/k/v rows of linear1. Their
        # ``processor.qkv_lora.down.weight`` keys split like old diffusers ``to_q_lora`` keys,
        # so the name without ``_lora`` is an alias too.
        for name in ("qkv_lora", "qkv"):
            split.append((f"single_blocks.{block}.processor.{name}", Target(linear1, 0, 3 * hidden)))
        builder.add(linear1, (3 * hidden + mlp, hidden), aliases=split)
        builder.add(f"{native}.linear2", (hidden, hidden + mlp),
                    aliases=[f"{diffusers}.proj_out", f"single_blocks.{block}.processor.proj_lora",
                             f"single_blocks.{block}.processor.proj"])
        builder.add(f"{native}.modulation.lin", (3 * hidden, hidden), aliases=[f"{diffusers}.norm.linear"])

    _add_flux_globals(builder)


def _add_embedders(builder, embedders, hidden):
    """Add the optional embedder modules of a DiT and its final adaLN, whose diffusers form swaps halves."""
    for native, diffusers, shape in embedders:
        builder.add(f"{UNET_PREFIX}{native}", shape, aliases=[diffusers], kind="extra")
    adaln = f"{UNET_PREFIX}final_layer.adaLN_modulation.1"
    builder.add(adaln, (2 * hidden, hidden), aliases=[("norm_out.linear", Target(adaln, swap_halves=True))],
                kind="extra")


def _add_flux_globals(builder):
    hidden = FLUX_HIDDEN
    embedders = [
        ("img_in", "x_embedder", (hidden, 64)),
        ("txt_in", "context_embedder", (hidden, 4096)),
        ("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1", (hidden, 256)),
        ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2", (hidden, hidden)),
        ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1", (hidden, 768)),
        ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2", (hidden, hidden)),
        ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1", (hidden, 256)),
        ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2", (hidden, hidden)),
        ("final_layer.linear", "proj_out", (64, hidden)),
    ]
    _add_embedders(builder, embedders, hidden)


# ---------------------------------------------------------------- SD3 (MMDiT)


def _build_sd3(builder, depth, hidden):
    for block in range(depth):
        native = f"{UNET_PREFIX}joint_blocks.{block}"
        diffusers = f"transformer_blocks.{block}"
        last = block == depth - 1
        for stream, attention_prefix, suffix, ff_name, norm_name in (
            ("x_block", "to_", "", "ff", "norm1"),
            ("context_block", "add_", "_proj", "ff_context", "norm1_context"),
        ):
            qkv = f"{native}.{stream}.attn.qkv"
            split = [(f"{diffusers}.attn.{attention_prefix}{letter}{suffix}", Target(qkv, position * hidden, hidden))
                     for position, letter in enumerate("qkv")]
            builder.add(qkv, (3 * hidden, hidden), aliases=split)
            pre_only = last and stream == "context_block"
            modulation = f"{native}.{stream}.adaLN_modulation.1"
            if pre_only:
                builder.add(modulation, (2 * hidden, hidden),
                            aliases=[(f"{diffusers}.{norm_name}.linear", Target(modulation, swap_halves=True))])
                continue
            out_alias = f"{diffusers}.attn.to_out.0" if stream == "x_block" else f"{diffusers}.attn.to_add_out"
            builder.add(f"{native}.{stream}.attn.proj", (hidden, hidden), aliases=[out_alias])
            builder.add(f"{native}.{stream}.mlp.fc1", (4 * hidden, hidden), aliases=[f"{diffusers}.{ff_name}.net.0.proj"])
            builder.add(f"{native}.{stream}.mlp.fc2", (hidden, 4 * hidden), aliases=[f"{diffusers}.{ff_name}.net.2"])
            builder.add(modulation, (6 * hidden, hidden), aliases=[f"{diffusers}.{norm_name}.linear"])

    embedders = [
        ("x_embedder.proj", "pos_embed.proj", (hidden, 16, 2, 2)),
        ("context_embedder", "context_embedder", (hidden, 4096)),
        ("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1", (hidden, 256)),
        ("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2", (hidden, hidden)),
        ("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1", (hidden, 2048)),
        ("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2", (hidden, hidden)),
        ("final_layer.linear", "proj_out", (64, hidden)),
    ]
    _add_embedders(builder, embedders, hidden)


# ---------------------------------------------------------------- public tables


@functools.lru_cache(maxsize=None)
def _family_tables(variant):
    """Build ``(unet builder, {encoder name: builder})`` for a family or SD3 variant."""
    unet = _Builder()
    family = "SD3" if variant in SD3_VARIANTS else variant
    if variant in UNET_SPECS:
        _build_unet_family(unet, UNET_SPECS[variant])
    elif variant in SD3_VARIANTS:
        _build_sd3(unet, *SD3_VARIANTS[variant])
    elif variant == "Flux":
        _build_flux(unet)
    else:
        raise ValueError(f"unknown family {variant!r}; expected one of {FAMILIES}")

    encoders = {}
    for names in TEXT_ENCODER_COMPONENTS[family].values():
        for name in names:
            if name in encoders:
                continue
            builder = _Builder()
            if name == "t5xxl":
                _add_t5(builder)
            else:
                _add_clip(builder, name)
            encoders[name] = builder
    return unet, encoders


def _default_encoders(family):
    """Text encoders a default kohya LoRA of the family trains."""
    return {
        "SD1.x": ("clip_l",),
        "SD2.x": ("clip_h",),
        "SDXL": ("clip_l", "clip_g"),
        "SDXL-refiner": ("clip_g",),
        "SD3": (),
        "Flux": (),
    }[family]


@functools.lru_cache(maxsize=None)
def _vocabulary(family):
    unet, encoders = _family_tables(family)
    ids = []
    for name in _default_encoders(family):
        ids.extend(encoders[name].default)
    ids.extend(unet.default)
    ids.extend(unet.conv)
    return tuple(ids)


def module_vocabulary(family):
    """Return the canonical module ids a default kohya LoRA of a family targets.

    The order is stable: text-encoder modules first (CLIP-L before CLIP-G),
    then the UNet or transformer modules in checkpoint order, then the LoCon
    convolution targets (ResNet convs, time-embedding projections, shortcuts,
    down- and upsamplers) of UNet families. SD1.x has 264 default modules
    (72 text encoder + 192 UNet) plus 86 LoCon modules, SD2.x 330 + 86,
    SDXL 986 + 66, Flux 304.

    Parameters
    ----------
    family : str
        One of ``SD1.x``, ``SD2.x``, ``SDXL``, ``SDXL-refiner``, ``SD3``, ``Flux``.

    Returns
    -------
    list of str
    """
    return list(_vocabulary(family))


def module_shape(family, module_id):
    """Return the weight shape of a module of a family.

    Parameters
    ----------
    family : str
    module_id : str
        A canonical module id, including the optional modules that are not in
        :func:`module_vocabulary` (embedders, T5 blocks, ``conv_in``, norms).

    Returns
    -------
    tuple of int

    Raises
    ------
    KeyError
        When the family has no such module.
    """
    unet, encoders = _family_tables(family)
    if module_id in unet.shapes:
        return unet.shapes[module_id]
    encoder = module_id.split(".", 1)[0]
    if encoder in encoders and module_id in encoders[encoder].shapes:
        return encoders[encoder].shapes[module_id]
    raise KeyError(f"{family} has no module {module_id!r}")


def alias_table(variant, component):
    """Return ``({alias: Target}, {module_id: shape})`` for a family variant and a component.

    Parameters
    ----------
    variant : str
        A family, or ``SD3-large`` for the 38-block SD3.5 Large layout.
    component : str
        ``unet`` or a text-encoder name (``clip_l``, ``clip_h``, ``clip_g``, ``t5xxl``).
    """
    unet, encoders = _family_tables(variant)
    builder = unet if component == "unet" else encoders.get(component)
    if builder is None:
        return {}, {}
    return builder.aliases, builder.shapes


def text_encoders_for(variant, component):
    """Return the text-encoder names a file component (``te``, ``te1``, ...) can mean in a family."""
    family = "SD3" if variant in SD3_VARIANTS else variant
    return TEXT_ENCODER_COMPONENTS[family].get(component, ())

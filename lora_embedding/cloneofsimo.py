"""Map cloneofsimo ``lora_diffusion`` files, whose keys are indices, to module ids.

cloneofsimo's trainer saves the injected layers in the order
``model.modules()`` visits them: safetensors keys ``unet:N:up``/``unet:N:down``
and ``text_encoder:N:…``, or a ``.pt`` pickle holding a flat list
``[up0, down0, up1, down1, ...]``. No module name is stored, so the order
has to be reconstructed from the diffusers and transformers classes of that
time and confirmed by the shapes:

* UNet targets are the Linear layers of ``CrossAttention`` (to_q, to_k, to_v,
  to_out.0) and, when ``GEGLU`` is targeted, its ``proj``. Blocks come in
  registration order, which in diffusers' UNet2DConditionModel is down, up,
  then mid (``mid_block`` is assigned after ``up_blocks``); within a
  transformer block older diffusers registered attn1, ff, attn2 and newer
  ones attn1, attn2, ff. Every combination is tried and one must match all
  shapes.
* Text-encoder targets are the Linear layers of ``CLIPAttention``, which
  transformers registers as k_proj, v_proj, q_proj, out_proj.
"""

from .module_names import _walk_unet, UNET_SPECS, CLIP_SPECS, module_shape

__all__ = ["index_sequences", "match_sequence"]

_CLIP_FOR_FAMILY = {"SD1.x": "clip_l", "SD2.x": "clip_h"}


def _attention_modules(attention_id, inner_order, include_ff):
    ids = []
    for part in inner_order:
        if part == "ff":
            if include_ff:
                ids.append(f"{attention_id}.ff.net.0.proj")
            continue
        ids.extend(f"{attention_id}.{part}.{name}" for name in ("to_q", "to_k", "to_v", "to_out.0"))
    return ids


def _unet_sequences(family):
    attentions = [
        (ldm, diffusers, depth)
        for kind, ldm, diffusers, _, _, depth in _walk_unet(UNET_SPECS[family])
        if kind == "attention"
    ]
    down = [entry for entry in attentions if entry[1].startswith("down_blocks")]
    mid = [entry for entry in attentions if entry[1].startswith("mid_block")]
    up = [entry for entry in attentions if entry[1].startswith("up_blocks")]
    for block_order in ((down, up, mid), (down, mid, up)):
        for inner_order in (("attn1", "ff", "attn2"), ("attn1", "attn2", "ff")):
            for include_ff in (True, False):
                ids = []
                for ldm, _, depth in (entry for blocks in block_order for entry in blocks):
                    for block in range(depth):
                        ids.extend(_attention_modules(
                            f"diffusion_model.{ldm}.transformer_blocks.{block}", inner_order, include_ff,
                        ))
                yield family, ids


def _text_encoder_sequence(family):
    encoder = _CLIP_FOR_FAMILY[family]
    layers = CLIP_SPECS[encoder][0]
    ids = []
    for layer in range(layers):
        for projection in ("k_proj", "v_proj", "q_proj", "out_proj"):
            ids.append(f"{encoder}.text_model.encoder.layers.{layer}.self_attn.{projection}")
    return family, ids


def index_sequences(component):
    """Yield ``(family, [module ids])`` candidate orders for ``unet`` or ``text_encoder`` indices."""
    for family in ("SD1.x", "SD2.x"):
        if component == "unet":
            yield from _unet_sequences(family)
        else:
            yield _text_encoder_sequence(family)


def match_sequence(component, implied_shapes, family=None):
    """Find the module order whose weight shapes equal the stored ``(out, in)`` pairs.

    Parameters
    ----------
    component : str
        ``unet`` or ``text_encoder``.
    implied_shapes : list of (int, int)
        ``(up rows, down columns)`` per index.
    family : str, optional
        Restrict the search to one family.

    Returns
    -------
    (str, list of str) or None
        The family and the module id of each index.
    """
    for candidate_family, ids in index_sequences(component):
        if family is not None and candidate_family != family:
            continue
        if len(ids) < len(implied_shapes):
            continue
        # A text encoder trained on fewer layers is not expected; require an exact count.
        if len(ids) != len(implied_shapes):
            continue
        shapes = [module_shape(candidate_family, module_id) for module_id in ids]
        if all(tuple(stored) == (shape[0], shape[1]) for stored, shape in zip(implied_shapes, shapes)):
            return candidate_family, ids
    return None

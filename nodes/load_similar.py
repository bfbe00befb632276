"""Load Similar LoRA: apply a LoRA picked by similarity to a reference, as ComfyUI's LoraLoader does."""

import logging
import random
import threading

from .comfy_host import ProgressReporter
from .library_service import get_service
from .match_outputs import node_error
from .sockets import LORA_NAME, InputSpec, NodeResult, NodeSpec, OutputSpec

logger = logging.getLogger(__name__)

__all__ = ["SPEC", "choose_neighbour", "load_similar"]

DISPLAY_NAME = "Load Similar LoRA"
MODES = ["rank", "random"]

_cache_lock = threading.Lock()
_cached_lora = {}
"""The last loaded LoRA state dict, keyed by path. It keeps one entry, as LoraLoader does."""


def choose_neighbour(matches, neighbour, mode, top_k, seed):
    """Return the ``Match`` to load.

    ``rank`` takes the ``neighbour``-th closest (1 = most similar), or the
    farthest available when the library has fewer. ``random`` draws one of
    the ``top_k`` closest with ``random.Random(seed)``, so a seed always
    picks the same LoRA from the same index.
    """
    if not matches:
        return None
    if mode == "rank":
        return matches[min(neighbour, len(matches)) - 1]
    pool = matches[:top_k]
    return pool[random.Random(seed).randrange(len(pool))]


def _load_state_dict(path):
    import comfy.utils

    with _cache_lock:
        if path in _cached_lora:
            return _cached_lora[path]
    state_dict = comfy.utils.load_torch_file(path, safe_load=True)
    with _cache_lock:
        _cached_lora.clear()
        _cached_lora[path] = state_dict
    return state_dict


def load_similar(model, clip, lora_name, neighbour=1, mode="rank", top_k=5, seed=0,
                 strength_model=1.0, strength_clip=1.0, service=None):
    """Run the node: pick a LoRA similar to ``lora_name`` and apply it to ``model`` and ``clip``.

    Returns
    -------
    NodeResult
        The patched MODEL, the patched CLIP (None when ``clip`` is None) and
        the chosen LoRA's ComfyUI name.
    """
    import comfy.sd
    from lora_embedding.errors import QueryNotFoundError

    if mode not in MODES:
        raise node_error(DISPLAY_NAME, f"mode={mode!r} is invalid; use one of {MODES}")
    service = service or get_service()
    try:
        query = service.query_for(lora_name)
        library = service.ready_library(poll=ProgressReporter())
        matches = library.similar(query, k=max(neighbour, top_k))
    except (FileNotFoundError, QueryNotFoundError) as exc:
        raise node_error(DISPLAY_NAME, exc) from exc

    chosen = choose_neighbour(matches, neighbour, mode, top_k, seed)
    if chosen is None:
        raise node_error(DISPLAY_NAME, f"no LoRA of the same base model as {lora_name!r} is indexed; "
                                       "add LoRAs to the loras folder or run Index LoRA Library")
    name = service.comfy_names([chosen.entry])[0]
    logger.info("Load Similar LoRA: %s -> %s (cosine %.4f)", lora_name, name, chosen.score)

    if strength_model == 0 and strength_clip == 0:
        return NodeResult(values=(model, clip, name), text=f"{name} (cosine {chosen.score:.4f}), strengths 0")
    state_dict = _load_state_dict(chosen.entry.path)
    patched_model, patched_clip = comfy.sd.load_lora_for_models(model, clip, state_dict, strength_model, strength_clip)
    return NodeResult(values=(patched_model, patched_clip, name), text=f"{name} (cosine {chosen.score:.4f})")


def _fingerprint(**_inputs):
    return get_service().fingerprint()


def _run(model, lora_name, neighbour, mode, top_k, seed, strength_model, strength_clip, clip=None):
    return load_similar(model, clip, lora_name, neighbour, mode, top_k, seed, strength_model, strength_clip)


SPEC = NodeSpec(
    node_id="LoadSimilarLora_LoraEmbedding",
    display_name=DISPLAY_NAME,
    description=(
        "Apply a LoRA chosen by weight similarity to a reference LoRA, with ComfyUI's own LoRA loading. "
        "Use rank to step through neighbours, or random with a seed to explore."
    ),
    inputs=[
        InputSpec("model", "MODEL", "The diffusion model the chosen LoRA is applied to."),
        InputSpec("lora_name", LORA_NAME, "The reference LoRA. The chosen LoRA is one of its neighbours, never itself."),
        InputSpec("neighbour", "INT", "rank mode: which neighbour to load, 1 = the most similar.",
                  default=1, minimum=1, maximum=100),
        InputSpec("mode", "COMBO", "rank: load the neighbour-th closest LoRA. random: load one of the top_k "
                  "closest, drawn with the seed.", default="rank", options=MODES),
        InputSpec("top_k", "INT", "random mode: draw from this many closest LoRAs.", default=5, minimum=1, maximum=100),
        InputSpec("seed", "INT", "random mode: the seed of the draw. The same seed picks the same LoRA.",
                  default=0, minimum=0, maximum=0xFFFFFFFFFFFFFFFF, seed=True),
        InputSpec("strength_model", "FLOAT", "How strongly to modify the diffusion model. This value can be negative.",
                  default=1.0, minimum=-100.0, maximum=100.0, step=0.01),
        InputSpec("strength_clip", "FLOAT", "How strongly to modify the CLIP model. This value can be negative.",
                  default=1.0, minimum=-100.0, maximum=100.0, step=0.01),
        InputSpec("clip", "CLIP", "The CLIP model the chosen LoRA is applied to. Leave it unconnected to patch the model only.",
                  optional=True),
    ],
    outputs=[
        OutputSpec("MODEL", "MODEL", "The diffusion model with the chosen LoRA."),
        OutputSpec("CLIP", "CLIP", "The CLIP model with the chosen LoRA (empty when no CLIP was connected)."),
        OutputSpec("lora_name", "STRING", "The ComfyUI name of the LoRA that was applied."),
    ],
    run=_run,
    fingerprint=_fingerprint,
)

"""Recommend LoRAs: suggest LoRAs to add to the ones a prompt already uses."""

import logging
import os

from .comfy_host import ProgressReporter
from .library_service import get_service
from .match_outputs import match_outputs, node_error
from .sockets import InputSpec, NodeResult, NodeSpec, OutputSpec

logger = logging.getLogger(__name__)

__all__ = ["SPEC", "parse_used_loras", "recommend"]

DISPLAY_NAME = "Recommend LoRAs"
MODES = ["similar", "complementary"]


def parse_used_loras(text):
    """Return the LoRA names a text uses.

    The text is a prompt with ``<lora:name:weight>`` tags (A1111 style), or,
    when it has no tag, LoRA names one per line. Blank lines and duplicates
    are dropped, and the order is kept.
    """
    from lora_embedding.library import parse_lora_tags

    tags = parse_lora_tags(text)
    if tags:
        names = [name for name, _ in tags]
    else:
        names = [line.strip() for line in (text or "").splitlines()]
    return list(dict.fromkeys(name for name in names if name))


def _query_for(service, library, name):
    """Return the query for a used LoRA: its ComfyUI file, a library match (name or stem), or None."""
    path = service.full_path(name)
    if path is not None:
        return os.path.abspath(path)
    entry = library.find(name)
    return entry.path if entry is not None else None


def _snippet(stems, weight):
    return " ".join(f"<lora:{stem}:{weight:g}>" for stem in stems)


def recommend(used_loras, mode="similar", top_k=5, weight=1.0, service=None):
    """Run the node: suggest LoRAs for a prompt that uses ``used_loras``.

    Parameters
    ----------
    used_loras : str
        A prompt with ``<lora:name:weight>`` tags, or LoRA names one per line.
    mode : {"similar", "complementary"}
        ``similar`` ranks by closeness to the used LoRAs, and ``complementary``
        picks diverse LoRAs far from them.
    top_k : int
    weight : float
        The weight written into the prompt snippet's tags.
    service : LibraryService, optional

    Returns
    -------
    NodeResult
        names text, name list, prompt snippet, preview grid.
    """
    from lora_embedding.errors import QueryNotFoundError

    if mode not in MODES:
        raise node_error(DISPLAY_NAME, f"mode={mode!r} is invalid; use one of {MODES}")
    names = parse_used_loras(used_loras)
    if not names:
        raise node_error(DISPLAY_NAME, "used_loras is empty; write <lora:name:1> tags or LoRA names, one per line")

    service = service or get_service()
    library = service.ready_library(poll=ProgressReporter())
    queries = {name: _query_for(service, library, name) for name in names}
    unknown = [name for name, query in queries.items() if query is None]
    known = [query for query in queries.values() if query is not None]
    if not known:
        raise node_error(DISPLAY_NAME, f"none of the used LoRAs is in the library: {', '.join(unknown)}")

    try:
        matches = library.recommend(known, k=top_k, mode=mode)
    except QueryNotFoundError as exc:
        raise node_error(DISPLAY_NAME, exc) from exc
    outputs = match_outputs(service, matches)
    snippet = _snippet(outputs.stems, weight)

    lines = [f"{mode} to {len(known)} used LoRA(s): {len(matches)} suggestion(s)"]
    if unknown:
        lines.append(f"not found, skipped: {', '.join(unknown)}")
    lines += [outputs.table, snippet]
    return NodeResult(values=(outputs.names_text, outputs.names, snippet, outputs.grid),
                      text="\n".join(line for line in lines if line), preview=outputs.grid)


def _fingerprint(**_inputs):
    return get_service().fingerprint()


def _run(used_loras, mode, top_k, weight):
    return recommend(used_loras, mode, top_k, weight)


SPEC = NodeSpec(
    node_id="RecommendLoras_LoraEmbedding",
    display_name=DISPLAY_NAME,
    description=(
        "Suggest LoRAs that are not used yet, from the LoRAs a prompt already uses: similar ones, "
        "or complementary ones that differ from them and from each other."
    ),
    inputs=[
        InputSpec("used_loras", "STRING", "A prompt with <lora:name:weight> tags, or LoRA names one per line "
                  "(ComfyUI names, file names or stems).", default="", multiline=True),
        InputSpec("mode", "COMBO", "similar: LoRAs close to the used ones. complementary: LoRAs far from the used "
                  "ones and from each other.", default="similar", options=MODES),
        InputSpec("top_k", "INT", "Number of LoRAs to suggest.", default=5, minimum=1, maximum=64),
        InputSpec("weight", "FLOAT", "Weight written into each <lora:stem:weight> tag of the prompt snippet.",
                  default=1.0, minimum=-10.0, maximum=10.0, step=0.05),
    ],
    outputs=[
        OutputSpec("names", "STRING", "The suggested LoRA names, one per line, best first."),
        OutputSpec("name_list", "STRING", "The suggested LoRA names as a list. Downstream nodes run once per name.",
                   is_list=True),
        OutputSpec("prompt_snippet", "STRING", "The suggestions as <lora:stem:weight> tags to paste into a prompt."),
        OutputSpec("previews", "IMAGE", "A grid of the suggestions' preview images."),
    ],
    run=_run,
    fingerprint=_fingerprint,
    output_node=True,
)

"""Find Similar LoRAs: similar, dissimilar or duplicate LoRAs of a reference LoRA."""

import logging

from .comfy_host import ProgressReporter
from .library_service import get_service
from .match_outputs import match_outputs, node_error
from .sockets import LORA_NAME, InputSpec, NodeResult, NodeSpec, OutputSpec

logger = logging.getLogger(__name__)

__all__ = ["SPEC", "find_similar"]

DISPLAY_NAME = "Find Similar LoRAs"
MODES = ["similar", "dissimilar", "duplicates"]


def _duplicates_of(library, query_path):
    """Return ``(matches, reason)`` for the files that contain the same weights as ``query_path``.

    ``matches`` are ``Match`` objects scored with the group's lowest cosine,
    and ``reason`` is the group's reason. Without duplicates: ``([], None)``.
    """
    from lora_embedding.library import Match

    for group in library.duplicates():
        paths = [entry.path for entry in group.entries]
        if query_path in paths:
            others = [entry for entry in group.entries if entry.path != query_path]
            return [Match(entry, group.min_cosine) for entry in others], group.reason
    return [], None


def find_similar(lora_name, mode="similar", top_k=8, diversify=False, service=None):
    """Run the node: search the library for LoRAs related to ``lora_name``.

    Parameters
    ----------
    lora_name : str
        A name from ComfyUI's ``loras`` list.
    mode : {"similar", "dissimilar", "duplicates"}
    top_k : int
        Maximum number of picks (``duplicates`` returns every duplicate).
    diversify : bool
        For ``dissimilar``: no two picks close to each other.
    service : LibraryService, optional

    Returns
    -------
    NodeResult
        names text, name list, first pick, scores text, score list, preview grid.
    """
    from lora_embedding.errors import QueryNotFoundError

    if mode not in MODES:
        raise node_error(DISPLAY_NAME, f"mode={mode!r} is invalid; use one of {MODES}")
    service = service or get_service()
    try:
        query = service.query_for(lora_name)
    except FileNotFoundError as exc:
        raise node_error(DISPLAY_NAME, exc) from exc
    library = service.ready_library(poll=ProgressReporter())

    captions = None
    try:
        if mode == "similar":
            matches = library.similar(query, k=top_k)
        elif mode == "dissimilar":
            matches = library.dissimilar(query, k=top_k, diversify=diversify)
        else:
            matches, reason = _duplicates_of(library, query)
            captions = [reason] * len(matches)
    except QueryNotFoundError as exc:
        raise node_error(DISPLAY_NAME, exc) from exc

    outputs = match_outputs(service, matches, captions)
    first = outputs.names[0] if outputs.names else lora_name
    header = f"{mode} to {lora_name}: {len(matches)} of {len(library.entries(include_errors=False))} indexed LoRAs"
    if not matches:
        header += "\nno match; first_lora is the reference LoRA itself"
    return NodeResult(
        values=(outputs.names_text, outputs.names, first, outputs.scores_text, outputs.scores, outputs.grid),
        text=f"{header}\n{outputs.table}".rstrip(),
        preview=outputs.grid,
    )


def _fingerprint(**_inputs):
    return get_service().fingerprint()


def _run(lora_name, mode, top_k, diversify=False):
    return find_similar(lora_name, mode, top_k, diversify)


SPEC = NodeSpec(
    node_id="FindSimilarLoras_LoraEmbedding",
    display_name=DISPLAY_NAME,
    description=(
        "Find the LoRAs whose weights are most like (or least like) a reference LoRA, or its duplicates. "
        "Compares LoRAs of the same base model only; the library is indexed in the background on first use."
    ),
    inputs=[
        InputSpec("lora_name", LORA_NAME, "The reference LoRA."),
        InputSpec("mode", "COMBO", "similar: closest LoRAs first. dissimilar: farthest LoRAs first. "
                  "duplicates: files that hold the same weights as the reference.", default="similar", options=MODES),
        InputSpec("top_k", "INT", "Maximum number of LoRAs to return.", default=8, minimum=1, maximum=64),
        InputSpec("diversify", "BOOLEAN", "dissimilar mode only: pick LoRAs that are also far from each other.",
                  default=False, optional=True),
    ],
    outputs=[
        OutputSpec("names", "STRING", "The picked LoRA names, one per line, best first."),
        OutputSpec("name_list", "STRING", "The picked LoRA names as a list. Downstream nodes run once per name.",
                   is_list=True),
        OutputSpec("first_lora", LORA_NAME, "The best pick, to connect to a LoRA loader's lora_name. "
                   "It is the reference LoRA itself when nothing matched."),
        OutputSpec("scores", "STRING", "Cosine similarity of each pick to the reference, one per line."),
        OutputSpec("score_list", "FLOAT", "Cosine similarity of each pick as a list.", is_list=True),
        OutputSpec("previews", "IMAGE", "A grid of the picks' preview images, with a placeholder where a LoRA has none."),
    ],
    run=_run,
    fingerprint=_fingerprint,
    output_node=True,
)

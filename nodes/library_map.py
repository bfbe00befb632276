"""LoRA Library Map: the library's style clusters as a 2-D map image and a named summary."""

import logging

from .comfy_host import ProgressReporter
from .library_service import get_service
from .match_outputs import node_error
from .preview_grid import image_to_tensor, message_image
from .sockets import InputSpec, NodeResult, NodeSpec, OutputSpec

logger = logging.getLogger(__name__)

__all__ = ["SPEC", "library_map", "summarize_clusters"]

DISPLAY_NAME = "LoRA Library Map"
MAX_LISTED_MEMBERS = 8


def summarize_clusters(result, service):
    """Return one block per cluster: its name, size and first members by ComfyUI name."""
    lines = [f"{result.family or 'unknown family'}: {len(result.entries)} LoRAs in {len(result.clusters)} clusters"]
    for cluster in result.clusters:
        names = service.comfy_names(cluster.members)
        listed = ", ".join(names[:MAX_LISTED_MEMBERS])
        more = f", ... (+{len(names) - MAX_LISTED_MEMBERS})" if len(names) > MAX_LISTED_MEMBERS else ""
        lines.append(f"{cluster.id}. {cluster.name} ({cluster.size}): {listed}{more}")
    return "\n".join(lines)


def _degraded(message):
    logger.warning("LoRA Library Map: %s", message)
    image = image_to_tensor(message_image(message))
    return NodeResult(values=(image, message), text=message, preview=image)


def library_map(family="", n_clusters=0, service=None):
    """Run the node: cluster one base-model family of the library and draw its map.

    Parameters
    ----------
    family : str
        A family such as ``SD1.x`` or ``SDXL``. Empty picks the family with
        the most LoRAs.
    n_clusters : int
        Number of clusters. 0 chooses it by silhouette score.
    service : LibraryService, optional

    Returns
    -------
    NodeResult
        The map IMAGE and the cluster summary. When clustering or drawing is
        not available (a missing optional package), the image and the text
        give the reason instead.
    """
    service = service or get_service()
    library = service.ready_library(poll=ProgressReporter())
    families = library.families()
    family = (family or "").strip() or None
    if family is not None and family not in families:
        known = ", ".join(f"{name} ({count})" for name, count in sorted(families.items())) or "none indexed yet"
        raise node_error(DISPLAY_NAME, f"family={family!r} has no embedded LoRAs; families: {known}")

    try:
        from lora_embedding.map_image import render_map

        result = library.clusters(family=family, n_clusters=n_clusters or None)
        if not result:
            return _degraded("no embedded LoRAs to map yet; run Index LoRA Library or add LoRAs")
        picture = render_map(result)
    except ImportError as exc:
        return _degraded(f"the library map needs an optional package that is not installed: {exc}")
    except ValueError as exc:
        raise node_error(DISPLAY_NAME, exc) from exc

    image = image_to_tensor(picture)
    summary = summarize_clusters(result, service)
    return NodeResult(values=(image, summary), text=summary, preview=image)


def _fingerprint(**_inputs):
    return get_service().fingerprint()


SPEC = NodeSpec(
    node_id="LoraLibraryMap_LoraEmbedding",
    display_name=DISPLAY_NAME,
    description=(
        "Group the library's LoRAs of one base model into style clusters by their weights, "
        "and draw them as a 2-D map with a name for each cluster."
    ),
    inputs=[
        InputSpec("family", "STRING", "Base model family to map, e.g. SD1.x or SDXL. Leave it empty for the family "
                  "with the most LoRAs.", default=""),
        InputSpec("n_clusters", "INT", "Number of clusters. 0 chooses it from the data.", default=0, minimum=0,
                  maximum=60),
    ],
    outputs=[
        OutputSpec("map", "IMAGE", "The 2-D map of the LoRAs, coloured and labelled by cluster."),
        OutputSpec("summary", "STRING", "Each cluster's number, name, size and first members."),
    ],
    run=library_map,
    fingerprint=_fingerprint,
    output_node=True,
)

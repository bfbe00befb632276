"""The Clusters tab: the library on a 2-D map, with named clusters and a gallery per cluster."""

import logging
import os

from .compat import component, gradio, update
from .gallery import entry_gallery_items, table, tags_text
from .images import cache_folder

logger = logging.getLogger(__name__)

__all__ = ["CLUSTER_HEADERS", "build_clusters_tab", "cluster_choice", "cluster_gallery", "cluster_map"]

CLUSTER_HEADERS = ["cluster", "name", "LoRAs", "examples"]
LAYOUTS = ["pca", "auto"]


def cluster_choice(cluster):
    """Return the dropdown label of a cluster, e.g. ``2 · ink-sketch (14)``."""
    return f"{cluster.id} · {cluster.name} ({cluster.size})"


def _missing_module_message(exc):
    return (f"Clustering is not available in this installation ({exc}). "
            "Update the extension or reinstall the package.")


def _empty(message):
    return None, message, table([], CLUSTER_HEADERS), update(choices=[], value=None), {}, [], ""


def cluster_map(controller, family=None, n_clusters=0, layout="pca"):
    """Cluster one family of the library and render its map.

    Parameters
    ----------
    family : str, optional
        The base-model family; by default the one with the most LoRAs.
    n_clusters : int
        Number of clusters; 0 picks it by silhouette score.
    layout : {"pca", "auto"}
        ``auto`` uses t-SNE for mid-sized libraries.

    Returns
    -------
    tuple
        ``(map image path, status Markdown, cluster table, dropdown update,
        {choice: member names}, first cluster's gallery items, its tags)``.
    """
    if not controller.has_index():
        return _empty("Not indexed yet: index the library first.")
    try:
        from ..map_image import render_map

        chosen_layout = layout if layout in LAYOUTS else "pca"
        result = controller.library.clusters(family or None, n_clusters=int(n_clusters or 0) or None, layout=chosen_layout)
    except ImportError as exc:
        logger.warning("clustering unavailable: %s", exc)
        return _empty(_missing_module_message(exc))
    if not result or not result.clusters:
        return _empty(f"No embedded LoRAs of family {family!r} to cluster." if family else "No embedded LoRAs to cluster.")

    image_path = os.path.join(cache_folder(), f"map-{os.getpid()}-{id(result)}.png")
    render_map(result, image_path)
    members = {cluster_choice(cluster): [entry.name for entry in cluster.members] for cluster in result.clusters}
    rows = [[c.id, c.name, c.size, ", ".join(m.stem for m in c.members[:4])] for c in result.clusters]
    first = cluster_choice(result.clusters[0])
    count = sum(cluster.size for cluster in result.clusters)
    status = f"{count} {result.family} LoRAs in {len(result.clusters)} clusters."
    items, tags = cluster_gallery(controller, members, first)
    return (image_path, status, table(rows, CLUSTER_HEADERS), update(choices=list(members), value=first),
            members, items, tags)


def cluster_gallery(controller, members, choice):
    """Return ``(gallery items, prompt tags)`` of the cluster ``choice``."""
    names = (members or {}).get(choice) or []
    entries = [entry for entry in (controller.library.find(name) for name in names) if entry is not None]
    return entry_gallery_items(entries), tags_text(entries)


def _family_choices(controller):
    if not controller.has_index():
        return []
    families = controller.library.families()
    return sorted(families, key=lambda family: -families[family])


def build_clusters_tab(controller):
    """Build the Clusters tab and wire its events.

    Returns
    -------
    dict
        ``family`` (dropdown of families, refreshed after indexing) and the map.
    """
    gr = gradio()
    members = gr.State({})
    with gr.Row():
        family = component(gr.Dropdown, choices=[], value=None, label="Family (empty: the largest)", interactive=True)
        count = component(gr.Number, value=0, precision=0, label="Clusters (0: automatic)")
        layout = component(gr.Radio, choices=LAYOUTS, value="pca", label="Map layout")
        run = component(gr.Button, value="Cluster", variant="primary", elem_id="lora_embedding_cluster_run")
    status = component(gr.Markdown, value="")
    with gr.Row():
        with component(gr.Column, scale=3):
            image = component(gr.Image, label="Map", type="filepath", interactive=False, elem_id="lora_embedding_map")
        with component(gr.Column, scale=2):
            clusters = component(gr.Dataframe, value=table([], CLUSTER_HEADERS), headers=CLUSTER_HEADERS,
                                 interactive=False, wrap=True, label="Clusters")
    pick = component(gr.Dropdown, choices=[], value=None, label="Cluster", interactive=True)
    gallery = component(gr.Gallery, label="LoRAs in this cluster", columns=6, object_fit="contain",
                        allow_preview=False, interactive=False, elem_id="lora_embedding_cluster_gallery")
    tags = component(gr.Textbox, label="Prompt tags of this cluster", lines=2)

    def run_clustering(chosen_family, n_clusters, chosen_layout):
        return cluster_map(controller, chosen_family, n_clusters, chosen_layout)

    run.click(run_clustering, inputs=[family, count, layout],
              outputs=[image, status, clusters, pick, members, gallery, tags])
    pick.change(lambda state, choice: cluster_gallery(controller, state, choice), inputs=[members, pick],
                outputs=[gallery, tags])
    return {"family": family, "family_choices": lambda: _family_choices(controller), "map": image}

"""A 2-D map of a clustered library as a PNG image.

Every LoRA is a point at its :attr:`ClusterResult.coordinates`, coloured by
cluster; each cluster's name sits at the mean position of its members.
"""

import io
import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["render_map"]

WIDTH_PX = 1200
HEIGHT_PX = 900
DPI = 100

MAX_LEGEND_ENTRIES = 30
"""Clusters beyond this many are labelled on the map but left out of the legend."""


def _cluster_colours(count):
    from matplotlib import colormaps

    palette = colormaps["tab20"] if count > 10 else colormaps["tab10"]
    return [palette(index % palette.N) for index in range(count)]


def _draw_clusters(axes, result):
    coordinates = result.coordinates
    colours = _cluster_colours(len(result.clusters))
    # Points shrink as the library grows, so small maps stay readable and large ones do not blot.
    marker_area = float(np.clip(6000 / max(len(coordinates), 1), 12, 90))

    for cluster, colour in zip(result.clusters, colours):
        points = np.array([coordinates[member.path] for member in cluster.members], dtype=float).reshape(-1, 2)
        label = f"{cluster.name} ({cluster.size})"
        axes.scatter(points[:, 0], points[:, 1], s=marker_area, color=colour, alpha=0.8, edgecolors="none", label=label)

        centre = points.mean(axis=0)
        axes.annotate(
            cluster.name, centre, xytext=(0, 14), textcoords="offset points",
            ha="center", va="bottom", fontsize=10, weight="bold",
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": colour, "alpha": 0.85},
        )


def _draw_legend(axes, result):
    handles, labels = axes.get_legend_handles_labels()
    if len(handles) > MAX_LEGEND_ENTRIES:
        hidden = len(handles) - MAX_LEGEND_ENTRIES
        handles, labels = handles[:MAX_LEGEND_ENTRIES], labels[:MAX_LEGEND_ENTRIES]
        labels[-1] += f" (+{hidden} more clusters)"
    if handles:
        axes.legend(handles, labels, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
                    frameon=False, markerscale=1.5)


def render_map(result, path=None, title=None):
    """Draw the clusters of a library as a 1200×900 scatter plot.

    Parameters
    ----------
    result : ClusterResult
        Clusters with 2-D coordinates for every member.
    path : str or os.PathLike, optional
        When given, the image is also saved there as PNG; its folder must exist.
    title : str, optional
        Defaults to the family and the number of LoRAs and clusters.

    Returns
    -------
    PIL.Image.Image
        The rendered RGBA image.
    """
    # The Agg canvas is attached to this figure only, so a host application's
    # global matplotlib backend stays as it is.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    count = sum(cluster.size for cluster in result.clusters)
    if title is None:
        family = f"{result.family}: " if result.family else ""
        title = f"{family}{count} LoRAs in {len(result.clusters)} clusters"

    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.04, 0.05, 0.68, 0.88))
    axes.set_title(title, fontsize=13)
    axes.set_xticks([])
    axes.set_yticks([])
    if count == 0:
        axes.text(0.5, 0.5, "no embedded LoRAs", ha="center", va="center", transform=axes.transAxes)
    else:
        _draw_clusters(axes, result)
        axes.margins(0.12)
        _draw_legend(axes, result)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    image = Image.open(buffer)
    image.load()

    if path is not None:
        path = os.fspath(path)
        image.save(path, format="PNG")
        logger.info("wrote map of %d LoRAs to %s", count, path)
    return image

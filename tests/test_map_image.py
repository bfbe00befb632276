"""The 2-D map image of a clustered library."""

import numpy as np
from PIL import Image

from lora_embedding.clusters import cluster_library
from lora_embedding.library import LibraryEntry
from lora_embedding.map_image import HEIGHT_PX, WIDTH_PX, render_map


def clustered(groups=3, per_group=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, 32))
    rows, entries = [], []
    for group in range(groups):
        for run in range(per_group):
            vector = centres[group] + 0.2 * rng.standard_normal(32)
            rows.append(vector / np.linalg.norm(vector))
            entries.append(LibraryEntry(path=f"/lib/s{group}_{run}.safetensors", name=f"s{group}_{run}.safetensors",
                                        family="SD1.x", tags=[f"style{group}"]))
    return cluster_library(entries, np.array(rows, dtype=np.float32))


def test_map_png_written_at_size(tmp_path):
    result = clustered()
    target = tmp_path / "map.png"

    image = render_map(result, target)

    assert image.size == (WIDTH_PX, HEIGHT_PX) == (1200, 900)
    with Image.open(target) as saved:
        assert saved.format == "PNG"
        assert saved.size == (1200, 900)


def test_map_points_coloured_by_cluster():
    image = render_map(clustered(), title="test map").convert("RGB")
    pixels = np.asarray(image).reshape(-1, 3)

    saturated = pixels[(pixels.max(axis=1) - pixels.min(axis=1)) > 80]
    colours = {tuple(int(c) // 32 for c in pixel) for pixel in saturated}
    assert len(colours) >= 3


def test_map_of_empty_result():
    image = render_map(cluster_library([], np.zeros((0, 4), np.float32)))

    assert image.size == (1200, 900)


def test_map_keeps_global_backend():
    import matplotlib

    before = matplotlib.get_backend()
    render_map(clustered(groups=2, per_group=3))

    assert matplotlib.get_backend() == before

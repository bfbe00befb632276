"""Clusters of a library: grouping, readable names and 2-D coordinates."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lora_embedding.cluster_names import folder_safe_name, name_clusters, name_tokens
from lora_embedding.clusters import cluster_library, project_2d
from lora_embedding.library import LibraryEntry

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"

# Small, quickly embedded SD1.x files of four different training sets.
CORPUS_FILES = [
    "Ginger123319__CV/diffusers__examples__text_to_image__sd-pokemon-model-lora__pytorch_lora_weights.safetensors",
    "wellCh4n__pokemon-diffusers/pytorch_lora_weights.safetensors",
    "Hirvita6__LoRA-flower-diffusion/pytorch_lora_weights.safetensors",
    "qwerty-aditya__rick_and_morty_LoRA/pytorch_lora_weights.safetensors",
    "catundchat__stable-diffusion-v1.5-lora/pytorch_lora_weights.safetensors",
    "cloneofsimo__lora/example_loras__lora_disney.safetensors",
]

STYLE_TAGS = {0: ["watercolor", "landscape"], 1: ["pixel art", "sprite"], 2: ["ink sketch", "monochrome"]}


def grouped_vectors(groups=3, per_group=8, dim=48, noise=0.25, seed=0):
    """Return unit vectors in ``groups`` well separated clouds and each row's group."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, dim))
    rows, labels = [], []
    for group in range(groups):
        for _ in range(per_group):
            vector = centres[group] + noise * rng.standard_normal(dim)
            rows.append(vector / np.linalg.norm(vector))
            labels.append(group)
    return np.array(rows, dtype=np.float32), labels


def entry(name, tags=None, metadata_tags=None):
    metadata = {"tags": metadata_tags} if metadata_tags is not None else {}
    return LibraryEntry(path=f"/library/{name}", name=name, family="SD1.x", tags=tags or [], metadata=metadata)


def test_groups_found_and_named_from_tags():
    matrix, labels = grouped_vectors()
    entries = [
        entry(f"file{row:02d}.safetensors", metadata_tags=[[tag, 20 - i] for i, tag in enumerate(STYLE_TAGS[g] + ["1girl"])])
        for row, g in enumerate(labels)
    ]

    result = cluster_library(entries, matrix)

    assert len(result.clusters) == 3
    found = {frozenset(m.path for m in c.members) for c in result.clusters}
    expected = {frozenset(e.path for e, g in zip(entries, labels) if g == group) for group in range(3)}
    assert found == expected
    names = {c.name for c in result.clusters}
    assert names == {"watercolor landscape", "pixel art sprite", "ink sketch monochrome"}


def test_tag_shared_by_all_clusters_not_used():
    matrix, labels = grouped_vectors(groups=2)
    entries = [entry(f"f{row}.safetensors", tags=["1girl", STYLE_TAGS[g][0]]) for row, g in enumerate(labels)]

    result = cluster_library(entries, matrix)

    assert sorted(c.name for c in result.clusters) == ["pixel art", "watercolor"]


def test_names_fall_back_to_file_name_words():
    matrix, labels = grouped_vectors(groups=2, per_group=6)
    stems = {0: "animeStyle_v{run}-000010", 1: "oil-painting_lora_e{run}"}
    entries = [entry(stems[g].format(run=row) + ".safetensors") for row, g in enumerate(labels)]

    result = cluster_library(entries, matrix)

    assert sorted(c.name for c in result.clusters) == ["anime style", "oil painting"]


def test_names_fall_back_to_cluster_number():
    matrix, labels = grouped_vectors(groups=2, per_group=5)
    entries = [entry(f"{row:06d}_v{row}.safetensors") for row in range(len(labels))]

    result = cluster_library(entries, matrix)

    assert sorted(c.name for c in result.clusters) == ["cluster-1", "cluster-2"]


def test_result_json_and_coordinates():
    matrix, labels = grouped_vectors(groups=2, per_group=5)
    entries = [entry(f"style{g}_{row}.safetensors") for row, g in enumerate(labels)]

    result = cluster_library(entries, matrix)
    data = json.loads(json.dumps(result.to_json()))

    assert set(result.assignments) == {e.path for e in entries}
    assert set(result.coordinates) == {e.path for e in entries}
    assert all(len(point) == 2 and all(np.isfinite(point)) for point in result.coordinates.values())
    assert data["family"] == "SD1.x"
    assert sum(c["size"] for c in data["clusters"]) == len(entries)
    assert set(data["clusters"][0]) == {"id", "name", "size", "members"}
    assert len(data["coordinates"]) == len(entries)


def test_small_library_one_cluster():
    matrix, _ = grouped_vectors(groups=3, per_group=1)

    result = cluster_library([entry(f"a{i}.safetensors") for i in range(3)], matrix)

    assert len(result.clusters) == 1
    assert result.clusters[0].size == 3
    assert len(result.coordinates) == 3


def test_empty_library_no_clusters():
    result = cluster_library([], np.zeros((0, 8), np.float32))

    assert result.clusters == []
    assert result.coordinates == {}


def test_requested_cluster_count():
    matrix, labels = grouped_vectors(groups=3, per_group=6)
    entries = [entry(f"f{row}.safetensors") for row in range(len(labels))]

    assert len(cluster_library(entries, matrix, n_clusters=2).clusters) == 2
    assert len(cluster_library(entries, matrix, n_clusters=5).clusters) == 5
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_library(entries, matrix, n_clusters=0)


def test_clusters_deterministic():
    matrix, labels = grouped_vectors(groups=4, per_group=10, noise=0.6, seed=3)
    entries = [entry(f"f{row}.safetensors") for row in range(len(labels))]

    first = cluster_library(entries, matrix, layout="auto")
    second = cluster_library(entries, matrix, layout="auto")

    assert first.assignments == second.assignments
    assert first.coordinates == second.coordinates


def test_kmeans_path_for_large_libraries(monkeypatch):
    import lora_embedding.clusters as clusters_module

    monkeypatch.setattr(clusters_module, "AGGLOMERATIVE_MAX_ITEMS", 10)
    matrix, labels = grouped_vectors(groups=3, per_group=10)
    entries = [entry(f"f{row}.safetensors") for row in range(len(labels))]

    result = cluster_library(entries, matrix)

    assert len(result.clusters) == 3
    assert sorted(c.size for c in result.clusters) == [10, 10, 10]


def test_tsne_layout_needs_enough_points():
    matrix, _ = grouped_vectors(groups=2, per_group=20)

    assert project_2d(matrix, "tsne").shape == (40, 2)
    assert project_2d(matrix[:5], "tsne").shape == (5, 2)
    with pytest.raises(ValueError, match="layout"):
        project_2d(matrix, "umap")


@pytest.mark.parametrize(
    "stem, expected",
    [
        ("animeStyle_v2-000010", ["anime", "style"]),
        ("pytorch_lora_weights", []),
        ("3d_render sd15 e10", ["3d", "render"]),
        ("Watercolor.Landscape.v1.5", ["watercolor", "landscape"]),
        ("HTMLParser_r4", ["html", "parser"]),
    ],
)
def test_name_tokens(stem, expected):
    assert name_tokens(stem) == expected


def test_folder_safe_names():
    assert folder_safe_name("a/b\\c:d*e?", "x") == "a-b-c-d-e"
    assert folder_safe_name("  ..hidden.  ", "x") == "hidden"
    assert folder_safe_name("con", "cluster-3") == "cluster-3"
    assert folder_safe_name("???", "cluster-4") == "cluster-4"
    assert len(folder_safe_name("long " * 40, "x")) <= 60


def test_duplicate_names_made_unique():
    groups = [(1, [entry("a1.safetensors", tags=["Sci/Fi"])]), (2, [entry("a2.safetensors", tags=["sci:fi"])])]

    names = name_clusters(groups)

    assert names == {1: "sci-fi", 2: "sci-fi-2"}


@pytest.fixture(scope="module")
def corpus_library(tmp_path_factory):
    if not CORPUS.is_dir():
        pytest.skip("the shared LoRA corpus is not available")
    if importlib.util.find_spec("lora_embedding.reader") is None:
        pytest.skip("the LoRA reader is not available")
    from lora_embedding.library import LoraLibrary

    root = tmp_path_factory.mktemp("corpus_library")
    for relative in CORPUS_FILES:
        shutil.copyfile(CORPUS / relative, root / relative.replace("/", "__"))
    library = LoraLibrary([root], db_path=root.parent / "index.sqlite")
    library.refresh(workers=2, executor="thread")
    return library


def test_corpus_clusters_cover_library(corpus_library):
    result = corpus_library.clusters()

    assert set(result.assignments) == {e.path for e in corpus_library.entries(include_errors=False)}
    assert len(result.assignments) == len(CORPUS_FILES)
    names = [c.name for c in result.clusters]
    assert len({n.lower() for n in names}) == len(names)
    assert all(folder_safe_name(n, "?") == n for n in names)
    assert len(result.coordinates) == len(CORPUS_FILES)

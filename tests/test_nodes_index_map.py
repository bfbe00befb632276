"""Index LoRA Library and LoRA Library Map nodes, with fake ComfyUI modules."""

import pytest

import comfy_fakes


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    loras = tmp_path / "loras"
    fake = comfy_fakes.install(monkeypatch, [loras], tmp_path / "user")
    comfy_fakes.make_library(loras, styles=3, runs=3)
    fake.loras = loras
    yield fake
    from nodes import library_service

    service = library_service.reset_service()
    if service is not None:
        service.stop()


def test_index_reports_counts_and_progress(comfy):
    from nodes.index_library import index_library

    (comfy.loras / "broken.safetensors").write_bytes(b"not a safetensors file")

    report = index_library(workers=2).values[0]

    assert "added 9, updated 0, removed 0, unchanged 0, failed 1" in report
    assert "failed: broken.safetensors: " in report
    assert comfy.progress[-1] == (10, 10)


def test_index_second_run_unchanged_and_removed(comfy):
    from nodes.index_library import index_library

    index_library(workers=1)
    (comfy.loras / "style0" / "run0.safetensors").unlink()

    report = index_library(workers=1).values[0]

    assert "added 0, updated 0, removed 1, unchanged 8, failed 0" in report


def test_index_cancel_keeps_partial_index(comfy):
    from nodes import library_service
    from nodes.index_library import index_library

    comfy.interrupted = True
    management = comfy.modules["comfy.model_management"]

    with pytest.raises(management.InterruptProcessingException):
        index_library(workers=1)

    indexed = library_service.get_service().library(start_refresh=False).entries()
    assert 1 <= len(indexed) < 9
    assert comfy.interrupted is False


def test_index_db_in_comfy_user_directory(comfy, tmp_path):
    from nodes.index_library import index_library

    index_library(workers=1)

    assert (tmp_path / "user" / "lora_embedding" / "index.sqlite").is_file()


def test_map_image_and_named_clusters(comfy):
    from nodes.index_library import index_library
    from nodes.library_map import library_map

    index_library(workers=1)
    result = library_map("", n_clusters=3)
    image, summary = result.values

    assert image.ndim == 4
    assert image.shape[0] == 1
    assert image.shape[3] == 3
    lines = summary.splitlines()
    assert lines[0] == "SD1.x: 9 LoRAs in 3 clusters"
    assert [line.split(".")[0] for line in lines[1:]] == ["1", "2", "3"]
    for style in range(3):
        members = [line for line in lines[1:] if f"style{style}/" in line]
        assert len(members) == 1


def test_map_unknown_family_lists_known(comfy):
    from nodes.index_library import index_library
    from nodes.library_map import library_map

    index_library(workers=1)

    with pytest.raises(ValueError, match=r"family='SDXL' has no embedded LoRAs; families: SD1.x \(9\)"):
        library_map("SDXL", 0)


def test_map_without_matplotlib_degrades(comfy, monkeypatch):
    import sys

    from nodes.index_library import index_library
    from nodes.library_map import library_map

    index_library(workers=1)
    monkeypatch.setitem(sys.modules, "lora_embedding.map_image", None)

    image, summary = library_map("", 0).values

    assert "optional package" in summary
    assert image.shape[0] == 1

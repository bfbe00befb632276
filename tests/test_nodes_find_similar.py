"""Find Similar LoRAs node against a real library in tmp_path, with fake ComfyUI modules."""

import shutil

import pytest
from PIL import Image

import comfy_fakes


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    loras = tmp_path / "loras"
    fake = comfy_fakes.install(monkeypatch, [loras], tmp_path / "user")
    fake.names = comfy_fakes.make_library(loras)
    fake.loras = loras
    yield fake
    from nodes import library_service

    service = library_service.reset_service()
    if service is not None:
        service.stop()


def test_similar_ranks_same_style_first(comfy):
    from nodes.find_similar import find_similar

    result = find_similar("style1/run0.safetensors", "similar", top_k=3)
    names_text, name_list, first, scores_text, score_list, grid = result.values

    assert first == "style1/run1.safetensors"
    assert name_list[0] == first
    assert "style1/run0.safetensors" not in name_list
    assert len(name_list) == 3
    assert names_text.splitlines() == name_list
    assert score_list == sorted(score_list, reverse=True)
    assert len(scores_text.splitlines()) == 3


def test_first_pick_is_a_comfy_lora_name(comfy):
    from nodes.find_similar import find_similar

    first = find_similar("style0/run0.safetensors", "similar", top_k=2).values[2]

    assert first in comfy.modules["folder_paths"].get_filename_list("loras")


def test_dissimilar_excludes_same_style(comfy):
    from nodes.find_similar import find_similar

    name_list = find_similar("style2/run0.safetensors", "dissimilar", top_k=2, diversify=True).values[1]

    assert len(name_list) == 2
    assert all(not name.startswith("style2/") for name in name_list)


def test_duplicates_finds_copy(comfy):
    from nodes import library_service
    from nodes.find_similar import find_similar

    shutil.copy(comfy.loras / "style0/run0.safetensors", comfy.loras / "copy.safetensors")
    library_service.get_service().refresh(workers=1)

    result = find_similar("style0/run0.safetensors", "duplicates", top_k=5)

    assert result.values[1] == ["copy.safetensors"]
    assert result.values[4] == [pytest.approx(1.0, abs=1e-4)]


def test_no_duplicates_returns_reference(comfy):
    from nodes.find_similar import find_similar

    result = find_similar("style0/run0.safetensors", "duplicates", top_k=5)

    assert result.values[1] == []
    assert result.values[2] == "style0/run0.safetensors"
    assert "no match" in result.text


def test_preview_grid_has_one_cell_per_pick(comfy):
    from nodes.find_similar import find_similar
    from nodes.preview_grid import CELL, LABEL

    Image.new("RGB", (64, 32), (255, 0, 0)).save(comfy.loras / "style1" / "run1.png")
    from nodes import library_service

    library_service.get_service().refresh(workers=1)

    grid = find_similar("style1/run0.safetensors", "similar", top_k=3).values[5]

    assert tuple(grid.shape) == (1, CELL + LABEL, 3 * CELL, 3)
    assert float(grid.min()) >= 0.0
    assert float(grid.max()) <= 1.0
    red_cell = grid[0, :CELL, :CELL]
    assert float(red_cell[..., 0].max()) == 1.0
    assert float(red_cell[..., 1].min()) == 0.0


def test_unindexed_lora_embedded_on_demand(comfy):
    from nodes import library_service
    from nodes.find_similar import find_similar

    library_service.get_service().refresh(workers=1)
    comfy_fakes.make_library(comfy.loras / "late", styles=1, runs=1)
    (comfy.loras / "late" / "style0" / "run0.safetensors").rename(comfy.loras / "late.safetensors")

    result = find_similar("late.safetensors", "similar", top_k=2)

    assert result.values[1][0].startswith("style0/")


def test_unknown_name_raises_clear_error(comfy):
    from nodes.find_similar import find_similar

    with pytest.raises(ValueError, match="Find Similar LoRAs: .*missing.safetensors.*not in ComfyUI's loras folders"):
        find_similar("missing.safetensors", "similar", top_k=3)


def test_invalid_mode_rejected(comfy):
    from nodes.find_similar import find_similar

    with pytest.raises(ValueError, match="mode='nearest' is invalid"):
        find_similar("style0/run0.safetensors", "nearest", top_k=3)


def test_fingerprint_changes_after_refresh(comfy):
    from nodes import find_similar, library_service

    service = library_service.get_service()
    before = find_similar._fingerprint(lora_name="style0/run0.safetensors")
    service.refresh(workers=1)
    after = find_similar._fingerprint(lora_name="style0/run0.safetensors")

    assert before != after


def test_first_query_waits_for_background_index(comfy):
    from nodes import library_service
    from nodes.find_similar import find_similar

    result = find_similar("style0/run0.safetensors", "similar", top_k=5)

    assert len(result.values[1]) == 5
    assert library_service.get_service().last_report.added == 6

"""Load Similar LoRA node: neighbour choice and ComfyUI's LoRA loading, with fake ComfyUI modules."""

import pytest

import comfy_fakes


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    loras = tmp_path / "loras"
    fake = comfy_fakes.install(monkeypatch, [loras], tmp_path / "user")
    comfy_fakes.make_library(loras, styles=3, runs=3)
    from nodes import library_service

    library_service.get_service().refresh(workers=1)
    yield fake
    library_service.reset_service().stop()


def test_rank_one_loads_closest(comfy):
    from nodes.load_similar import load_similar

    result = load_similar("MODEL", "CLIP", "style0/run0.safetensors", neighbour=1, mode="rank")
    model, clip, name = result.values

    assert name.startswith("style0/")
    assert name != "style0/run0.safetensors"
    assert model == ("patched", "MODEL")
    assert clip == ("patched", "CLIP")
    call = comfy.lora_calls[0]
    assert call["strength_model"] == 1.0
    assert any(key.endswith("lora.down.weight") for key in call["keys"])


def test_rank_beyond_library_takes_last(comfy):
    from nodes.load_similar import load_similar

    name = load_similar("MODEL", "CLIP", "style0/run0.safetensors", neighbour=50, mode="rank", top_k=1).values[2]

    assert name in comfy.modules["folder_paths"].get_filename_list("loras")


def test_random_mode_repeats_with_seed(comfy):
    from nodes.load_similar import load_similar

    picks = [load_similar("MODEL", None, "style1/run0.safetensors", mode="random", top_k=4, seed=seed).values[2]
             for seed in (7, 7, 8, 9, 10, 11)]

    assert picks[0] == picks[1]
    assert len(set(picks)) > 1
    assert "style1/run0.safetensors" not in picks


def test_model_only_without_clip(comfy):
    from nodes.load_similar import load_similar

    model, clip, _ = load_similar("MODEL", None, "style2/run1.safetensors").values

    assert model == ("patched", "MODEL")
    assert clip is None
    assert comfy.lora_calls[0]["clip"] is None


def test_zero_strengths_skip_loading(comfy):
    from nodes.load_similar import load_similar

    result = load_similar("MODEL", "CLIP", "style0/run0.safetensors", strength_model=0, strength_clip=0)

    assert result.values[:2] == ("MODEL", "CLIP")
    assert comfy.lora_calls == []


def test_choose_neighbour_table():
    from types import SimpleNamespace

    from nodes.load_similar import choose_neighbour

    matches = [SimpleNamespace(rank=index) for index in range(1, 6)]

    assert choose_neighbour([], 1, "rank", 5, 0) is None
    assert choose_neighbour(matches, 1, "rank", 5, 0).rank == 1
    assert choose_neighbour(matches, 3, "rank", 5, 0).rank == 3
    assert choose_neighbour(matches, 9, "rank", 5, 0).rank == 5
    assert choose_neighbour(matches, 1, "random", 2, 123).rank in (1, 2)

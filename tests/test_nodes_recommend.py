"""Recommend LoRAs node: parsing the used LoRAs, suggestions and the prompt snippet."""

import pytest

import comfy_fakes


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    loras = tmp_path / "loras"
    fake = comfy_fakes.install(monkeypatch, [loras], tmp_path / "user")
    comfy_fakes.make_library(loras, styles=3, runs=3)
    (loras / "style2" / "run2.safetensors").rename(loras / "style2" / "unique_name.safetensors")
    from nodes import library_service

    library_service.get_service().refresh(workers=1)
    yield fake
    library_service.reset_service().stop()


def test_parse_tags_and_lines(comfy):
    from nodes.recommend import parse_used_loras

    assert parse_used_loras("a cat, <lora:foo:0.7> and <lora:bar> <lora:foo:1>") == ["foo", "bar"]
    assert parse_used_loras("style0/run0.safetensors\n\n  style1/run1.safetensors \n") == [
        "style0/run0.safetensors", "style1/run1.safetensors"]
    assert parse_used_loras("") == []


def test_similar_suggests_same_style_unused(comfy):
    from nodes.recommend import recommend

    result = recommend("<lora:style0/run0:1> <lora:style0/run1:0.5>", "similar", top_k=3)
    names_text, name_list, snippet, grid = result.values

    assert name_list[0] == "style0/run2.safetensors"
    assert "style0/run0.safetensors" not in name_list
    assert "style0/run1.safetensors" not in name_list
    assert snippet.split()[0] == "<lora:run2:1>"
    assert len(snippet.split()) == 3
    assert grid.shape[0] == 1


def test_stem_names_and_weight(comfy):
    from nodes.recommend import recommend

    result = recommend("unique_name", "similar", top_k=1, weight=0.8)

    assert result.values[1][0].startswith("style2/")
    assert result.values[2].endswith(":0.8>")


def test_complementary_leaves_used_style(comfy):
    from nodes.recommend import recommend

    name_list = recommend("style1/run0.safetensors", "complementary", top_k=2).values[1]

    assert len(name_list) == 2
    assert all(not name.startswith("style1/") for name in name_list)


def test_unknown_names_reported(comfy):
    from nodes.recommend import recommend

    result = recommend("style0/run0.safetensors\nnot_a_lora", "similar", top_k=2)

    assert "not found, skipped: not_a_lora" in result.text
    assert len(result.values[1]) == 2


def test_only_unknown_names_raise(comfy):
    from nodes.recommend import recommend

    with pytest.raises(ValueError, match="Recommend LoRAs: none of the used LoRAs is in the library: nope"):
        recommend("<lora:nope:1>", "similar", top_k=2)


def test_empty_input_raises(comfy):
    from nodes.recommend import recommend

    with pytest.raises(ValueError, match="used_loras is empty"):
        recommend("   ", "similar", top_k=2)

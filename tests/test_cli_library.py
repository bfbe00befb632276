"""The library commands end to end: index, similar, dissimilar, duplicates, on a ComfyUI-style tree."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file, save_file

from library_files import write_lora
from lora_embedding.cli import main
from lora_embedding.library import LoraLibrary, parse_lora_tags

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@pytest.fixture
def comfy_tree(tmp_path):
    """A ComfyUI ``models/loras`` tree with subfolders, previews and sidecars."""
    loras = tmp_path / "ComfyUI" / "models" / "loras"
    (loras / "styles" / "ink").mkdir(parents=True)
    (loras / "characters").mkdir()
    write_lora(loras / "styles" / "ink" / "ink_wash_v1.safetensors", style_seed=1, run_seed=1)
    write_lora(loras / "styles" / "ink_wash_retrain.safetensors", style_seed=1, run_seed=2)
    write_lora(loras / "characters" / "hero.safetensors", style_seed=2, run_seed=3)
    write_lora(loras / "characters" / "villain.safetensors", style_seed=3, run_seed=4)
    write_lora(loras / "misc.safetensors", style_seed=4, run_seed=5)

    Image.new("RGB", (64, 64), "red").save(loras / "styles" / "ink" / "ink_wash_v1.preview.png")
    (loras / "characters" / "hero.civitai.info").write_text(json.dumps({
        "model": {"name": "Hero Character", "tags": ["character", "hero"]},
        "trainedWords": ["hero_token"],
        "baseModel": "SD 1.5",
    }))
    (loras / "characters" / "hero.json").write_text(json.dumps({"activation text": "hero_token"}))

    # The same weights as the villain, re-saved in fp16 under another name.
    tensors = load_file(str(loras / "characters" / "villain.safetensors"))
    save_file({k: v.astype(np.float16) for k, v in tensors.items()}, str(loras / "villain_fp16_copy.safetensors"))
    return loras


def _run(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_index_then_similar_json(comfy_tree, tmp_path, capsys):
    database = str(tmp_path / "index.sqlite")
    status, out, _ = _run(capsys, "index", str(comfy_tree), "--db", database, "--json", "--workers", "0")
    assert status == 0
    report = json.loads(out)
    assert report["added"] == 6
    assert report["failed"] == []

    status, out, _ = _run(capsys, "similar", "styles/ink/ink_wash_v1.safetensors", "--library", str(comfy_tree),
                          "--db", database, "--json", "-k", "3")
    assert status == 0
    result = json.loads(out)
    assert result["query"]["name"] == "styles/ink/ink_wash_v1.safetensors"
    assert result["family"] == "SD1.x"
    assert result["model"]["kind"] in ("learned", "training-free")
    assert [r["name"] for r in result["results"]][0] == "styles/ink_wash_retrain.safetensors"
    assert len(result["results"]) == 3
    assert {"name", "path", "score", "family", "format", "size", "preview"} <= set(result["results"][0])


def test_similar_accepts_stem_and_outside_path(comfy_tree, tmp_path, capsys):
    database = str(tmp_path / "index.sqlite")
    _run(capsys, "index", str(comfy_tree), "--db", database, "--workers", "0")

    status, out, _ = _run(capsys, "similar", "ink_wash_v1", "--library", str(comfy_tree), "--db", database, "--json")
    assert status == 0
    assert json.loads(out)["results"][0]["name"] == "styles/ink_wash_retrain.safetensors"

    outside = tmp_path / "downloads" / "new_ink_style.safetensors"
    outside.parent.mkdir()
    write_lora(outside, style_seed=1, run_seed=77)
    status, out, _ = _run(capsys, "similar", str(outside), "--library", str(comfy_tree), "--db", database, "--json")
    assert status == 0
    names = [r["name"] for r in json.loads(out)["results"][:2]]
    assert set(names) == {"styles/ink/ink_wash_v1.safetensors", "styles/ink_wash_retrain.safetensors"}


def test_unknown_query_is_a_clear_error(comfy_tree, tmp_path, capsys):
    database = str(tmp_path / "index.sqlite")
    status, _, err = _run(capsys, "similar", "no_such_lora", "--library", str(comfy_tree), "--db", database)
    assert status == 2
    assert "no_such_lora" in err
    assert "neither a LoRA of the library (6 files indexed) nor a file" in err

    status, _, err = _run(capsys, "similar", "ink_wash_v2", "--library", str(comfy_tree), "--db", database)
    assert status == 2
    assert "neither a LoRA of the library" in err
    assert "did you mean 'styles/ink/ink_wash_v1.safetensors'" in err


def test_dissimilar_diversified(comfy_tree, tmp_path, capsys):
    database = str(tmp_path / "index.sqlite")
    _run(capsys, "index", str(comfy_tree), "--db", database, "--workers", "0")
    status, out, _ = _run(capsys, "dissimilar", "styles/ink/ink_wash_v1.safetensors", "--library", str(comfy_tree),
                          "--db", database, "--json", "-k", "3", "--diversify")
    assert status == 0
    names = [r["name"] for r in json.loads(out)["results"]]
    assert len(names) == 3
    assert "styles/ink_wash_retrain.safetensors" not in names
    # The two copies of the villain are the same weights, so diversification keeps at most one of them.
    assert not {"characters/villain.safetensors", "villain_fp16_copy.safetensors"} <= set(names)


def test_duplicates_across_precision_and_name(comfy_tree, tmp_path, capsys):
    database = str(tmp_path / "index.sqlite")
    status, out, _ = _run(capsys, "duplicates", "--library", str(comfy_tree), "--db", database, "--json")
    assert status == 0
    groups = json.loads(out)["groups"]
    assert len(groups) == 1
    names = sorted(f["name"] for f in groups[0]["files"])
    assert names == ["characters/villain.safetensors", "villain_fp16_copy.safetensors"]
    assert groups[0]["reason"] == "same weights"
    sizes = {f["name"]: f["size"] for f in groups[0]["files"]}
    assert sizes["villain_fp16_copy.safetensors"] < sizes["characters/villain.safetensors"]


def test_sidecars_give_preview_and_tags(comfy_tree, tmp_path):
    library = LoraLibrary([comfy_tree], db_path=str(tmp_path / "index.sqlite"))
    library.refresh(workers=0)
    ink = library.find("styles/ink/ink_wash_v1.safetensors")
    assert ink.preview.endswith("ink_wash_v1.preview.png")
    hero = library.find("hero")
    assert hero.tags[:2] == ["character", "hero"]
    assert "hero_token" in hero.tags


def test_recommend_excludes_used_loras(comfy_tree, tmp_path):
    library = LoraLibrary([comfy_tree], db_path=str(tmp_path / "index.sqlite"))
    library.refresh(workers=0)
    prompt = "a castle, <lora:ink_wash_v1:0.8> <lora:hero:1>, night"
    names = [name for name, _ in parse_lora_tags(prompt)]
    assert names == ["ink_wash_v1", "hero"]
    picks = library.recommend(names, k=3)
    picked = [m.entry.name for m in picks]
    assert "styles/ink/ink_wash_v1.safetensors" not in picked
    assert "characters/hero.safetensors" not in picked
    assert picked[0] == "styles/ink_wash_retrain.safetensors"


def test_parse_lora_tags_weights():
    assert parse_lora_tags("<lora:a:0.5> <LORA:b> <lyco:c:x> <lora:d:1:te=0.5>") == [
        ("a", 0.5), ("b", 1.0), ("c", 1.0), ("d", 1.0)]


def test_index_without_folder_uses_comfyui_path(comfy_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COMFYUI_PATH", str(comfy_tree.parents[1]))
    monkeypatch.chdir(tmp_path)
    status, out, _ = _run(capsys, "index", "--db", str(tmp_path / "index.sqlite"), "--json", "--workers", "0",
                          "--show-similar")
    assert status == 0
    result = json.loads(out)
    assert result["roots"] == [str(comfy_tree)]
    assert result["similar"]["results"]


@pytest.mark.skipif(not (CORPUS / "catalog.json").exists(), reason="the real LoRA corpus (../shared/corpus) is absent")
def test_corpus_pokemon_neighbours_are_pokemon(tmp_path, capsys):
    catalog = json.loads((CORPUS / "catalog.json").read_text())
    pokemon = [e for e in catalog if e["group"] == "pokemon-blip-captions" and not e["is_intermediate_checkpoint"]]
    others = [e for e in catalog if e["usable"] and e["group"] != "pokemon-blip-captions"
              and e["base_model_guess"] == "SD1.x"][:6]
    library_dir = tmp_path / "loras"
    for entry in pokemon + others:
        target = library_dir / entry["saved_as"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / entry["saved_as"], target)

    database = str(tmp_path / "index.sqlite")
    assert main(["index", str(library_dir), "--db", database]) == 0
    capsys.readouterr()
    query = "Ginger123319__CV/diffusers__examples__text_to_image__sd-pokemon-model-lora__pytorch_lora_weights.safetensors"
    assert main(["similar", query, "--library", str(library_dir), "--db", database, "--json", "-k", "3"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    pokemon_names = {e["saved_as"] for e in pokemon}
    assert all(r["name"] in pokemon_names for r in results)


def test_byte_identical_copies_are_identical_files(comfy_tree, tmp_path):
    shutil.copyfile(comfy_tree / "misc.safetensors", comfy_tree / "styles" / "misc_copy.safetensors")
    library = LoraLibrary([comfy_tree], db_path=str(tmp_path / "index.sqlite"))
    library.refresh(workers=0)
    groups = {tuple(sorted(e.name for e in g.entries)): g.reason for g in library.duplicates()}
    assert groups[("misc.safetensors", "styles/misc_copy.safetensors")] == "identical files"
    entry = library.find("misc.safetensors")
    assert len(library.file_sha256(entry)) == 64

"""The ``clusters``, ``map`` and ``organize`` commands on a real indexed library."""

import io
import json
import sys

import pytest
from PIL import Image

from lora_embedding.cli import main
from lora_embedding.library import LoraLibrary
from library_files import write_lora
from test_organize import snapshot

STYLES = {101: "watercolor", 102: "pixel art", 103: "ink sketch"}
RUNS = 3


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A library of three styles, three runs each, with sidecars, indexed once for the module."""
    base = tmp_path_factory.mktemp("cli_library")
    root = base / "loras"
    (root / "old").mkdir(parents=True)
    for style_seed, tag in STYLES.items():
        frequency = json.dumps({"10_data": {tag: 40, "solo": 12}})
        for run in range(RUNS):
            folder = root / "old" if run == 0 else root
            path = folder / f"{tag.replace(' ', '')}_run{run}.safetensors"
            write_lora(path, style_seed, run, metadata={"format": "pt", "ss_tag_frequency": frequency})
            path.with_suffix(".png").write_bytes(f"preview of {path.name}".encode())
    (root / "watercolor_run1.civitai.info").write_text(json.dumps({"model": {"name": "Watercolor"}}))

    database = base / "index.sqlite"
    LoraLibrary([root], db_path=database).refresh(workers=1, executor="thread")
    return root, database


def run_cli(capsys, indexed, *arguments, stdin=None, monkeypatch=None):
    root, database = indexed
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main([arguments[0], "--library", str(root), "--db", str(database), *arguments[1:]])
    output = capsys.readouterr()
    return status, output.out, output.err


def test_clusters_json_named_from_tags(capsys, indexed):
    status, out, _ = run_cli(capsys, indexed, "clusters", "--json")

    clusters = json.loads(out)
    assert status == 0
    assert sorted(c["name"] for c in clusters) == ["ink sketch", "pixel art", "watercolor"]
    assert all(set(c) == {"id", "name", "size", "members"} for c in clusters)
    watercolor = next(c for c in clusters if c["name"] == "watercolor")
    assert sorted(watercolor["members"]) == ["old/watercolor_run0.safetensors", "watercolor_run1.safetensors",
                                             "watercolor_run2.safetensors"]


def test_clusters_table_and_count(capsys, indexed):
    status, out, _ = run_cli(capsys, indexed, "clusters", "-k", "2")

    assert status == 0
    assert "9 SD1.x LoRAs in 2 clusters" in out
    assert out.splitlines()[1].split() == ["id", "size", "name", "members"]


def test_clusters_unknown_family(capsys, indexed):
    status, _, err = run_cli(capsys, indexed, "clusters", "--family", "Flux")

    assert status == 2
    assert "no LoRA of family 'Flux'" in err
    assert "SD1.x (9)" in err


def test_map_writes_png(capsys, indexed, tmp_path):
    target = tmp_path / "map.png"

    status, out, _ = run_cli(capsys, indexed, "map", "--out", str(target), "--layout", "pca")

    assert status == 0
    assert "1200×900" in out
    with Image.open(target) as image:
        assert image.size == (1200, 900)


def test_map_missing_folder(capsys, indexed, tmp_path):
    status, _, err = run_cli(capsys, indexed, "map", "--out", str(tmp_path / "no" / "map.png"))

    assert status == 2
    assert "does not exist" in err


def test_organize_plan_apply_undo(capsys, indexed, tmp_path, monkeypatch):
    root, _ = indexed
    journal = str(tmp_path / "journal")
    before = snapshot(root)

    status, out, err = run_cli(capsys, indexed, "organize", "--plan", "--json", "--journal", journal)
    plan = json.loads(out)
    assert status == 0
    assert "ComfyUI workflows" in err
    assert sorted({g["folder"] for g in plan["groups"]}) == ["ink sketch", "pixel art", "watercolor"]
    assert sum(len(g["moves"]) for g in plan["groups"]) == 19
    assert (tmp_path / "journal" / "plan.json").is_file()

    status, _, err = run_cli(capsys, indexed, "organize", "--apply", "--journal", journal,
                             stdin="n\n", monkeypatch=monkeypatch)
    assert status == 1
    assert "nothing was changed" in err
    assert snapshot(root) == before

    status, out, err = run_cli(capsys, indexed, "organize", "--apply", "--journal", journal,
                               stdin="y\n", monkeypatch=monkeypatch)
    files, _ = snapshot(root)
    assert status == 0
    assert "moved 19 files" in out
    assert "lora-embedding index" in err
    assert "watercolor/watercolor_run0.png" in files
    assert "watercolor/watercolor_run1.civitai.info" in files

    status, out, err = run_cli(capsys, indexed, "organize", "--undo", "--journal", journal)
    assert status == 0
    assert "moved back: 19 files" in out
    assert "ComfyUI workflows" in err
    assert snapshot(root) == before


def test_organize_apply_without_plan(capsys, indexed, tmp_path):
    status, _, err = run_cli(capsys, indexed, "organize", "--apply", "--yes", "--journal", str(tmp_path / "j"))

    assert status == 2
    assert "organize --plan first" in err


def test_organize_stale_plan_rejected(capsys, indexed, tmp_path):
    root, _ = indexed
    journal = str(tmp_path / "journal")
    run_cli(capsys, indexed, "organize", "--plan", "--journal", journal)
    preview = root / "inksketch_run1.png"
    original = preview.read_bytes()
    preview.write_bytes(original + b" edited")
    try:
        before = snapshot(root)
        status, _, err = run_cli(capsys, indexed, "organize", "--apply", "--yes", "--journal", journal)
        assert status == 2
        assert "stale" in err
        assert "inksketch_run1.png" in err
        assert snapshot(root) == before
    finally:
        preview.write_bytes(original)


def test_organize_link_view(capsys, indexed, tmp_path):
    root, _ = indexed
    journal = str(tmp_path / "journal")
    view = tmp_path / "view"
    before = snapshot(root)

    run_cli(capsys, indexed, "organize", "--plan", "--link", str(view), "--journal", journal)
    status, out, _ = run_cli(capsys, indexed, "organize", "--apply", "--yes", "--link", str(view), "--journal", journal)

    assert status == 0
    assert "linked 19 files" in out
    assert (view / "pixel art" / "pixelart_run0.safetensors").is_symlink()
    assert snapshot(root) == before

    status, out, _ = run_cli(capsys, indexed, "organize", "--undo", "--journal", journal)
    assert status == 0
    assert "removed links: 19 files" in out
    assert not view.exists()


def test_organize_link_plan_mismatch(capsys, indexed, tmp_path):
    journal = str(tmp_path / "journal")
    run_cli(capsys, indexed, "organize", "--plan", "--journal", journal)

    status, _, err = run_cli(capsys, indexed, "organize", "--apply", "--yes", "--link", str(tmp_path / "v"),
                             "--journal", journal)

    assert status == 2
    assert "does not build a link view" in err

"""The Gradio app: build it and call every tab's handlers on a small generated library."""

import os

import pytest
from PIL import Image

gradio = pytest.importorskip("gradio")

from library_files import write_lora  # noqa: E402
from lora_embedding.ui import build_ui  # noqa: E402
from lora_embedding.ui import tab_clusters, tab_duplicates, tab_index, tab_organize, tab_recommend  # noqa: E402
from lora_embedding.ui import tab_search, tab_settings  # noqa: E402
from lora_embedding.ui.images import entry_image  # noqa: E402
from lora_embedding.ui.state import LibraryController  # noqa: E402


def _frame_rows(frame):
    return frame.values.tolist()


@pytest.fixture
def library_dir(tmp_path):
    folder = tmp_path / "loras"
    (folder / "ink").mkdir(parents=True)
    write_lora(folder / "ink" / "ink_run1.safetensors", style_seed=1, run_seed=11)
    write_lora(folder / "ink" / "ink_run2.safetensors", style_seed=1, run_seed=12)
    write_lora(folder / "ink_run3.safetensors", style_seed=1, run_seed=13)
    write_lora(folder / "oil_run1.safetensors", style_seed=2, run_seed=21)
    write_lora(folder / "oil_run2.safetensors", style_seed=2, run_seed=22)
    write_lora(folder / "neon_run1.safetensors", style_seed=3, run_seed=31)
    Image.new("RGB", (640, 480), (200, 30, 30)).save(folder / "ink" / "ink_run1.png")
    (folder / "truncated.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{")
    return folder


@pytest.fixture
def controller(library_dir, tmp_path):
    return LibraryController([library_dir], db_path=str(tmp_path / "index.sqlite"), workers=0)


@pytest.fixture
def indexed(controller):
    calls = []
    status, failures, names = tab_index.index_library(controller, lambda fraction, desc=None: calls.append(fraction))
    controller.progress_calls = calls
    return controller


def test_build_ui_creates_no_index(library_dir, tmp_path):
    database = tmp_path / "never.sqlite"
    demo = build_ui([library_dir], db_path=str(database))
    assert isinstance(demo, gradio.Blocks)
    assert not database.exists()


def test_build_ui_needs_a_folder():
    with pytest.raises(ValueError, match="library folder"):
        build_ui([])


def test_index_reports_progress_and_failures(controller):
    calls = []
    status, failures, names = tab_index.index_library(controller, lambda fraction, desc=None: calls.append(fraction))
    assert "6 LoRAs indexed" in status
    assert "1 failed" in status
    assert calls[-1] == pytest.approx(1.0)
    rows = _frame_rows(failures)
    assert [row[0] for row in rows] == ["truncated.safetensors"]
    assert rows[0][1]
    assert "ink/ink_run1.safetensors" in names
    assert "truncated.safetensors" not in names


def test_index_missing_folder(tmp_path):
    controller = LibraryController([tmp_path / "absent"], db_path=str(tmp_path / "db.sqlite"))
    status, _, names = tab_index.index_library(controller)
    assert "Folder not found" in status
    assert names == []


def test_similar_ranks_same_style_first(indexed):
    result = tab_search.find_neighbours(indexed, "ink/ink_run1.safetensors", k=5)
    preview, description, similar, dissimilar, similar_table, _, tag, similar_tags, _ = result
    assert tag == "<lora:ink_run1:1>"
    assert "SD1.x" in description
    top_two = {row[1] for row in _frame_rows(similar_table)[:2]}
    assert top_two == {"ink/ink_run2.safetensors", "ink_run3.safetensors"}
    assert set(similar_tags[:2]) == {"<lora:ink_run2:1>", "<lora:ink_run3:1>"}
    assert len(similar) == 5
    assert similar[0][1].split(" · ")[1] in {"ink_run2", "ink_run3"}
    assert float(similar[0][1].split(" · ")[0]) > 0.5
    assert os.path.isfile(preview)
    with Image.open(preview) as image:
        assert max(image.size) <= 256
        assert image.getpixel((10, 10)) == (200, 30, 30)
    farthest = _frame_rows(result[5])[0][1]
    assert farthest not in {"ink/ink_run2.safetensors", "ink_run3.safetensors"}


def test_similar_unknown_name(indexed):
    result = tab_search.find_neighbours(indexed, "missing.safetensors")
    assert "Cannot search" in result[1]
    assert result[2] == []


def test_pick_tag_from_gallery_click():
    tags = ["<lora:a:1>", "<lora:b:1>"]
    assert tab_search.pick_tag(tags, 1) == "<lora:b:1>"
    assert tab_search.pick_tag(tags, 5) == ""
    assert tab_search.pick_tag(tags, None) == ""


def test_placeholder_for_missing_preview(indexed):
    entry = indexed.library.find("oil_run1")
    path = entry_image(entry)
    with Image.open(path) as image:
        assert image.size == (256, 256)
        assert image.getpixel((2, 2)) == (58, 62, 70)


def test_recommend_from_prompt(indexed):
    prompt = "a harbour at night, <lora:oil_run1:0.8> <lora:not_here:1>"
    status, gallery, rows, tags, gallery_tags = tab_recommend.recommend_for_prompt(indexed, prompt, "similar", 3)
    assert "`oil_run1`" in status
    assert "not_here" in status
    assert _frame_rows(rows)[0][1] == "oil_run2.safetensors"
    assert tags.split()[0] == "<lora:oil_run2:1>"
    assert "<lora:oil_run1:1>" not in tags
    assert len(gallery) == 3


def test_recommend_without_tags(indexed):
    status, gallery, _, _, _ = tab_recommend.recommend_for_prompt(indexed, "no tags here")
    assert "No `<lora" in status
    assert gallery == []


def test_duplicates_grouped_with_sizes(indexed, library_dir):
    source = library_dir / "oil_run1.safetensors"
    (library_dir / "copy").mkdir()
    (library_dir / "copy" / "oil_copy.safetensors").write_bytes(source.read_bytes())
    tab_index.index_library(indexed)
    summary, frame = tab_duplicates.find_duplicates(indexed)
    rows = _frame_rows(frame)
    assert "1 groups" in summary
    assert sorted(row[2] for row in rows) == ["copy/oil_copy.safetensors", "oil_run1.safetensors"]
    assert all(row[4].endswith("KB") or row[4].endswith("MB") for row in rows)
    assert all(row[0] == 1 for row in rows)


def test_clusters_map_and_gallery(indexed):
    image, status, frame, dropdown, members, items, tags = tab_clusters.cluster_map(indexed, None, 3)
    assert "6 SD1.x LoRAs in 3 clusters" in status
    with Image.open(image) as picture:
        assert picture.size == (1200, 900)
    assert len(members) == 3
    assert dropdown["value"] in members
    groups = sorted(sorted(names) for names in members.values())
    assert ["ink/ink_run1.safetensors", "ink/ink_run2.safetensors", "ink_run3.safetensors"] in groups
    second = list(members)[1]
    gallery, second_tags = tab_clusters.cluster_gallery(indexed, members, second)
    assert len(gallery) == len(members[second])
    assert second_tags.count("<lora:") == len(members[second])


def test_clusters_before_indexing(controller):
    image, status, *_ = tab_clusters.cluster_map(controller)
    assert image is None
    assert "Not indexed" in status


def test_organize_needs_confirmation_then_undoes(indexed, library_dir):
    before = sorted(p.relative_to(library_dir).as_posix() for p in library_dir.rglob("*.safetensors"))
    summary, frame, plan, _ = tab_organize.plan_organize(indexed, "move", "", 2)
    assert plan is not None
    assert "Nothing has changed yet" in summary
    assert len(_frame_rows(frame)) >= 1

    status, kept_plan, _ = tab_organize.apply_organize(indexed, plan, False)
    assert "tick the confirmation box" in status
    assert kept_plan == plan
    assert sorted(p.relative_to(library_dir).as_posix() for p in library_dir.rglob("*.safetensors")) == before

    status, remaining, _ = tab_organize.apply_organize(indexed, plan, True)
    assert status.startswith("Moved")
    assert remaining is None
    assert sorted(p.relative_to(library_dir).as_posix() for p in library_dir.rglob("*.safetensors")) != before
    assert (library_dir / [row[1] for row in _frame_rows(frame)][0]).is_dir()

    status = tab_organize.undo_organize(indexed)
    assert status.startswith("Moved back")
    assert sorted(p.relative_to(library_dir).as_posix() for p in library_dir.rglob("*.safetensors")) == before


def test_organize_link_needs_folder(indexed):
    summary, _, plan, _ = tab_organize.plan_organize(indexed, "link", "", 0)
    assert "folder that receives the links" in summary
    assert plan is None


def test_settings_models_and_folders(indexed, tmp_path):
    rows = _frame_rows(tab_settings.model_table(indexed))
    assert rows[0][0] == "SD1.x"
    assert rows[0][1] == 6
    assert rows[0][3] in ("learned", "training-free")

    status, text = tab_settings.apply_folders(indexed, f"{tmp_path / 'other'}\n")
    assert "Not found" in status
    assert text == str(tmp_path / "other")
    assert indexed.roots == [str(tmp_path / "other")]

    status, _ = tab_settings.apply_folders(indexed, "  \n")
    assert "at least one folder" in status

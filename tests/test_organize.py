"""Folder organizing: plans, applying them, undo, crash recovery and link views."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lora_embedding import organize_files
from lora_embedding.errors import OrganizeError
from lora_embedding.organize import Plan, apply_plan, make_link_view, make_plan, undo_last
from lora_embedding.organize_journal import last_applied_journal, read_journal

REPOSITORY = Path(__file__).resolve().parents[1]

# LoRA file (relative to the root) -> (cluster id, sidecar endings next to it)
TREE = {
    "a.safetensors": (1, [".png", ".civitai.info"]),
    "b.safetensors": (1, [".preview.jpg"]),
    "sub/c.safetensors": (2, [".json", ".txt"]),
    "sub/d.safetensors": (2, []),
    "e.safetensors": (1, [".metadata.json"]),
}
NAMES = {1: "anime", 2: "landscape"}


def write_lora_file(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {"lora_unet_x.lora_down.weight": rng.standard_normal((4, 16)).astype(np.float32),
               "lora_unet_x.lora_up.weight": rng.standard_normal((16, 4)).astype(np.float32)}
    save_file(tensors, str(path))


def build_tree(root, tree=TREE):
    """Write every LoRA of ``tree`` with its sidecars; return ``{path: cluster id}``."""
    assignments = {}
    for seed, (relative, (cluster_id, sidecars)) in enumerate(sorted(tree.items())):
        lora = root / relative
        write_lora_file(lora, seed)
        stem = str(lora)[: -len(".safetensors")]
        for ending in sidecars:
            Path(stem + ending).write_bytes(f"{relative}{ending} sidecar".encode())
        assignments[str(lora)] = cluster_id
    (root / "notes.txt").write_text("not a LoRA")
    return assignments


def snapshot(root):
    """Return ``({relative file: sha256}, {relative folder})`` of a tree, links included as their target."""
    files, folders = {}, set()
    for folder, subfolders, names in os.walk(root):
        relative_folder = os.path.relpath(folder, root)
        folders.update(os.path.normpath(os.path.join(relative_folder, d)) for d in subfolders)
        for name in names:
            path = os.path.join(folder, name)
            key = os.path.normpath(os.path.join(relative_folder, name))
            if os.path.islink(path):
                files[key] = "link->" + os.readlink(path)
            else:
                files[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return files, folders


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "loras"
    assignments = build_tree(root)
    return root, assignments, tmp_path / "journal"


def test_plan_moves_sidecars_along(library):
    root, assignments, _ = library

    plan = make_plan([root], assignments, NAMES)

    by_source = {Path(m.source).relative_to(root).as_posix(): Path(m.destination).relative_to(root).as_posix()
                 for m in plan.moves}
    assert by_source["a.safetensors"] == "anime/a.safetensors"
    assert by_source["a.png"] == "anime/a.png"
    assert by_source["a.civitai.info"] == "anime/a.civitai.info"
    assert by_source["sub/c.json"] == "landscape/c.json"
    assert by_source["b.preview.jpg"] == "anime/b.preview.jpg"
    assert "notes.txt" not in by_source
    assert len(plan.groups) == 5
    assert plan.folders() == ["anime", "landscape"]


def test_plan_json_round_trip(library, tmp_path):
    root, assignments, _ = library
    plan = make_plan([root], assignments, NAMES)

    plan.save(tmp_path / "plan.json")
    loaded = Plan.load(tmp_path / "plan.json")

    assert loaded.to_json() == plan.to_json()
    assert json.loads((tmp_path / "plan.json").read_text())["version"] == 1
    assert all({"size", "mtime_ns"} <= set(m) for g in plan.to_json()["groups"] for m in g["moves"])


def test_plan_file_missing_or_invalid(tmp_path):
    with pytest.raises(OrganizeError, match="organize --plan first"):
        Plan.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"version": 99}')
    with pytest.raises(OrganizeError, match="version"):
        Plan.load(tmp_path / "bad.json")


def test_apply_then_undo_restores_tree(library):
    root, assignments, journal = library
    before = snapshot(root)

    report = apply_plan(make_plan([root], assignments, NAMES), journal)

    moved_files, moved_folders = snapshot(root)
    assert report.files == 11
    assert moved_folders == {"anime", "landscape", "sub"}
    assert moved_files["anime/a.safetensors"] == before[0]["a.safetensors"]
    assert moved_files["landscape/c.txt"] == before[0]["sub/c.txt"]
    assert "a.safetensors" not in moved_files

    undo = undo_last(journal)

    assert snapshot(root) == before
    assert undo.restored == 11
    assert sorted(os.path.basename(f) for f in undo.folders_removed) == ["anime", "landscape"]
    with pytest.raises(OrganizeError, match="nothing to undo"):
        undo_last(journal)


def test_two_applies_undone_in_order(library):
    root, assignments, journal = library
    original = snapshot(root)
    apply_plan(make_plan([root], assignments, NAMES), journal)
    first = snapshot(root)
    moved = {str(root / NAMES[cluster_id] / Path(path).name): 1 for path, cluster_id in assignments.items()}
    apply_plan(make_plan([root], moved, {1: "all"}), journal)

    undo_last(journal)
    assert snapshot(root) == first
    undo_last(journal)
    assert snapshot(root) == original


def test_lora_already_in_place_unchanged(library):
    root, assignments, journal = library
    apply_plan(make_plan([root], assignments, NAMES), journal)
    moved = {str(root / NAMES[c] / Path(p).name): c for p, c in assignments.items()}

    plan = make_plan([root], moved, NAMES)

    assert plan.groups == []
    assert len(plan.unchanged) == 5


def test_cross_filesystem_move_copies_and_verifies(library, monkeypatch):
    root, assignments, journal = library
    before = snapshot(root)
    monkeypatch.setattr(organize_files, "same_filesystem", lambda source, folder: False)

    apply_plan(make_plan([root], assignments, NAMES), journal)

    files, _ = snapshot(root)
    assert files["anime/a.safetensors"] == before[0]["a.safetensors"]
    assert not [f for f in files if f.endswith(".lora-embedding-partial")]
    assert not (root / "a.safetensors").exists()
    undo_last(journal)
    assert snapshot(root) == before


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from lora_embedding import organize, organize_files

    plan_file, journal, variant, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    calls = 0

    def counted(original, kill_before):
        def wrapper(*args):
            global calls
            calls += 1
            if kill_before and calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args)
            if not kill_before and calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapper

    if variant == "after-move":
        organize.move_file = counted(organize.move_file, kill_before=False)
    else:
        organize_files.same_filesystem = lambda source, folder: False
        place = organize_files._place_without_overwrite
        organize_files._place_without_overwrite = counted(place, kill_before=variant == "copy-before-place")
    organize.apply_plan(organize.Plan.load(plan_file), journal)
    """
)


@pytest.mark.parametrize("variant", ["after-move", "copy-before-place", "copy-after-place"])
def test_killed_apply_then_undo_loses_nothing(library, tmp_path, variant):
    root, assignments, journal = library
    before = snapshot(root)
    plan_file = tmp_path / "plan.json"
    make_plan([root], assignments, NAMES).save(plan_file)
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}

    completed = subprocess.run([sys.executable, str(script), str(plan_file), str(journal), variant, "4"],
                               env=env, capture_output=True, text=True, timeout=120)

    assert completed.returncode == -signal.SIGKILL, completed.stderr
    state = last_applied_journal(journal)
    assert len(state.done) == 3
    assert not state.ended

    undo_last(journal)

    assert snapshot(root) == before
    assert read_journal(state.path).undone_all


def test_collisions_get_suffix_and_nothing_overwritten(tmp_path):
    root = tmp_path / "loras"
    tree = {"a.safetensors": (1, [".png"]), "x/a.safetensors": (1, [".png", ".json"]),
            "y/a.safetensors": (1, [])}
    assignments = build_tree(root, tree)
    (root / "anime").mkdir()
    (root / "anime" / "a.png").write_bytes(b"someone else's preview")
    before = snapshot(root)

    plan = make_plan([root], assignments, NAMES)
    apply_plan(plan, tmp_path / "journal")

    files, _ = snapshot(root)
    assert files["anime/a.png"] == before[0]["anime/a.png"]
    assert files["anime/a (2).safetensors"] == before[0]["a.safetensors"]
    assert files["anime/a (2).png"] == before[0]["a.png"]
    assert files["anime/a (3).safetensors"] == before[0]["x/a.safetensors"]
    assert files["anime/a (3).json"] == before[0]["x/a.json"]
    assert files["anime/a (4).safetensors"] == before[0]["y/a.safetensors"]
    assert "anime/a.safetensors" not in files

    undo_last(tmp_path / "journal")
    assert snapshot(root) == before


def test_destination_appearing_after_plan_rejected(library):
    root, assignments, journal = library
    plan = make_plan([root], assignments, NAMES)
    (root / "anime").mkdir()
    (root / "anime" / "b.safetensors").write_bytes(b"new file")
    before = snapshot(root)

    with pytest.raises(OrganizeError, match="never overwritten"):
        apply_plan(plan, journal)

    assert snapshot(root) == before
    assert last_applied_journal(journal) is None


@pytest.mark.parametrize("change", ["modified", "deleted"])
def test_stale_plan_rejected(library, change):
    root, assignments, journal = library
    plan = make_plan([root], assignments, NAMES)
    if change == "modified":
        with open(root / "sub" / "c.json", "ab") as handle:
            handle.write(b" edited")
    else:
        (root / "b.preview.jpg").unlink()
    before = snapshot(root)

    with pytest.raises(OrganizeError, match="stale") as caught:
        apply_plan(plan, journal)

    assert ("c.json" in str(caught.value)) == (change == "modified")
    assert snapshot(root) == before


def test_target_under_a_file_rejected(library, tmp_path):
    # Runs also as root, where permission bits do not stop writes.
    root, assignments, journal = library
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    plan = make_plan([root], assignments, NAMES, target_root=blocker / "sorted")
    before = snapshot(root)

    with pytest.raises(OrganizeError, match="blocker is a file, not a folder"):
        apply_plan(plan, journal)

    assert snapshot(root) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="permission bits do not restrict root; covered by the file-as-parent test")
def test_read_only_folder_rejected(library):
    root, assignments, journal = library
    plan = make_plan([root], assignments, NAMES)
    os.chmod(root / "sub", 0o555)
    try:
        with pytest.raises(OrganizeError, match="sub is read-only"):
            apply_plan(plan, journal)
    finally:
        os.chmod(root / "sub", 0o755)
    assert (root / "sub" / "c.safetensors").exists()


def test_link_view_keeps_originals(library, tmp_path):
    root, assignments, journal = library
    before = snapshot(root)
    view = tmp_path / "view"

    report = make_link_view(make_plan([root], assignments, NAMES), view, journal)

    assert snapshot(root) == before
    assert report.files == 11
    link = view / "anime" / "a.safetensors"
    assert link.is_symlink()
    assert os.readlink(link) == str(root / "a.safetensors")
    assert (view / "landscape" / "c.json").read_bytes() == (root / "sub" / "c.json").read_bytes()

    undo = undo_last(journal)

    assert undo.mode == "link"
    assert not view.exists()
    assert snapshot(root) == before


def test_link_view_falls_back_to_hard_links(library, tmp_path, monkeypatch):
    root, assignments, journal = library

    def no_symlinks(source, destination):
        raise OSError(1, "symbolic links not permitted", destination)

    monkeypatch.setattr(os, "symlink", no_symlinks)
    report = make_link_view(make_plan([root], assignments, NAMES, target_root=tmp_path / "view", mode="link"),
                            tmp_path / "view", journal)

    assert report.methods == {"hardlink": 11}
    assert os.path.samefile(tmp_path / "view" / "anime" / "a.safetensors", root / "a.safetensors")
    undo_last(journal)
    assert not (tmp_path / "view").exists()
    assert (root / "a.safetensors").exists()


def test_move_plan_rejected_by_link_apply(library):
    root, assignments, journal = library
    plan = make_plan([root], assignments, NAMES, mode="link", target_root=root.parent / "view")

    with pytest.raises(OrganizeError, match="link view"):
        apply_plan(plan, journal)


def test_shared_sidecar_moves_once(tmp_path):
    root = tmp_path / "loras"
    write_lora_file(root / "style.safetensors", 1)
    (root / "style.pt").write_bytes(b"pickled twin")
    (root / "style.png").write_bytes(b"preview")
    assignments = {str(root / "style.safetensors"): 1, str(root / "style.pt"): 2}

    plan = make_plan([root], assignments, NAMES)

    sources = [m.source for m in plan.moves]
    assert sources.count(str(root / "style.png")) == 1
    assert len(sources) == 3


def test_failed_move_stops_and_undo_restores(library, monkeypatch):
    import lora_embedding.organize as organize_module

    root, assignments, journal = library
    before = snapshot(root)
    calls = []
    original_move = organize_module.move_file

    def failing_move(source, destination):
        calls.append(source)
        if len(calls) == 3:
            raise PermissionError(13, "Permission denied", destination)
        original_move(source, destination)

    monkeypatch.setattr(organize_module, "move_file", failing_move)
    with pytest.raises(OrganizeError, match="stopped after 2 of 11 files: permission denied"):
        apply_plan(make_plan([root], assignments, NAMES), journal)
    monkeypatch.undo()

    undo_last(journal)
    assert snapshot(root) == before


def test_undo_reports_file_deleted_after_apply(library):
    root, assignments, journal = library
    apply_plan(make_plan([root], assignments, NAMES), journal)
    (root / "landscape" / "d.safetensors").unlink()

    with pytest.raises(OrganizeError, match="d.safetensors is neither at"):
        undo_last(journal)

    assert (root / "a.safetensors").exists()
    assert (root / "sub" / "c.json").exists()
    assert not (root / "landscape").exists()
    assert last_applied_journal(journal) is not None

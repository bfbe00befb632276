"""The library index against a real SQLite file: incremental updates, concurrent readers, resume."""

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from library_files import write_lora
from lora_embedding.errors import LibraryIndexError
from lora_embedding.index import LibraryIndex
from lora_embedding.library import LoraLibrary


@pytest.fixture
def library_dir(tmp_path):
    folder = tmp_path / "loras"
    (folder / "anime").mkdir(parents=True)
    write_lora(folder / "anime" / "style_a_run1.safetensors", style_seed=1, run_seed=11)
    write_lora(folder / "anime" / "style_a_run2.safetensors", style_seed=1, run_seed=12)
    write_lora(folder / "style_b_run1.safetensors", style_seed=2, run_seed=21)
    write_lora(folder / "style_c_run1.safetensors", style_seed=3, run_seed=31)
    return folder


def _library(folder, tmp_path):
    return LoraLibrary([folder], db_path=str(tmp_path / "index.sqlite"))


def test_first_scan_indexes_every_file(library_dir, tmp_path):
    library = _library(library_dir, tmp_path)
    report = library.refresh(workers=0)
    assert report.added == 4
    assert report.failed == []
    names = [e.name for e in library.entries()]
    assert names == sorted(["anime/style_a_run1.safetensors", "anime/style_a_run2.safetensors",
                            "style_b_run1.safetensors", "style_c_run1.safetensors"])


def test_rescan_reads_only_changes(library_dir, tmp_path):
    library = _library(library_dir, tmp_path)
    library.refresh(workers=0)

    unchanged = library.refresh(workers=0)
    assert (unchanged.added, unchanged.updated, unchanged.removed, unchanged.unchanged) == (0, 0, 0, 4)

    write_lora(library_dir / "new_style.safetensors", style_seed=4, run_seed=41)
    modified = library_dir / "style_b_run1.safetensors"
    write_lora(modified, style_seed=2, run_seed=22)
    os.utime(modified, ns=(time.time_ns(), time.time_ns() + 10**9))
    os.rename(library_dir / "style_c_run1.safetensors", library_dir / "renamed.safetensors")
    os.remove(library_dir / "anime" / "style_a_run2.safetensors")

    report = library.refresh(workers=0)
    assert report.added == 2  # the new file and the renamed one
    assert report.updated == 1
    assert report.removed == 2  # the deleted file and the old name of the renamed one
    assert report.unchanged == 1
    names = {e.name for e in library.entries()}
    assert names == {"anime/style_a_run1.safetensors", "style_b_run1.safetensors",
                     "renamed.safetensors", "new_style.safetensors"}


def test_bad_file_is_reported_and_scan_continues(library_dir, tmp_path):
    (library_dir / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    library = _library(library_dir, tmp_path)
    report = library.refresh(workers=0)
    assert report.added == 4
    assert len(report.failed) == 1
    path, error = report.failed[0]
    assert path.endswith("broken.safetensors")
    assert error
    assert [e.name for e in library.failures()] == ["broken.safetensors"]


def test_similar_ranks_same_style_first(library_dir, tmp_path):
    library = _library(library_dir, tmp_path)
    library.refresh(workers=0)
    matches = library.similar("anime/style_a_run1.safetensors", k=3)
    assert matches[0].entry.name == "anime/style_a_run2.safetensors"
    assert matches[0].score > matches[1].score + 0.2


def test_parallel_scan_matches_serial(library_dir, tmp_path):
    serial = LoraLibrary([library_dir], db_path=str(tmp_path / "serial.sqlite"))
    parallel = LoraLibrary([library_dir], db_path=str(tmp_path / "parallel.sqlite"))
    serial.refresh(workers=0)
    parallel.refresh(workers=2)
    first = serial.similar("style_b_run1.safetensors", k=3)
    second = parallel.similar("style_b_run1.safetensors", k=3)
    assert [m.entry.name for m in first] == [m.entry.name for m in second]


_SLOW_INDEXER = textwrap.dedent(
    """
    import sys, time
    from lora_embedding import scanner
    from lora_embedding.library import LoraLibrary

    original = scanner.index_one_file

    def slow(path):
        time.sleep(0.3)
        return original(path)

    scanner.index_one_file = slow
    LoraLibrary([sys.argv[1]], db_path=sys.argv[2]).refresh(workers=0)
    """
)


def _start_slow_indexer(folder, database):
    return subprocess.Popen([sys.executable, "-c", _SLOW_INDEXER, str(folder), str(database)])


def _count_rows(database):
    try:
        with LibraryIndex(database, readonly=True) as index:
            return len(index.files())
    except (LibraryIndexError, sqlite3.Error):  # the database may not exist yet
        return 0


def _many_files(folder, count):
    for number in range(count):
        write_lora(folder / f"extra_{number:02d}.safetensors", style_seed=100 + number, run_seed=number)


def test_readers_work_while_indexing(library_dir, tmp_path):
    _many_files(library_dir, 8)
    database = tmp_path / "index.sqlite"
    indexer = _start_slow_indexer(library_dir, database)
    try:
        counts = []
        deadline = time.time() + 60
        while indexer.poll() is None and time.time() < deadline:
            counts.append(_count_rows(database))
            time.sleep(0.1)
        assert indexer.wait(timeout=60) == 0
    finally:
        indexer.kill()
    assert max(counts) > 0
    assert counts == sorted(counts)
    assert _count_rows(database) == 12


def test_killed_scan_resumes(library_dir, tmp_path):
    _many_files(library_dir, 12)
    database = tmp_path / "index.sqlite"
    indexer = _start_slow_indexer(library_dir, database)
    deadline = time.time() + 60
    while _count_rows(database) < 3 and time.time() < deadline:
        time.sleep(0.05)
    indexer.kill()
    indexer.wait()

    partial = _count_rows(database)
    assert 3 <= partial < 16
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = connection.execute(
            "SELECT COUNT(*) FROM files f LEFT JOIN embeddings e ON e.file_id = f.id "
            "WHERE f.status = 'ok' AND e.file_id IS NULL"
        ).fetchone()[0]
        assert orphans == 0

    report = LoraLibrary([library_dir], db_path=str(database)).refresh(workers=0)
    assert report.unchanged == partial
    assert report.added == 16 - partial
    assert _count_rows(database) == 16


def test_read_only_copy_of_library(library_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(library_dir, copy)
    for folder, _, files in os.walk(copy):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
    library = LoraLibrary([copy], db_path=str(tmp_path / "ro.sqlite"))
    assert library.refresh(workers=0).added == 4


def test_unreadable_files_reported_every_run(library_dir, tmp_path):
    (library_dir / "empty.safetensors").write_bytes(b"")
    library = _library(library_dir, tmp_path)
    first = library.refresh(workers=0)
    second = library.refresh(workers=0)
    assert [path for path, _ in first.failed] == [str(library_dir / "empty.safetensors")]
    assert second.failed == first.failed
    assert second.unchanged == 5

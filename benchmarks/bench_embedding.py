"""Per-file embedding time against the safetensors read floor, and whole indexing runs.

Every timing here runs with a warm page cache: each library file is read
once in full before any timing, and a library of hard links shares the page
cache of its distinct files.
"""

import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from safetensors.numpy import load_file

from process_memory import run_with_memory_sampling

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from lora_embedding.embedder import Embedder  # noqa: E402
from lora_embedding.features import extract_features  # noqa: E402
from lora_embedding.library import LoraLibrary  # noqa: E402
from lora_embedding.reader import read_lora  # noqa: E402
from lora_embedding.scanner import index_one_file  # noqa: E402
from lora_embedding.signature import pooled_signature  # noqa: E402

logger = logging.getLogger(__name__)

READ_CHUNK = 16 * 1024 * 1024


def library_files(library):
    """Return the sorted ``.safetensors`` paths of a library folder."""
    return sorted(str(path) for path in Path(library).glob("*.safetensors"))


def warm_page_cache(paths):
    """Read every distinct file once in full, so later reads come from the page cache."""
    seen = set()
    for path in paths:
        inode = os.stat(path).st_ino
        if inode in seen:
            continue
        seen.add(inode)
        with open(path, "rb", buffering=0) as handle:
            while handle.read(READ_CHUNK):
                pass


def _timed_pass(paths, work):
    """Run ``work(path)`` on every path; return ``(wall seconds per file, CPU seconds per file)``."""
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    for path in paths:
        work(path)
    wall = time.perf_counter() - wall_started
    cpu = time.process_time() - cpu_started
    return wall / len(paths), cpu / len(paths)


def _read_floor(path):
    load_file(path)


def _embed(embedder):
    def embed(path):
        features = extract_features(read_lora(path))
        embedder.embed_features(features)
        pooled_signature(features)

    return embed


def _index_work(path):
    record, _ = index_one_file(path)
    if record["status"] != "ok":
        raise RuntimeError(f"{path}: indexing failed: {record['error']}")


def measure_per_file(library, files=None):
    """Time the read floor, the embedding and the indexer's per-file work on one library.

    Parameters
    ----------
    library : Path
        A library folder from ``make_library.py``.
    files : int, optional
        Time only the first ``files`` paths.

    Returns
    -------
    dict
        Seconds per file (wall and CPU) of: ``floor`` (``safetensors.numpy.load_file``
        of every tensor), ``embed`` (``read_lora`` + ``extract_features`` + the
        pooled embedding + the pooled signature) and ``index_one_file``
        (``embed`` plus the weights hash and the record), with the ratios to
        the floor. All in this process, one file at a time.
    """
    paths = library_files(library)[:files]
    warm_page_cache(paths)
    embedder = Embedder()

    # One untimed file loads the random matrices and caches of every stage.
    _embed(embedder)(paths[0])
    _index_work(paths[0])

    result = {"library": str(library), "files": len(paths), "model_id": embedder.model_id(read_lora(paths[0]).family)}
    for name, work in (("floor", _read_floor), ("embed", _embed(embedder)), ("index_one_file", _index_work)):
        wall, cpu = _timed_pass(paths, work)
        result[f"{name}_wall_s"] = wall
        result[f"{name}_cpu_s"] = cpu
        logger.info("%s %s: %.3f s wall, %.3f s CPU per file", Path(library).name, name, wall, cpu)

    for name in ("embed", "index_one_file"):
        result[f"{name}_ratio_wall"] = result[f"{name}_wall_s"] / result["floor_wall_s"]
        result[f"{name}_ratio_cpu"] = result[f"{name}_cpu_s"] / result["floor_cpu_s"]
    return result


def run_index_command(library, database, sample_memory=False):
    """Run ``lora-embedding index`` with the default worker count in a child process.

    Returns
    -------
    dict
        ``wall_s``, ``files``, the command's JSON report fields and, with
        ``sample_memory``, the peak RSS figures of
        :func:`process_memory.run_with_memory_sampling`.
    """
    if os.path.exists(database):
        os.remove(database)
    paths = library_files(library)
    warm_page_cache(paths)
    command = [sys.executable, "-m", "lora_embedding", "index", str(library), "--db", str(database), "--json"]

    started = time.perf_counter()
    if sample_memory:
        completed, memory = run_with_memory_sampling(command, cwd=REPOSITORY)
    else:
        completed, memory = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True), None
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed with status {completed.returncode}: {completed.stderr[-2000:]}")

    import json

    report = json.loads(completed.stdout)
    result = {
        "library": str(library),
        "files": len(paths),
        "workers": os.cpu_count(),
        "wall_s": wall,
        "per_file_s": wall / len(paths),
        "indexed": report["indexed"],
        "failed": len(report["failed"]),
    }
    if memory is not None:
        result.update(memory)
    logger.info("index %s: %d files in %.1f s", Path(library).name, len(paths), wall)
    return result


def measure_reindex(library, database, repeats=3):
    """Time ``LoraLibrary.refresh()`` on an already indexed, unchanged library.

    The database must hold a complete index of ``library`` (from
    :func:`run_index_command`). Returns the refresh times in seconds and
    their median.
    """
    times = []
    for _ in range(repeats):
        lora_library = LoraLibrary([str(library)], db_path=str(database))
        started = time.perf_counter()
        report = lora_library.refresh()
        times.append(time.perf_counter() - started)
        if report.added or report.updated or report.removed:
            raise RuntimeError(f"{library}: the refresh changed the index ({report.to_json()}); index it fully first")
    logger.info("re-index %s: %s s", Path(library).name, ", ".join(f"{t:.3f}" for t in times))
    return {"library": str(library), "files": report.unchanged, "times_s": times, "median_s": statistics.median(times)}

"""Top-10 query latency: ``search.nearest`` on a matrix, and ``LoraLibrary.similar()`` on a filled index."""

import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_embedding.bundled import bundled_model_path  # noqa: E402
from lora_embedding.embedder import Embedder, Embedding  # noqa: E402
from lora_embedding.index import LibraryIndex  # noqa: E402
from lora_embedding.library import LoraLibrary  # noqa: E402
from lora_embedding.pooling import POOLED_SIZE  # noqa: E402
from lora_embedding.search import nearest  # noqa: E402
from lora_embedding.signature import SIGNATURE_SIZE  # noqa: E402

logger = logging.getLogger(__name__)

FAMILY = "SDXL"


def embedding_dims():
    """Return the embedding lengths to time: the training-free one, plus the bundled learned one if present."""
    dims = [POOLED_SIZE]
    path = bundled_model_path("SD1.x")
    if path is not None:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        config = config.get("encoder", config)
        learned = config.get("pooled_size", POOLED_SIZE) + config.get("output_size", 0)
        if learned not in dims:
            dims.append(learned)
    return dims


def _unit_rows(rng, rows, dim):
    matrix = rng.standard_normal((rows, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def _latency_summary(times):
    times_ms = sorted(t * 1000 for t in times)
    return {
        "median_ms": statistics.median(times_ms),
        "p95_ms": times_ms[int(0.95 * (len(times_ms) - 1))],
        "queries": len(times_ms),
    }


def time_nearest(rows, dim, queries=200, seed=0):
    """Time top-10 ``nearest`` over ``rows`` random unit vectors, each query a stored row excluded from its result."""
    rng = np.random.default_rng(seed)
    matrix = _unit_rows(rng, rows, dim)
    picks = rng.integers(0, rows, size=queries)
    nearest(matrix, matrix[0], 10, [0])

    times = []
    for row in picks:
        started = time.perf_counter()
        nearest(matrix, matrix[row], 10, [int(row)])
        times.append(time.perf_counter() - started)
    return {"rows": rows, "dim": dim, **_latency_summary(times)}


def fill_index(database, rows, seed=0):
    """Write ``rows`` synthetic SDXL files with random unit embeddings through ``LibraryIndex.upsert``.

    Returns the library root the rows claim and the fill time in seconds.
    The fill turns SQLite's ``synchronous`` off, because one fsync per
    upserted file would dominate it; the timed queries only read.
    """
    rng = np.random.default_rng(seed)
    root = str(Path(database).parent / "library")
    model_id = Embedder().model_id(FAMILY)
    vectors = _unit_rows(rng, rows, POOLED_SIZE)
    signatures = _unit_rows(rng, rows, SIGNATURE_SIZE)

    started = time.perf_counter()
    with LibraryIndex(database) as index:
        index._connection.execute("PRAGMA synchronous=OFF")
        for row in range(rows):
            name = f"style_{row:06d}.safetensors"
            record = {
                "path": f"{root}/{name}", "root": root, "name": name, "size": 114_000_000,
                "mtime_ns": 1_700_000_000_000_000_000 + row, "status": "ok", "error": None,
                "family": FAMILY, "format": "kohya", "container": "safetensors", "modules": 986,
                "findings": [], "metadata": {"output_name": name[:-12]}, "tags": [],
                "signature": signatures[row],
            }
            index.upsert(record, Embedding(vectors[row], FAMILY, model_id, "training-free"))
    return root, time.perf_counter() - started


def time_library_similar(database, rows, queries=50, seed=1):
    """Time ``LoraLibrary.similar(name, k=10)`` on a filled index, excluding the first call's load.

    Returns
    -------
    dict
        ``first_call_s`` (loading entries and vectors from SQLite) and the
        latency summary of the later calls, each with another query name.
    """
    root, fill_s = fill_index(database, rows)
    library = LoraLibrary([root], db_path=str(database))
    rng = np.random.default_rng(seed)
    names = [f"style_{row:06d}.safetensors" for row in rng.integers(0, rows, size=queries + 1)]

    started = time.perf_counter()
    library.similar(names[0], k=10)
    first_call = time.perf_counter() - started

    times = []
    for name in names[1:]:
        started = time.perf_counter()
        matches = library.similar(name, k=10)
        times.append(time.perf_counter() - started)
        if len(matches) != 10:
            raise RuntimeError(f"similar({name!r}) returned {len(matches)} matches instead of 10")
    logger.info("similar over %d rows: first call %.2f s", rows, first_call)
    return {"rows": rows, "dim": POOLED_SIZE, "fill_s": fill_s, "first_call_s": first_call, **_latency_summary(times)}

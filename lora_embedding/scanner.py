"""Bring a library index up to date with the LoRA files on disk.

A file is read again only when its path, size or modification time changed,
or when its embedding was made by another model version. Files are read and
embedded in worker processes (or threads, inside host applications); the
calling process alone writes to the database, one file per transaction.
"""

import concurrent.futures
import logging
import os
from dataclasses import dataclass, field

from .errors import LoraReadError

logger = logging.getLogger(__name__)

__all__ = ["ScanReport", "discover_files", "index_one_file", "scan_library"]


@dataclass
class ScanReport:
    """Summary of one indexing run.

    Attributes
    ----------
    added, updated, removed, unchanged : int
    failed : list of (str, str)
        ``(path, error message)`` of every file that cannot be read: those
        read in this run and those unchanged since an earlier run failed.
    interrupted : bool
        True when the run stopped early; the next run resumes.
    """

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: list = field(default_factory=list)
    interrupted: bool = False

    def to_json(self):
        """Return the report as a JSON-ready dict."""
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "failed": [{"path": path, "error": error} for path, error in self.failed],
            "interrupted": self.interrupted,
        }


def discover_files(roots):
    """Yield ``(root, absolute path, name relative to root with / separators)`` for every LoRA file."""
    from .sidecars import is_lora_file

    for root in roots:
        root = os.path.abspath(os.fspath(root))
        for folder, subfolders, filenames in os.walk(root, followlinks=True):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith(".") or not is_lora_file(filename):
                    continue
                path = os.path.join(folder, filename)
                if not os.path.isfile(path):
                    continue
                name = os.path.relpath(path, root).replace(os.sep, "/")
                yield root, path, name


_WORKER_EMBEDDER = None


def _embedder():
    global _WORKER_EMBEDDER
    if _WORKER_EMBEDDER is None:
        from .embedder import Embedder

        _WORKER_EMBEDDER = Embedder()
    return _WORKER_EMBEDDER


def _pooled_signature(features):
    from .signature import pooled_signature

    return pooled_signature(features)


def index_one_file(path):
    """Read, fingerprint and embed one file; return ``(record dict, Embedding or None)``.

    Never raises for a bad file: the record then has ``status='error'`` and
    the reason in ``error``.
    """
    from .features import single_threaded_blas

    # One BLAS thread for the whole file: the indexer already runs one
    # worker per CPU, and threaded small products are slower, not faster.
    with single_threaded_blas():
        return _index_one_file(path)


def _index_one_file(path):
    from .containers import weights_hash
    from .features import extract_features
    from .reader import read_lora

    record = {"status": "error"}
    try:
        lora = read_lora(path)
        features = extract_features(lora)
        embedding = _embedder().embed_features(features)
        record.update(
            status="ok",
            error=None,
            family=lora.family,
            format=lora.format,
            container=lora.container,
            modules=lora.stored_modules,
            findings=[{"code": f.code, "message": f.message} for f in lora.findings],
            metadata=lora.summary,
            weights_hash=weights_hash(path) if lora.container == "safetensors" else None,
            signature=_pooled_signature(features),
        )
        return record, embedding
    except LoraReadError as exc:
        record["error"] = exc.reason
    except (OSError, ValueError, MemoryError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    logger.warning("%s: %s", path, record["error"])
    return record, None


def _base_record(root, path, name, stat):
    from .sidecars import read_sidecar_info

    sidecar = read_sidecar_info(path)
    return {
        "path": path,
        "root": root,
        "name": name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "preview": sidecar.pop("preview"),
        "tags": sidecar["tags"] + sidecar["trained_words"],
    }


def _plan(index, roots, current_model_ids):
    known = index.stat_map()
    rows = {row.path: row for row in index.files()}
    models = index.embedded_models()
    work, unchanged, seen, still_failing = [], 0, set(), []

    for root, path, name in discover_files(roots):
        seen.add(path)
        try:
            stat = os.stat(path)
        except OSError as exc:
            logger.warning("%s: cannot stat: %s", path, exc)
            continue
        previous = known.get(path)
        fresh = previous is not None and previous[0] == stat.st_size and previous[1] == stat.st_mtime_ns
        stale_model = previous is not None and previous[2] == "ok" and not (
            models.get(rows[path].id, set()) & current_model_ids
        )
        if fresh and not stale_model:
            unchanged += 1
            if previous[2] != "ok":
                still_failing.append((path, rows[path].error))
            continue
        work.append((root, path, name, stat, previous is not None))

    removed = [path for path in known if path not in seen]
    return work, removed, unchanged, still_failing


def _ignore_interrupts():
    """Let only the parent process handle Ctrl-C, so workers do not print tracebacks."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _executor(workers, kind):
    if kind == "thread":
        return concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    import multiprocessing

    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_interrupts,
    )


def scan_library(index, roots, embedder, progress=None, should_stop=None, workers=None, executor="process"):
    """Update ``index`` from the files under ``roots``.

    Parameters
    ----------
    index : LibraryIndex
    roots : list of str
    embedder : Embedder
        Decides which model ids count as current.
    progress : callable, optional
        Called as ``progress(done, total, path)`` after each file.
    should_stop : callable, optional
        Polled between files; when it returns True the run stops cleanly.
    workers : int, optional
        Worker count; defaults to the number of CPUs. 0 reads in this process.
    executor : {"process", "thread"}
        Worker kind. Host applications use threads.

    Returns
    -------
    ScanReport
    """
    from .reader import read_lora  # noqa: F401  (fail early when the reader is missing)

    roots = [os.path.abspath(os.fspath(root)) for root in roots]
    current = {embedder.model_id(family) for family in ("SD1.x", "SD2.x", "SDXL", "SDXL-refiner", "SD3", "Flux", "unknown")}
    work, removed, unchanged, still_failing = _plan(index, roots, current)
    report = ScanReport(unchanged=unchanged, failed=still_failing)

    index.remove_paths(removed)
    report.removed = index.remove_missing_roots(roots) + len(removed)
    logger.info("index: %d to read, %d unchanged, %d removed", len(work), unchanged, report.removed)

    def store(item, result):
        root, path, name, stat, existed = item
        record, embedding = result
        record.update(_base_record(root, path, name, stat))
        index.upsert(record, embedding)
        if record["status"] != "ok":
            report.failed.append((path, record["error"]))
        elif existed:
            report.updated += 1
        else:
            report.added += 1

    _run(work, store, progress, should_stop, workers, executor, report)
    return report


def _run(work, store, progress, should_stop, workers, executor_kind, report):
    total = len(work)
    if workers is None:
        workers = os.cpu_count() or 1
    if workers == 0 or total <= 1:
        for done, item in enumerate(work, start=1):
            if should_stop is not None and should_stop():
                report.interrupted = True
                return
            store(item, index_one_file(item[1]))
            if progress is not None:
                progress(done, total, item[1])
        return

    with _executor(workers, executor_kind) as pool:
        pending = {}
        queue = iter(work)
        done = 0
        try:
            for item in queue:
                pending[pool.submit(index_one_file, item[1])] = item
                if len(pending) >= 2 * workers:
                    break
            while pending:
                finished, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    item = pending.pop(future)
                    store(item, future.result())
                    done += 1
                    if progress is not None:
                        progress(done, total, item[1])
                if should_stop is not None and should_stop():
                    report.interrupted = True
                    break
                for item in queue:
                    pending[pool.submit(index_one_file, item[1])] = item
                    if len(pending) >= 2 * workers:
                        break
        finally:
            for future in pending:
                future.cancel()

"""The LoRA library of one ComfyUI process, shared by every node of the pack.

The library covers every folder ComfyUI lists for ``loras`` (``models/loras``
and the folders of ``extra_model_paths.yaml``). Its index lives in ComfyUI's
user directory, ``user/lora_embedding/index.sqlite``, outside the per-user
folders that ComfyUI serves over HTTP.

Nothing happens at import. The first node that needs the library starts a
background refresh. Queries use the current index and embed a LoRA that is
not indexed yet on demand. Only a query on an empty index waits for the
first refresh, because there is nothing to search before it ends.
"""

import hashlib
import logging
import os
import threading
import time

logger = logging.getLogger(__name__)

__all__ = ["LibraryService", "get_service", "reset_service"]

POLL_SECONDS = 0.2
"""How often a waiting node checks progress and ComfyUI's cancel flag."""


def default_workers():
    """Return the worker thread count for indexing: the CPU count, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


class LibraryService:
    """The library over ComfyUI's ``loras`` folders, with a background refresh.

    Parameters
    ----------
    folder_paths : module, optional
        ComfyUI's ``folder_paths`` module (imported on first use when omitted).
    db_path : str, optional
        The SQLite index. Defaults to ``<ComfyUI user directory>/lora_embedding/index.sqlite``.

    Notes
    -----
    Two :class:`~lora_embedding.library.LoraLibrary` objects share the
    database: one writes during a refresh and one serves queries, because
    ``LoraLibrary.refresh`` holds the library's lock for the whole scan and
    queries on the same object would wait for it. The query object is
    replaced after each refresh so its caches are rebuilt.
    """

    def __init__(self, folder_paths=None, db_path=None):
        self._folder_paths = folder_paths
        self._db_path = db_path
        self._state_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._roots = None
        self._reader = None
        self._embedder = None
        self._thread = None
        self._stop = threading.Event()
        self._refreshed_once = False
        self.progress = (0, 0)
        self.generation = 0
        self.last_report = None

    # ComfyUI folders ----------------------------------------------------------

    @property
    def folder_paths(self):
        """ComfyUI's ``folder_paths`` module."""
        if self._folder_paths is None:
            import folder_paths

            self._folder_paths = folder_paths
        return self._folder_paths

    def roots(self):
        """Return the absolute LoRA folders ComfyUI searches, in its order."""
        return [os.path.abspath(path) for path in self.folder_paths.get_folder_paths("loras")]

    def db_path(self):
        """Return the index database path."""
        if self._db_path is None:
            self._db_path = os.path.join(self.folder_paths.get_user_directory(), "lora_embedding", "index.sqlite")
        return self._db_path

    def lora_names(self):
        """Return ComfyUI's list of LoRA names (the ``LoraLoader`` choices)."""
        return list(self.folder_paths.get_filename_list("loras"))

    def full_path(self, name):
        """Return the file ComfyUI loads for a LoRA name, or None when there is none."""
        return self.folder_paths.get_full_path("loras", name)

    def comfy_names(self, entries):
        """Return the ComfyUI name of each library entry, for ``LoraLoader``.

        A name comes from ComfyUI's own list when a listed name points to the
        entry's file, so it has the path separators ComfyUI uses on this
        system. Otherwise it is the entry's library name.
        """
        by_path = {}
        for name in self.lora_names():
            path = self.full_path(name)
            if path is not None:
                by_path.setdefault(os.path.abspath(path), name)
        return [by_path.get(os.path.abspath(entry.path), entry.name) for entry in entries]

    # Library objects -----------------------------------------------------------

    def _library(self, roots):
        from lora_embedding.embedder import Embedder
        from lora_embedding.library import LoraLibrary

        if self._embedder is None:
            self._embedder = Embedder()
        os.makedirs(os.path.dirname(self.db_path()), exist_ok=True)
        return LoraLibrary(roots, db_path=self.db_path(), embedder=self._embedder)

    def library(self, start_refresh=True):
        """Return the query library, rebuilt when ComfyUI's LoRA folders changed.

        With ``start_refresh`` the first call in this process starts the
        background refresh.
        """
        roots = self.roots()
        with self._state_lock:
            if self._reader is None or roots != self._roots:
                self._roots = roots
                self._reader = self._library(roots)
                self._refreshed_once = False
            reader = self._reader
        if start_refresh and not self._refreshed_once:
            self.start_background_refresh()
        return reader

    # Refresh -------------------------------------------------------------------

    def refresh(self, progress=None, should_stop=None, workers=None):
        """Bring the index up to date now, in the calling thread.

        Parameters
        ----------
        progress : callable, optional
            ``progress(done, total, path)`` after each file.
        should_stop : callable, optional
            Polled between files. True stops the run cleanly.
        workers : int, optional
            Reader threads. Defaults to :func:`default_workers`.

        Returns
        -------
        ScanReport
        """
        with self._refresh_lock:
            return self._refresh_locked(progress, should_stop, workers)

    def _refresh_locked(self, progress, should_stop, workers):
        roots = self.roots()
        writer = self._library(roots)

        def track(done, total, path):
            self.progress = (done, total)
            if progress is not None:
                progress(done, total, path)

        self.progress = (0, 0)
        started = time.monotonic()
        report = writer.refresh(progress=track, should_stop=should_stop,
                                workers=default_workers() if workers is None else workers, executor="thread")
        logger.info("LoRA index refreshed in %.1f s: %d added, %d updated, %d removed, %d unchanged, %d failed%s",
                    time.monotonic() - started, report.added, report.updated, report.removed, report.unchanged,
                    len(report.failed), " (interrupted)" if report.interrupted else "")

        with self._state_lock:
            self._roots = roots
            self._reader = self._library(roots)
            self._refreshed_once = self._refreshed_once or not report.interrupted
            self.generation += 1
            self.last_report = report
        return report

    def start_background_refresh(self):
        """Start a refresh in a daemon thread unless one is running; return True when one started."""
        with self._state_lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._refreshed_once = True
            self._thread = threading.Thread(target=self._background_refresh, name="lora-embedding-index", daemon=True)
            self._thread.start()
        logger.info("LoRA library: background index refresh started")
        return True

    def _background_refresh(self):
        try:
            self.refresh(should_stop=self._stop.is_set)
        except Exception:  # host-safety boundary: a failed refresh must not end ComfyUI's process
            logger.exception("LoRA library: background index refresh failed (index %s)", self.db_path())
            with self._state_lock:
                self._refreshed_once = False

    def refresh_running(self):
        """Return True while a background refresh runs."""
        return self._thread is not None and self._thread.is_alive()

    def wait_for_refresh(self, poll=None):
        """Wait for a running background refresh, calling ``poll(done, total)`` every few tenths of a second.

        ``poll`` may raise (ComfyUI's cancel does) to stop waiting, and the
        refresh itself goes on.
        """
        thread = self._thread
        while thread is not None and thread.is_alive():
            if poll is not None:
                poll(*self.progress)
            thread.join(POLL_SECONDS)

    def ready_library(self, poll=None):
        """Return the query library, waiting for the first refresh when the index is still empty."""
        library = self.library()
        if library.entries() or not self.refresh_running():
            return library
        logger.info("LoRA library: index is empty, waiting for the first refresh")
        self.wait_for_refresh(poll)
        return self.library(start_refresh=False)

    def stop(self):
        """Ask a background refresh to stop after its current file, and wait for it."""
        self._stop.set()
        self.wait_for_refresh()
        self._stop.clear()

    # Queries -------------------------------------------------------------------

    def query_for(self, name):
        """Return what to pass to ``LoraLibrary`` queries for a ComfyUI LoRA name.

        This is the file ComfyUI loads for the name, so an indexed file is
        found by path and a file not yet indexed is embedded on demand.

        Raises
        ------
        FileNotFoundError
            When ComfyUI lists no LoRA of that name.
        """
        path = self.full_path(name)
        if path is None:
            raise FileNotFoundError(
                f"LoRA {name!r} is not in ComfyUI's loras folders ({', '.join(self.roots()) or 'none configured'}); "
                "pick one from the list or refresh the page"
            )
        return os.path.abspath(path)

    def fingerprint(self):
        """Return a value that changes when the LoRA list or the index changes."""
        digest = hashlib.sha256("\n".join(self.lora_names()).encode("utf-8")).hexdigest()[:16]
        return f"{self.generation}:{digest}"


_SERVICE = None
_SERVICE_LOCK = threading.Lock()


def get_service():
    """Return this process's :class:`LibraryService`, creating it on first use."""
    global _SERVICE
    with _SERVICE_LOCK:
        if _SERVICE is None:
            _SERVICE = LibraryService()
        return _SERVICE


def reset_service(service=None):
    """Replace this process's service (tests use it to inject fakes); return the old one."""
    global _SERVICE
    with _SERVICE_LOCK:
        old, _SERVICE = _SERVICE, service
    return old

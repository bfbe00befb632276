"""The library behind one UI: its folders, its index and the indexing run."""

import logging
import os
import threading

logger = logging.getLogger(__name__)

__all__ = ["LibraryController"]


def _default_factory(roots, db_path):
    from ..library import LoraLibrary

    return LoraLibrary(roots, db_path=db_path)


class LibraryController:
    """Own the :class:`~lora_embedding.library.LoraLibrary` that a UI works on.

    The library is created on first use, so building the UI reads nothing
    from disk. Changing the folders creates a new library.

    Parameters
    ----------
    roots : list of str
        Library folders.
    db_path : str, optional
        The index database; by default one per set of folders in the user
        data directory.
    library_factory : callable, optional
        Called as ``library_factory(roots, db_path)`` to create the library.
    executor : {"thread", "process"}
        Worker kind for indexing; host applications use threads.
    workers : int, optional
        Indexing workers; defaults to the number of CPUs.
    """

    def __init__(self, roots, db_path=None, library_factory=None, executor="thread", workers=None):
        self.roots = [os.path.abspath(os.fspath(root)) for root in roots]
        self.db_path = db_path
        self.library_factory = library_factory or _default_factory
        self.executor = executor
        self.workers = workers
        self._library = None
        self._lock = threading.RLock()
        self._stop = threading.Event()

    @property
    def library(self):
        """The current library, created on first use."""
        with self._lock:
            if self._library is None:
                self._library = self.library_factory(list(self.roots), self.db_path)
            return self._library

    def set_roots(self, roots):
        """Switch to other library folders and return the list of missing ones.

        Raises
        ------
        ValueError
            When ``roots`` is empty.
        """
        roots = [os.path.abspath(os.path.expanduser(os.fspath(root))) for root in roots if str(root).strip()]
        if not roots:
            raise ValueError("no library folder given; enter at least one folder")
        missing = [root for root in roots if not os.path.isdir(root)]
        with self._lock:
            if roots != self.roots:
                self.roots = roots
                self._library = None
                logger.info("library folders set to %s", ", ".join(roots))
        return missing

    def index(self, progress=None):
        """Bring the index up to date; see :meth:`LoraLibrary.refresh`.

        Parameters
        ----------
        progress : callable, optional
            Called as ``progress(done, total, path)`` after each file.

        Returns
        -------
        ScanReport
        """
        self._stop.clear()
        library = self.library
        return library.refresh(
            progress=progress, should_stop=self._stop.is_set, workers=self.workers, executor=self.executor
        )

    def request_stop(self):
        """Ask a running :meth:`index` to stop after the files in progress."""
        self._stop.set()

    def has_index(self):
        """Return True when the library's index database exists."""
        return os.path.exists(self.library.db_path)

    def names(self):
        """Return the names of the indexed LoRAs that could be read, sorted."""
        if not self.has_index():
            return []
        return [entry.name for entry in self.library.entries(include_errors=False)]

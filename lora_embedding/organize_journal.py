"""The journal of folder-organizing runs, which makes every run undoable.

A journal is a JSON-lines file per run. Before the first file is touched it
contains a ``begin`` record and one ``move`` record per planned move; each line
is fsync'd when written. A ``mkdir`` record precedes every folder the run
creates, a ``done`` record follows every finished move, and ``end`` closes a
complete run. Undo appends ``undone`` records and finally ``undo-end``. After
a crash the last line may be cut short; readers ignore it.
"""

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field

from .errors import OrganizeError

logger = logging.getLogger(__name__)

__all__ = ["Journal", "JournalState", "default_journal_dir", "last_applied_journal", "library_key"]

JOURNAL_SUFFIX = ".journal.jsonl"


def library_key(roots):
    """Return a short stable key for a set of library folders (the same key the default index path uses)."""
    key = "\n".join(sorted(os.path.abspath(os.fspath(root)) for root in roots))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def default_journal_dir(roots):
    """Return ``<user data dir>/lora-embedding/journals/<library key>``."""
    from platformdirs import user_data_dir

    return os.path.join(user_data_dir("lora-embedding", appauthor=False), "journals", library_key(roots))


@dataclass
class JournalState:
    """Contents of one journal file.

    Attributes
    ----------
    path : str
    mode : str
        ``move`` or ``link``.
    moves : list of dict
        ``seq``, ``source``, ``destination`` and ``kind`` of every planned move.
    done : dict
        ``{seq: method}`` of finished moves (``move``, ``symlink`` or ``hardlink``).
    folders : list of str
        Folders the run created or was about to create, in creation order.
    ended, undone_all : bool
        True once the run completed, and once an undo completed.
    undone : set of int
    """

    path: str
    mode: str = "move"
    created: float = 0.0
    moves: list = field(default_factory=list)
    done: dict = field(default_factory=dict)
    folders: list = field(default_factory=list)
    ended: bool = False
    undone: set = field(default_factory=set)
    undone_all: bool = False


class Journal:
    """An open journal file that records one run and its undo."""

    def __init__(self, path):
        self.path = path
        self._handle = open(path, "a", encoding="utf-8")

    @classmethod
    def create(cls, journal_dir, plan):
        """Start a journal for ``plan`` in ``journal_dir`` with every move recorded and fsync'd.

        Raises
        ------
        OrganizeError
            When the journal folder cannot be created or written.
        """
        journal_dir = os.fspath(journal_dir)
        try:
            os.makedirs(journal_dir, exist_ok=True)
            path = os.path.join(journal_dir, f"{time.time_ns():020d}-{os.getpid()}{JOURNAL_SUFFIX}")
            journal = cls(path)
        except OSError as exc:
            raise OrganizeError(
                f"cannot write the undo journal in {journal_dir}: {exc.strerror or exc}; "
                "choose a writable folder with --journal"
            ) from exc

        journal.write({"type": "begin", "mode": plan.mode, "created": time.time(), "roots": plan.roots,
                       "target_root": plan.target_root, "count": len(plan.moves)})
        for seq, move in enumerate(plan.moves):
            journal.write({"type": "move", "seq": seq, "source": move.source,
                           "destination": move.destination, "kind": move.kind}, sync=False)
        journal.sync()
        return journal

    def write(self, record, sync=True):
        """Append one record; with ``sync`` it is on disk when this returns."""
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        if sync:
            self.sync()

    def sync(self):
        """Flush and fsync the journal file."""
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self):
        """Close the file."""
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def read_journal(path):
    """Read a journal file into a :class:`JournalState`, skipping a cut-off last line."""
    state = JournalState(path=path)
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()

    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                logger.warning("%s: last line is incomplete (interrupted run); ignored", path)
                continue
            raise OrganizeError(f"journal {path} is corrupt at line {number}; restore the files by hand") from None
        _apply_record(state, record)
    return state


def _apply_record(state, record):
    kind = record.get("type")
    if kind == "begin":
        state.mode = record.get("mode", "move")
        state.created = record.get("created", 0.0)
    elif kind == "move":
        state.moves.append(record)
    elif kind == "mkdir":
        state.folders.append(record["path"])
    elif kind == "done":
        state.done[record["seq"]] = record.get("method", "move")
    elif kind == "end":
        state.ended = True
    elif kind == "undone":
        state.undone.add(record["seq"])
    elif kind == "undo-end":
        state.undone_all = True


def journal_files(journal_dir):
    """Return the journal files of ``journal_dir``, oldest first."""
    journal_dir = os.fspath(journal_dir)
    if not os.path.isdir(journal_dir):
        return []
    names = sorted(name for name in os.listdir(journal_dir) if name.endswith(JOURNAL_SUFFIX))
    return [os.path.join(journal_dir, name) for name in names]


def last_applied_journal(journal_dir):
    """Return the :class:`JournalState` of the newest run not yet undone, or None."""
    for path in reversed(journal_files(journal_dir)):
        state = read_journal(path)
        if not state.undone_all:
            return state
    return None

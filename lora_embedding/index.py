"""The library index: one SQLite database per library.

The database runs in WAL mode, so readers (a search, the UI) never block
while an indexing run writes. Each file's row and its embedding are written
in one transaction, so an interrupted run leaves a consistent database and
the next run resumes where it stopped. The schema version is kept in
``PRAGMA user_version``; later versions add columns with ``ALTER TABLE``.
"""

import hashlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import LibraryIndexError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    root TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    family TEXT,
    format TEXT,
    container TEXT,
    modules INTEGER,
    sha256 TEXT,
    weights_hash TEXT,
    findings TEXT,
    metadata TEXT,
    tags TEXT,
    preview TEXT,
    signature BLOB,
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_family ON files(family);
CREATE INDEX IF NOT EXISTS files_weights_hash ON files(weights_hash);
CREATE TABLE IF NOT EXISTS embeddings (
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (file_id, model_id)
);
"""

__all__ = ["FileRow", "LibraryIndex", "default_database_path"]


def default_database_path(roots):
    """Return the default database path for a set of library roots.

    The database lives in the user's data directory, keyed by the sorted
    absolute root paths, so each library keeps its own index.
    """
    from platformdirs import user_data_dir

    key = "\n".join(sorted(os.path.abspath(os.fspath(root)) for root in roots))
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return os.path.join(user_data_dir("lora-embedding", appauthor=False), "indexes", f"{digest}.sqlite")


@dataclass
class FileRow:
    """One indexed file as stored in the ``files`` table."""

    id: int
    path: str
    root: str
    name: str
    size: int
    mtime_ns: int
    status: str
    error: str = None
    family: str = None
    format: str = None
    container: str = None
    modules: int = None
    sha256: str = None
    weights_hash: str = None
    findings: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    tags: list = field(default_factory=list)
    preview: str = None
    signature: np.ndarray = None

    @property
    def ok(self):
        """True when the file was read and embedded."""
        return self.status == "ok"


def _row_to_file(row):
    values = dict(row)
    for column, empty in (("findings", []), ("metadata", {}), ("tags", [])):
        values[column] = json.loads(values[column]) if values[column] else empty
    blob = values.pop("signature")
    values["signature"] = None if blob is None else np.frombuffer(blob, dtype=np.float32)
    values.pop("indexed_at", None)
    return FileRow(**values)


class LibraryIndex:
    """A connection to one library's SQLite index.

    Parameters
    ----------
    path : str
        The database file; its folder is created when missing.
    readonly : bool, default=False
        Open without write access (the database must exist).
    """

    def __init__(self, path, readonly=False):
        self.path = os.fspath(path)
        self.readonly = readonly
        try:
            self._connection = self._connect()
        except sqlite3.Error as exc:
            raise LibraryIndexError(f"cannot open the index {self.path}: {exc}") from exc

    def _connect(self):
        if self.readonly:
            uri = "file:" + self.path + "?mode=ro"
            connection = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            connection.commit()
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    def close(self):
        """Close the connection."""
        self._connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # Reading ----------------------------------------------------------------

    def stat_map(self):
        """Return ``{path: (size, mtime_ns, status)}`` for every indexed file."""
        rows = self._connection.execute("SELECT path, size, mtime_ns, status FROM files")
        return {row["path"]: (row["size"], row["mtime_ns"], row["status"]) for row in rows}

    def files(self, status=None):
        """Return every :class:`FileRow`, optionally only those with ``status``."""
        query = "SELECT * FROM files"
        params = ()
        if status is not None:
            query += " WHERE status = ?"
            params = (status,)
        rows = self._connection.execute(query + " ORDER BY name", params)
        return [_row_to_file(row) for row in rows]

    def file_by_path(self, path):
        """Return the :class:`FileRow` of ``path``, or None."""
        row = self._connection.execute("SELECT * FROM files WHERE path = ?", (os.fspath(path),)).fetchone()
        return None if row is None else _row_to_file(row)

    def embeddings(self, model_ids=None):
        """Return ``{file_id: (model_id, kind, vector)}`` for the given models (all when None)."""
        query = "SELECT file_id, model_id, kind, vector FROM embeddings"
        params = ()
        if model_ids:
            query += " WHERE model_id IN (%s)" % ",".join("?" * len(model_ids))
            params = tuple(model_ids)
        result = {}
        for row in self._connection.execute(query, params):
            vector = np.frombuffer(row["vector"], dtype=np.float32)
            result[row["file_id"]] = (row["model_id"], row["kind"], vector)
        return result

    def embedded_models(self):
        """Return ``{file_id: set of model ids}`` for every stored embedding."""
        result = {}
        for row in self._connection.execute("SELECT file_id, model_id FROM embeddings"):
            result.setdefault(row["file_id"], set()).add(row["model_id"])
        return result

    # Writing ----------------------------------------------------------------

    def upsert(self, record, embedding=None):
        """Insert or replace one file's row and its embedding in one transaction.

        Parameters
        ----------
        record : dict
            Column values of the ``files`` table (``path``, ``root``, ``name``,
            ``size``, ``mtime_ns``, ``status`` and any others).
        embedding : Embedding, optional
            Stored under its model id, replacing older vectors of that file.
        """
        values = dict(record)
        for column in ("findings", "metadata", "tags"):
            if column in values and not isinstance(values[column], str):
                values[column] = json.dumps(values[column], ensure_ascii=False)
        if values.get("signature") is not None:
            values["signature"] = np.asarray(values["signature"], dtype=np.float32).tobytes()
        values["indexed_at"] = time.time()
        columns = ", ".join(values)
        placeholders = ", ".join("?" * len(values))
        updates = ", ".join(f"{c} = excluded.{c}" for c in values if c != "path")

        with self._connection:
            cursor = self._connection.execute(
                f"INSERT INTO files ({columns}) VALUES ({placeholders}) "
                f"ON CONFLICT(path) DO UPDATE SET {updates} RETURNING id",
                tuple(values.values()),
            )
            file_id = cursor.fetchone()[0]
            self._connection.execute("DELETE FROM embeddings WHERE file_id = ?", (file_id,))
            if embedding is not None:
                self._connection.execute(
                    "INSERT INTO embeddings (file_id, model_id, kind, dim, vector) VALUES (?, ?, ?, ?, ?)",
                    (file_id, embedding.model_id, embedding.kind, embedding.dim,
                     np.asarray(embedding.vector, dtype=np.float32).tobytes()),
                )
        return file_id

    def set_sha256(self, path, digest):
        """Store the full-file SHA-256 of ``path`` (computed lazily by callers)."""
        with self._connection:
            self._connection.execute("UPDATE files SET sha256 = ? WHERE path = ?", (digest, os.fspath(path)))

    def remove_paths(self, paths):
        """Delete the rows (and embeddings) of ``paths``."""
        with self._connection:
            self._connection.executemany("DELETE FROM files WHERE path = ?", [(os.fspath(p),) for p in paths])

    def remove_missing_roots(self, roots):
        """Delete rows whose root is not one of ``roots``; return how many were removed."""
        roots = [os.fspath(root) for root in roots]
        placeholders = ",".join("?" * len(roots))
        with self._connection:
            cursor = self._connection.execute(f"DELETE FROM files WHERE root NOT IN ({placeholders})", roots)
        return cursor.rowcount

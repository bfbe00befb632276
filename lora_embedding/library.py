"""A LoRA library: its folders, its index, and the questions users ask of it.

:class:`LoraLibrary` is the one entry point the CLI, the Gradio UI and the
ComfyUI nodes use: refresh the index, then find similar, dissimilar and
duplicate LoRAs, recommend LoRAs for a prompt, and cluster the library.
"""

import logging
import os
import re
import threading
from dataclasses import dataclass, field

import numpy as np

from .errors import LoraReadError, QueryNotFoundError
from .index import LibraryIndex, default_database_path
from .search import farthest, nearest, pair_cosines
from .signature import DUPLICATE_COSINE

logger = logging.getLogger(__name__)

__all__ = ["DuplicateGroup", "LibraryEntry", "LoraLibrary", "Match", "parse_lora_tags"]

_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)


def parse_lora_tags(text):
    """Return ``[(name, weight)]`` for every ``<lora:name:weight>`` tag in a prompt.

    A tag without a weight, or with one that is not a number, gets 1.0.
    """
    tags = []
    for match in _LORA_TAG.finditer(text or ""):
        try:
            weight = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            weight = 1.0
        tags.append((match.group(1).strip(), weight))
    return tags


@dataclass
class LibraryEntry:
    """One LoRA of the library, as stored in the index.

    Attributes
    ----------
    path : str
        Absolute path.
    name : str
        Path relative to its library root, with ``/`` separators (the name
        ComfyUI lists). For a file outside the library, the file name.
    family, format, container : str or None
    status : str
        ``ok`` or ``error``; then ``error`` contains the reason.
    preview : str or None
        A sidecar preview image.
    tags : list of str
        Training tags from the file's metadata, then sidecar tags.
    metadata : dict
        The reader's metadata summary.
    in_library : bool
        False for a query file read on demand from outside the library.
    """

    path: str
    name: str
    family: str = None
    format: str = None
    container: str = None
    size: int = 0
    status: str = "ok"
    error: str = None
    preview: str = None
    tags: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    weights_hash: str = None
    modules: int = None
    in_library: bool = True
    id: int = None

    @property
    def stem(self):
        """The name without folder and file ending, as used in ``<lora:stem:1>``."""
        from .sidecars import stem_of

        return os.path.basename(stem_of(self.name))

    def training_tags(self, limit=10):
        """Return up to ``limit`` tags, file metadata first, then sidecars.

        The reader stores metadata tags as ``[tag, count]`` pairs, most
        frequent first; only the tag text is returned.
        """
        metadata_tags = [tag[0] if isinstance(tag, (list, tuple)) else tag for tag in self.metadata.get("tags") or []]
        tags = [str(tag) for tag in metadata_tags + list(self.tags or []) if tag]
        return list(dict.fromkeys(tags))[:limit]

    def to_json(self):
        """Return the fields the CLI prints for an entry."""
        return {
            "name": self.name,
            "path": self.path,
            "family": self.family,
            "format": self.format,
            "size": self.size,
            "status": self.status,
            "error": self.error,
            "preview": self.preview,
        }


@dataclass
class Match:
    """A search result: an entry and its cosine similarity to the query."""

    entry: LibraryEntry
    score: float

    def to_json(self):
        """Return the entry fields with the score."""
        return {**self.entry.to_json(), "score": round(self.score, 6)}


@dataclass
class DuplicateGroup:
    """Files that hold the same weights.

    Attributes
    ----------
    entries : list of LibraryEntry
    reason : str
        ``identical files`` when the files are byte for byte the same,
        ``identical tensors`` when only the metadata differs, else
        ``same weights`` (the weights match across format, precision or
        factorization).
    min_cosine : float
        The lowest signature cosine between members.
    """

    entries: list
    reason: str
    min_cosine: float

    def to_json(self):
        """Return the group with each member's path, format and size."""
        return {
            "reason": self.reason,
            "min_cosine": round(self.min_cosine, 6),
            "files": [e.to_json() for e in self.entries],
        }


def _entry_from_row(row):
    return LibraryEntry(
        path=row.path, name=row.name, family=row.family, format=row.format, container=row.container,
        size=row.size, status=row.status, error=row.error, preview=row.preview, tags=row.tags,
        metadata=row.metadata, weights_hash=row.weights_hash, modules=row.modules, id=row.id,
    )


class _VectorTable:
    """The current embeddings of one family, as a matrix with its entries."""

    def __init__(self, entries, vectors):
        self.entries = entries
        self.matrix = np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, 1), np.float32)
        self.row_of = {entry.path: row for row, entry in enumerate(entries)}


class LoraLibrary:
    """A LoRA library: one or more folders and their index.

    Parameters
    ----------
    roots : list of str
        Library folders, searched recursively.
    db_path : str, optional
        The SQLite index; defaults to a file in the user's data directory
        keyed by the roots.
    embedder : Embedder, optional
    """

    def __init__(self, roots, db_path=None, embedder=None):
        from .embedder import Embedder

        self.roots = [os.path.abspath(os.fspath(root)) for root in roots]
        self.db_path = db_path or default_database_path(self.roots)
        self.embedder = embedder or Embedder()
        self._lock = threading.RLock()
        self._scan_lock = threading.Lock()
        self._tables = None
        self._entries = None

    # Index ------------------------------------------------------------------

    def open_index(self, readonly=False):
        """Open the library's :class:`LibraryIndex` (the caller closes it)."""
        return LibraryIndex(self.db_path, readonly=readonly)

    def refresh(self, progress=None, should_stop=None, workers=None, executor="process"):
        """Bring the index up to date with the folders; see :func:`scan_library`.

        Returns
        -------
        ScanReport
        """
        from .scanner import scan_library

        # Queries keep working on the previous state while a scan runs; only
        # one scan at a time writes to the index.
        with self._scan_lock, self.open_index() as index:
            report = scan_library(index, self.roots, self.embedder, progress, should_stop, workers, executor)
        with self._lock:
            self._tables = None
            self._entries = None
        return report

    def entries(self, include_errors=True):
        """Return every indexed :class:`LibraryEntry`, sorted by name."""
        with self._lock:
            if self._entries is None:
                if not os.path.exists(self.db_path):
                    self._entries = []
                else:
                    with self.open_index() as index:
                        self._entries = [_entry_from_row(row) for row in index.files()]
            entries = self._entries
        return [e for e in entries if include_errors or e.status == "ok"]

    def failures(self):
        """Return the entries whose file could not be read, with the reason in ``error``."""
        return [e for e in self.entries() if e.status != "ok"]

    def _load_tables(self):
        with self._lock:
            if self._tables is not None:
                return self._tables
            entries = {e.id: e for e in self.entries(include_errors=False)}
            current = {family: self.embedder.model_id(family) for family in {e.family for e in entries.values()}}
            grouped = {}
            with self.open_index() as index:
                for file_id, (model_id, _, vector) in index.embeddings(sorted(set(current.values()))).items():
                    entry = entries.get(file_id)
                    if entry is None or current[entry.family] != model_id:
                        continue
                    grouped.setdefault(entry.family, ([], []))
                    grouped[entry.family][0].append(entry)
                    grouped[entry.family][1].append(vector)
            self._tables = {family: _VectorTable(*pair) for family, pair in grouped.items()}
            return self._tables

    # Queries ----------------------------------------------------------------

    def find(self, query):
        """Return the library entry a query names, or None.

        A query matches, in order: a name (``sub/foo.safetensors``), a name
        without its ending, an absolute path, or a unique file name or stem
        (case-insensitive).
        """
        text = os.fspath(query).strip().replace("\\", "/")
        entries = self.entries()
        by_name = {e.name: e for e in entries}
        if text in by_name:
            return by_name[text]

        from .sidecars import stem_of

        absolute = os.path.abspath(os.fspath(query))
        for entry in entries:
            if entry.path == absolute or stem_of(entry.name) == text:
                return entry

        lowered = os.path.basename(text).lower()
        matches = [e for e in entries if os.path.basename(e.name).lower() == lowered or e.stem.lower() == lowered]
        return matches[0] if len(matches) == 1 else None

    def resolve(self, query):
        """Return ``(entry, vector)`` for a query: a library name, a path, or a file outside the library.

        A file outside the library is read and embedded on demand, not stored.

        Raises
        ------
        QueryNotFoundError
            When nothing matches, or the matched file could not be embedded.
        """
        entry = self.find(query)
        if entry is not None:
            if entry.status != "ok":
                raise QueryNotFoundError(f"{entry.name}: this LoRA could not be read: {entry.error}")
            table = self._load_tables().get(entry.family)
            if table is not None and entry.path in table.row_of:
                return entry, table.matrix[table.row_of[entry.path]]
            return self._embed_on_demand(entry.path, entry)

        if os.path.isfile(os.fspath(query)):
            return self._embed_on_demand(os.path.abspath(os.fspath(query)), None)
        raise QueryNotFoundError(self._not_found_message(query))

    def _not_found_message(self, query):
        import difflib

        entries = self.entries()
        if not entries:
            return f"{query!r} is not a file, and the library index is empty: run `lora-embedding index` first"
        names = {e.stem: e.name for e in entries}
        close = difflib.get_close_matches(os.path.basename(os.fspath(query)), list(names), n=3, cutoff=0.6)
        message = f"{query!r} is neither a LoRA of the library ({len(entries)} files indexed) nor a file"
        if close:
            message += "; did you mean " + ", ".join(repr(names[stem]) for stem in close) + "?"
        return message

    def _embed_on_demand(self, path, entry):
        try:
            embedding = self.embedder.embed_path(path)
        except LoraReadError as exc:
            raise QueryNotFoundError(f"{path}: cannot be read as a LoRA: {exc.reason}") from exc
        if entry is None:
            entry = LibraryEntry(path=path, name=os.path.basename(path), family=embedding.family,
                                 size=os.path.getsize(path), in_library=False)
        return entry, embedding.vector

    def _table_for(self, entry):
        table = self._load_tables().get(entry.family)
        if table is None or len(table.entries) == 0:
            return None
        return table

    def similar(self, query, k=10):
        """Return the ``k`` most similar LoRAs of the query's family, best first."""
        entry, vector = self.resolve(query)
        table = self._table_for(entry)
        if table is None:
            return []
        exclude = [table.row_of[entry.path]] if entry.path in table.row_of else []
        return [Match(table.entries[row], score) for row, score in nearest(table.matrix, vector, k, exclude)]

    def dissimilar(self, query, k=10, diversify=False):
        """Return the ``k`` least similar LoRAs of the query's family.

        With ``diversify`` no two picks are close to each other.
        """
        entry, vector = self.resolve(query)
        table = self._table_for(entry)
        if table is None:
            return []
        exclude = [table.row_of[entry.path]] if entry.path in table.row_of else []
        picks = farthest(table.matrix, vector, k, exclude, diversify=diversify)
        return [Match(table.entries[row], score) for row, score in picks]

    def recommend(self, names, k=10, mode="similar"):
        """Suggest LoRAs for a prompt that already uses ``names``.

        Parameters
        ----------
        names : list of str
            LoRAs in use (library names, stems or paths); unknown names are
            skipped with a warning.
        mode : {"similar", "complementary"}
            ``similar`` ranks by closeness to the mean of the used LoRAs;
            ``complementary`` picks diverse LoRAs far from them.

        Returns
        -------
        list of Match
            Never includes a LoRA already in use.
        """
        if mode not in ("similar", "complementary"):
            raise ValueError(f"mode={mode!r} is invalid; use 'similar' or 'complementary'")
        used = []
        for name in names:
            try:
                used.append(self.resolve(name))
            except QueryNotFoundError as exc:
                logger.warning("recommend: %s", exc)
        if not used:
            return []

        family = used[0][0].family
        table = self._load_tables().get(family)
        if table is None:
            return []
        vectors = [vector for entry, vector in used if entry.family == family]
        centre = np.mean(vectors, axis=0)
        centre = centre / (np.linalg.norm(centre) or 1.0)
        exclude = [table.row_of[e.path] for e, _ in used if e.path in table.row_of]
        if mode == "similar":
            picks = nearest(table.matrix, centre, k, exclude)
        else:
            picks = farthest(table.matrix, centre, k, exclude, diversify=True)
        return [Match(table.entries[row], score) for row, score in picks]

    def duplicates(self):
        """Return groups of files that hold the same weights, largest groups first.

        Groups whose files are also byte-identical get the reason ``identical files``.
        """
        entries = [e for e in self.entries(include_errors=False)]
        with self.open_index() as index:
            signatures = {row.path: row.signature for row in index.files("ok")}
        groups = _group_duplicates(entries, signatures)
        for group in groups:
            if group.reason == "identical tensors":
                digests = {self.file_sha256(entry) for entry in group.entries}
                if len(digests) == 1:
                    group.reason = "identical files"
        return groups

    def file_sha256(self, entry):
        """Return the full-file SHA-256 of an entry, computing and storing it on first use.

        This is the hash Civitai and most LoRA managers use to identify files.
        """
        with self.open_index() as index:
            row = index.file_by_path(entry.path)
            if row is not None and row.sha256 and (row.size, row.mtime_ns) == _stat_key(entry.path):
                return row.sha256
            digest = _hash_file(entry.path)
            if row is not None:
                index.set_sha256(entry.path, digest)
        return digest

    def clusters(self, family=None, n_clusters=None, layout="pca"):
        """Cluster one family of the library by style.

        Parameters
        ----------
        family : str, optional
            Defaults to the family with the most embedded LoRAs.
        n_clusters : int, optional
            Chosen automatically when None.
        layout : {"pca", "tsne", "auto"}, default="pca"
            How the 2-D map coordinates are computed.

        Returns
        -------
        ClusterResult or None
            None when the library has no embedded LoRA of that family; see
            :func:`lora_embedding.clusters.cluster_library`.
        """
        from .clusters import cluster_library

        tables = self._load_tables()
        if family is None:
            if not tables:
                return None
            family = max(tables, key=lambda f: len(tables[f].entries))
        table = tables.get(family)
        if table is None:
            return None
        return cluster_library(table.entries, table.matrix, n_clusters=n_clusters, layout=layout)

    def families(self):
        """Return ``{family: number of embedded LoRAs}``."""
        return {family: len(table.entries) for family, table in self._load_tables().items()}


def _stat_key(path):
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _hash_file(path, chunk_size=1 << 20):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _UnionFind:
    def __init__(self, size):
        self.parent = list(range(size))

    def find(self, item):
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _group_duplicates(entries, signatures):
    usable = [e for e in entries if signatures.get(e.path) is not None]
    if len(usable) < 2:
        return []
    matrix = np.vstack([signatures[e.path] for e in usable])
    groups = _UnionFind(len(usable))

    by_hash = {}
    for row, entry in enumerate(usable):
        if entry.weights_hash:
            by_hash.setdefault(entry.weights_hash, []).append(row)
    for rows in by_hash.values():
        for row in rows[1:]:
            groups.union(rows[0], row)

    for i, j, _ in pair_cosines(matrix, DUPLICATE_COSINE):
        if usable[i].family == usable[j].family:
            groups.union(i, j)

    members = {}
    for row in range(len(usable)):
        members.setdefault(groups.find(row), []).append(row)
    result = []
    for root, rows in members.items():
        if len(rows) < 2:
            continue
        sub = matrix[rows]
        min_cosine = float((sub @ sub.T).min())
        same_hash = len({usable[r].weights_hash for r in rows}) == 1 and usable[rows[0]].weights_hash
        reason = "identical tensors" if same_hash else "same weights"
        result.append(DuplicateGroup([usable[r] for r in rows], reason, min_cosine))
    result.sort(key=lambda g: (-len(g.entries), g.entries[0].name))
    return result

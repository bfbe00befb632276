"""Folder plans: which LoRA files and sidecars move to which cluster folder.

A plan is computed without touching any file. Each LoRA goes to
``<root>/<cluster folder>/<file name>``, where ``<root>`` is its own library
folder or a chosen target root, and every sidecar goes along under the same
new stem. A destination that already exists, or that another move of the
plan claims, is never used: the file and its sidecars get the first free
suffix `` (2)``, `` (3)`` ... instead. Each move records the source's size
and modification time, so a plan made before a file changed is rejected.
"""

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

from .cluster_names import folder_safe_name
from .errors import OrganizeError
from .sidecars import LORA_EXTENSIONS, METADATA_SUFFIXES, PREVIEW_EXTENSIONS, sidecar_paths, stem_of

logger = logging.getLogger(__name__)

__all__ = ["Move", "Plan", "PlannedLora", "make_plan"]

PLAN_VERSION = 1

# Every ending a file sharing a LoRA's stem can have: other LoRA formats and all sidecars.
_STEM_SUFFIXES = (
    LORA_EXTENSIONS
    + PREVIEW_EXTENSIONS
    + tuple(".preview" + extension for extension in PREVIEW_EXTENSIONS)
    + METADATA_SUFFIXES
)


@dataclass
class Move:
    """One file to move (or link) from ``source`` to ``destination``.

    Attributes
    ----------
    source, destination : str
        Absolute paths.
    size : int
        Source size in bytes when the plan was made.
    mtime_ns : int
        Source modification time in nanoseconds when the plan was made.
    kind : str
        ``lora`` or ``sidecar``.
    """

    source: str
    destination: str
    size: int
    mtime_ns: int
    kind: str = "lora"


@dataclass
class PlannedLora:
    """A LoRA file and its sidecars, all bound for one folder.

    Attributes
    ----------
    name : str
        The LoRA's library name before the move.
    folder : str
        Destination folder relative to the root, ``/``-separated.
    moves : list of Move
        The LoRA file first, then its sidecars.
    """

    name: str
    folder: str
    moves: list


@dataclass
class Plan:
    """Every move of one organize run.

    Attributes
    ----------
    roots : list of str
        The library folders the plan was made for.
    target_root : str or None
        Where cluster folders go; None puts them inside each LoRA's own root.
    mode : str
        ``move`` (rearrange the library) or ``link`` (build a view of links).
    groups : list of PlannedLora
    unchanged : list of dict
        LoRAs already in their planned folder, each with ``name``, ``path``
        and ``folder``.
    created : float
        Unix time of planning.
    """

    roots: list
    target_root: str = None
    mode: str = "move"
    groups: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    created: float = field(default_factory=time.time)

    @property
    def moves(self):
        """Every :class:`Move`, LoRA files followed by their sidecars."""
        return [move for group in self.groups for move in group.moves]

    def folders(self):
        """Return the sorted relative destination folders."""
        return sorted({group.folder for group in self.groups})

    def to_json(self):
        """Return the plan as JSON-compatible data; :meth:`from_json` reads it back."""
        return {
            "version": PLAN_VERSION,
            "mode": self.mode,
            "created": self.created,
            "roots": list(self.roots),
            "target_root": self.target_root,
            "groups": [
                {"name": g.name, "folder": g.folder, "moves": [asdict(m) for m in g.moves]} for g in self.groups
            ],
            "unchanged": list(self.unchanged),
        }

    @classmethod
    def from_json(cls, data):
        """Build a plan from :meth:`to_json` output.

        Raises
        ------
        OrganizeError
            When the data is not a plan of this version.
        """
        if not isinstance(data, dict) or data.get("version") != PLAN_VERSION:
            found = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise OrganizeError(f"not a folder plan of version {PLAN_VERSION} (found {found!r}); run organize --plan again")
        try:
            groups = [
                PlannedLora(g["name"], g["folder"], [Move(**move) for move in g["moves"]]) for g in data["groups"]
            ]
            return cls(roots=list(data["roots"]), target_root=data.get("target_root"), mode=data["mode"],
                       groups=groups, unchanged=list(data.get("unchanged", [])), created=data["created"])
        except (KeyError, TypeError) as exc:
            raise OrganizeError(f"folder plan is incomplete ({exc}); run organize --plan again") from exc

    def save(self, path):
        """Write the plan as JSON to ``path`` (atomically, through a temporary file)."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle, indent=1, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    @classmethod
    def load(cls, path):
        """Read a plan written by :meth:`save`.

        Raises
        ------
        OrganizeError
            When the file is missing or is not a plan.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError as exc:
            raise OrganizeError(f"no saved folder plan at {path}; run organize --plan first") from exc
        except (OSError, ValueError) as exc:
            raise OrganizeError(f"cannot read the folder plan {path}: {exc}; run organize --plan again") from exc
        return cls.from_json(data)


def _claim_key(path):
    # Compared without case, so a plan stays valid on case-insensitive
    # filesystems (Windows, default macOS).
    return os.path.normcase(os.path.abspath(path)).lower()


def _root_of(path, roots):
    containing = [root for root in roots if os.path.commonpath([root, path]) == root]
    return max(containing, key=len) if containing else None


class _Planner:
    """Collects moves and resolves name collisions against the disk and earlier moves."""

    def __init__(self, roots, target_root, mode):
        self.plan = Plan(roots=roots, target_root=target_root, mode=mode)
        self.claimed = set()
        self.taken_sources = set()

    def _free_stem(self, folder, stem, suffixes):
        """Return destinations for ``suffixes`` under the first stem no file of the folder uses.

        A stem counts as used when any LoRA or sidecar name built from it
        exists or is claimed, so a moved LoRA never picks up another file's
        preview or metadata.
        """
        number = 1
        while True:
            candidate = stem if number == 1 else f"{stem} ({number})"
            paths = [os.path.join(folder, candidate + suffix) for suffix in suffixes]
            related = [os.path.join(folder, candidate + suffix) for suffix in _STEM_SUFFIXES]
            if not any(os.path.lexists(p) or _claim_key(p) in self.claimed for p in paths + related):
                return paths
            number += 1

    def add(self, lora_path, name, base, folder):
        destination_folder = os.path.join(base, *folder.split("/"))
        file_name = os.path.basename(lora_path)
        if _claim_key(os.path.join(destination_folder, file_name)) == _claim_key(lora_path):
            self.plan.unchanged.append({"name": name, "path": lora_path, "folder": folder})
            return

        lora_stem = stem_of(lora_path)
        sidecars = [s for s in sidecar_paths(lora_path) if _claim_key(s) not in self.taken_sources]
        sources = [lora_path] + sidecars
        suffixes = [source[len(lora_stem):] for source in sources]
        destinations = self._free_stem(destination_folder, os.path.basename(lora_stem), suffixes)

        moves = []
        for index, (source, destination) in enumerate(zip(sources, destinations)):
            stat = os.stat(source)
            moves.append(Move(source, destination, stat.st_size, stat.st_mtime_ns, "lora" if index == 0 else "sidecar"))
            self.claimed.add(_claim_key(destination))
            self.taken_sources.add(_claim_key(source))
        self.plan.groups.append(PlannedLora(name, folder, moves))


def plan_folders(folder_of, roots, target_root=None, mode="move", names=None):
    """Plan moves from ``{lora path: relative folder}``.

    Parameters
    ----------
    folder_of : dict
        Destination folder of each LoRA, relative to its root, ``/``-separated.
    roots : list of str
        Library folders; every path must lie under one of them.
    target_root : str, optional
        Put the folders here instead of inside each LoRA's own root.
    mode : {"move", "link"}
    names : dict, optional
        ``{path: library name}`` shown in the plan; defaults to the path
        relative to its root.

    Returns
    -------
    Plan
    """
    if mode not in ("move", "link"):
        raise ValueError(f"mode={mode!r} is invalid; use 'move' or 'link'")
    roots = [os.path.abspath(os.fspath(root)) for root in roots]
    target_root = os.path.abspath(os.fspath(target_root)) if target_root is not None else None
    planner = _Planner(roots, target_root, mode)

    for path in sorted(folder_of, key=lambda p: (folder_of[p], p)):
        absolute = os.path.abspath(path)
        root = _root_of(absolute, roots)
        if root is None:
            raise OrganizeError(f"{absolute} is not inside any library folder ({', '.join(roots)})")
        if not os.path.isfile(absolute):
            logger.warning("%s: not found; left out of the plan (run lora-embedding index to update it)", absolute)
            continue
        name = (names or {}).get(path) or os.path.relpath(absolute, root).replace(os.sep, "/")
        planner.add(absolute, name, target_root or root, folder_of[path])
    return planner.plan


def _library_folders(library, n_clusters):
    """Return ``({path: folder}, {path: name})`` from clustering every family of ``library``."""
    families = sorted(library.families())
    folder_of, names = {}, {}
    for family in families:
        result = library.clusters(family=family, n_clusters=n_clusters)
        if not result or not result.clusters:
            continue
        prefix = folder_safe_name(family, "unknown-family") + "/" if len(families) > 1 else ""
        cluster_names = result.names()
        for cluster in result.clusters:
            for member in cluster.members:
                names[member.path] = member.name
        for path, cluster_id in result.assignments.items():
            folder_of[path] = prefix + cluster_names[cluster_id]
    return folder_of, names


def make_plan(source, assignments=None, names=None, target_root=None, mode="move", n_clusters=None):
    """Plan how to sort LoRAs into cluster folders.

    Parameters
    ----------
    source : LoraLibrary or list of str
        A library, clustered here family by family, or its root folders
        when ``assignments`` and ``names`` give the clusters.
    assignments : dict, optional
        ``{lora path: cluster id}``, as in :attr:`ClusterResult.assignments`.
    names : dict, optional
        ``{cluster id: folder name}``.
    target_root : str, optional
        Build the cluster folders here instead of in each LoRA's root.
    mode : {"move", "link"}
        ``link`` plans a view of links for :func:`make_link_view`.
    n_clusters : int, optional
        Number of clusters per family, when ``source`` is a library.

    Returns
    -------
    Plan
        With a library of several base-model families, each family gets its
        own folder level: ``<root>/<family>/<cluster>/``.
    """
    if hasattr(source, "families") and hasattr(source, "roots"):
        folder_of, entry_names = _library_folders(source, n_clusters)
        return plan_folders(folder_of, source.roots, target_root, mode, entry_names)

    if assignments is None or names is None:
        raise ValueError("make_plan(roots, ...) needs both assignments and names")
    missing = sorted({cluster_id for cluster_id in assignments.values()} - set(names))
    if missing:
        raise ValueError(f"cluster ids {missing} have no name in names")
    folder_of = {path: names[cluster_id] for path, cluster_id in assignments.items()}
    return plan_folders(folder_of, list(source), target_root, mode)


def retarget(plan, target_root, mode):
    """Return a new plan of the same LoRAs and folders under ``target_root`` in ``mode``."""
    folder_of, names = {}, {}
    for group in plan.groups:
        lora_move = group.moves[0]
        folder_of[lora_move.source] = group.folder
        names[lora_move.source] = group.name
    for item in plan.unchanged:
        folder_of[item["path"]] = item["folder"]
        names[item["path"]] = item["name"]
    return plan_folders(folder_of, plan.roots, target_root, mode, names)

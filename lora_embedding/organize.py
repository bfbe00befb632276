"""Sort a LoRA library into cluster folders, or build a view of links, and undo it.

The workflow is plan, apply, undo:

1. :func:`make_plan` decides where each LoRA and its sidecars go, without
   touching any file.
2. :func:`apply_plan` moves them, or :func:`make_link_view` links them into
   a separate folder. Both first check that no source changed since
   planning and that no destination exists, then write a journal (see
   :mod:`lora_embedding.organize_journal`) before the first change.
3. :func:`undo_last` puts back the newest run that was not undone, also
   after a crash mid-run, and removes the folders that run created once
   they are empty.

No step ever overwrites a file.

Moving files breaks saved ComfyUI workflows, which refer to LoRAs by their
path relative to the ``loras`` folder. A link view leaves the originals
where they are.
"""

import logging
import os
from dataclasses import dataclass, field

from .errors import OrganizeError
from .organize_files import files_identical, fsync_folder, move_file, partial_path
from .organize_journal import Journal, default_journal_dir, last_applied_journal, library_key
from .organize_plan import Move, Plan, PlannedLora, make_plan, retarget

logger = logging.getLogger(__name__)

__all__ = [
    "ApplyReport",
    "Move",
    "Plan",
    "PlannedLora",
    "UndoReport",
    "WORKFLOW_WARNING",
    "apply_plan",
    "default_journal_dir",
    "library_key",
    "make_link_view",
    "make_plan",
    "undo_last",
]

WORKFLOW_WARNING = (
    "warning: saved ComfyUI workflows refer to LoRAs by their path relative to the loras folder; "
    "moving files breaks those workflows (a --link view leaves the originals in place)"
)

MAX_LISTED = 5
"""Errors list at most this many offending files."""


@dataclass
class ApplyReport:
    """The outcome of :func:`apply_plan` or :func:`make_link_view`."""

    journal: str
    files: int
    folders_created: list = field(default_factory=list)
    methods: dict = field(default_factory=dict)


@dataclass
class UndoReport:
    """The outcome of :func:`undo_last`.

    Attributes
    ----------
    journal : str
    restored : int
        Files moved back, or links removed.
    already_in_place : int
        Files the interrupted run had not moved yet.
    folders_removed : list of str
    """

    journal: str
    mode: str
    restored: int = 0
    already_in_place: int = 0
    folders_removed: list = field(default_factory=list)


def _listing(paths):
    listed = ", ".join(str(p) for p in paths[:MAX_LISTED])
    remaining = len(paths) - MAX_LISTED
    return listed + (f" and {remaining} more" if remaining > 0 else "")


def _stale_reason(move):
    """Return why ``move.source`` no longer matches the plan, or None."""
    try:
        stat = os.stat(move.source)
    except FileNotFoundError:
        return f"{move.source} (missing)"
    if stat.st_size != move.size or stat.st_mtime_ns != move.mtime_ns:
        return f"{move.source} (changed)"
    return None


def _stale_error(changed):
    return OrganizeError(
        f"the folder plan is stale: {len(changed)} files changed or vanished since planning: "
        f"{_listing(changed)}; run organize --plan again"
    )


def _check_sources(plan):
    changed = [reason for reason in map(_stale_reason, plan.moves) if reason]
    if changed:
        raise _stale_error(changed)


def _check_destinations(plan):
    existing = [move.destination for move in plan.moves if os.path.lexists(move.destination)]
    if existing:
        raise OrganizeError(
            f"{len(existing)} planned destinations exist now and are never overwritten: {_listing(existing)}; "
            "run organize --plan again"
        )


def _nearest_existing(folder):
    while not os.path.lexists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def _check_writable(folder, purpose):
    existing = _nearest_existing(folder)
    if not os.path.isdir(existing):
        raise OrganizeError(f"cannot create folder {folder}: {existing} is a file, not a folder; "
                            "choose another target folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OrganizeError(f"folder {existing} is read-only, so {purpose} is not possible; "
                            "make it writable or choose another folder")


def _check_folders(plan):
    for folder in sorted({os.path.dirname(m.destination) for m in plan.moves}):
        _check_writable(folder, "creating files in it")
    if plan.mode == "move":
        for folder in sorted({os.path.dirname(m.source) for m in plan.moves}):
            _check_writable(folder, "moving files out of it")


def _preflight(plan):
    _check_sources(plan)
    _check_destinations(plan)
    _check_folders(plan)


def _make_folders(folder, journal, created):
    """Create ``folder`` and missing parents, journaling each before it is made."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(missing):
        journal.write({"type": "mkdir", "path": path})
        os.mkdir(path)
        created.append(path)


def _link(source, destination):
    try:
        os.symlink(source, destination)
        return "symlink"
    except FileExistsError:
        raise
    except OSError as exc:
        logger.info("symlink %s failed (%s); trying a hard link", destination, exc)
    os.link(source, destination)
    return "hardlink"


def _run(plan, journal_dir):
    _preflight(plan)
    report = ApplyReport(journal="", files=0)

    with Journal.create(journal_dir, plan) as journal:
        report.journal = journal.path
        done = 0
        for seq, move in enumerate(plan.moves):
            try:
                _make_folders(os.path.dirname(move.destination), journal, report.folders_created)
                reason = _stale_reason(move)
                if reason:
                    raise _stale_error([reason])
                if plan.mode == "move":
                    move_file(move.source, move.destination)
                    method = "move"
                else:
                    method = _link(move.source, move.destination)
            except (OSError, OrganizeError) as exc:
                raise _interrupted(exc, move, done, len(plan.moves)) from exc
            journal.write({"type": "done", "seq": seq, "method": method})
            report.methods[method] = report.methods.get(method, 0) + 1
            done += 1
        journal.write({"type": "end"})

    report.files = done
    logger.info("%s: %d files, journal %s", plan.mode, done, report.journal)
    return report


def _interrupted(exc, move, done, total):
    if isinstance(exc, FileExistsError):
        reason = f"{move.destination} appeared after planning and is never overwritten"
    elif isinstance(exc, PermissionError):
        reason = f"permission denied in {os.path.dirname(exc.filename or move.destination)}"
    elif isinstance(exc, OSError):
        reason = f"{exc.filename or move.source}: {exc.strerror or exc}"
    else:
        reason = str(exc)
    return OrganizeError(f"stopped after {done} of {total} files: {reason}; "
                         "run organize --undo to restore the files already handled")


def apply_plan(plan, journal_dir):
    """Move every file of a plan, journaled so that :func:`undo_last` can restore it.

    Parameters
    ----------
    plan : Plan
        A ``move`` plan from :func:`make_plan`.
    journal_dir : str
        Folder for the journal; see :func:`default_journal_dir`.

    Returns
    -------
    ApplyReport

    Raises
    ------
    OrganizeError
        Before any change, when the plan is stale (a source changed or
        vanished), a destination exists, or a folder is read-only. During
        the run, when a move fails; the files moved so far stay journaled.
    """
    if plan.mode != "move":
        raise OrganizeError("this plan builds a link view; apply it with make_link_view (organize --link)")
    return _run(plan, journal_dir)


def make_link_view(plan, view_dir, journal_dir):
    """Build a sorted view of links to the planned LoRAs and sidecars without moving them.

    Each file is linked with a symbolic link, or a hard link where symbolic
    links fail (Windows without the privilege). The run is journaled and
    :func:`undo_last` removes the links again.

    Parameters
    ----------
    plan : Plan
        Any plan; a plan for another folder or mode is recomputed for
        ``view_dir``.
    view_dir : str
        The folder that receives the cluster folders of links.
    journal_dir : str

    Returns
    -------
    ApplyReport
    """
    view_dir = os.path.abspath(os.fspath(view_dir))
    if plan.mode != "link" or plan.target_root != view_dir:
        _check_sources(plan)
        plan = retarget(plan, view_dir, "link")
    return _run(plan, journal_dir)


def _undo_link(record):
    source, destination = record["source"], record["destination"]
    if not os.path.lexists(destination):
        return False
    if os.path.islink(destination):
        if os.readlink(destination) != source:
            raise OrganizeError(f"{destination} now points to {os.readlink(destination)}, not {source}; left in place")
    elif not (os.path.exists(source) and os.path.samefile(source, destination)):
        raise OrganizeError(f"{destination} is no longer a link to {source}; left in place")
    os.unlink(destination)
    return True


def _undo_move(record):
    source, destination = record["source"], record["destination"]
    partial = partial_path(destination)
    if os.path.lexists(partial) and os.path.exists(source):
        os.unlink(partial)

    at_source, at_destination = os.path.lexists(source), os.path.lexists(destination)
    if at_destination and at_source:
        # An interrupted move left both names. The destination is removed only
        # when it contains exactly the same bytes as the source.
        if not files_identical(source, destination):
            raise OrganizeError(f"both {source} and {destination} exist with different content; "
                                "neither was changed, keep the one you want")
        os.unlink(destination)
        fsync_folder(os.path.dirname(destination))
        return False
    if at_destination:
        os.makedirs(os.path.dirname(source), exist_ok=True)
        move_file(destination, source)
        return True
    if at_source:
        return False
    raise OrganizeError(f"{os.path.basename(source)} is neither at {source} nor at {destination}; "
                        "it was moved or deleted after organizing")


def _remove_empty_folders(folders, report):
    for folder in sorted(set(folders), key=len, reverse=True):
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.info("kept folder %s: %s", folder, exc.strerror or exc)
            continue
        report.folders_removed.append(folder)


def undo_last(journal_dir):
    """Restore the newest organize run of ``journal_dir`` that was not undone.

    Moved files go back to their sources and links are removed. An
    interrupted run is undone correctly as well: a file found at its
    destination goes back, a file still at its source stays. Folders the run
    created are removed when empty.

    Returns
    -------
    UndoReport

    Raises
    ------
    OrganizeError
        When no run is left to undo, or some files could not be restored.
        All other files are restored first, and running undo again retries
        the remaining ones.
    """
    state = last_applied_journal(journal_dir)
    if state is None:
        raise OrganizeError(f"nothing to undo: no applied organize run in {journal_dir}")

    report = UndoReport(journal=state.path, mode=state.mode)
    problems = []
    with Journal(state.path) as journal:
        journal.write({"type": "undo-begin"})
        for record in reversed(state.moves):
            if record["seq"] in state.undone:
                continue
            try:
                changed = _undo_link(record) if state.mode == "link" else _undo_move(record)
            except (OSError, OrganizeError) as exc:
                problems.append(str(exc))
                logger.error("undo: %s", exc)
                continue
            report.restored += int(changed)
            report.already_in_place += int(not changed)
            journal.write({"type": "undone", "seq": record["seq"]})

        _remove_empty_folders(state.folders, report)
        if problems:
            raise OrganizeError(f"undo left {len(problems)} files as they are: {_listing(problems)}; "
                                "fix them and run organize --undo again")
        journal.write({"type": "undo-end"})

    logger.info("undo %s: restored %d files", state.path, report.restored)
    return report

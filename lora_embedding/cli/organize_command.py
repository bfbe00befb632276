"""``lora-embedding organize``: plan, apply and undo sorting the library into cluster folders."""

import os
import sys

from ..errors import LoraEmbeddingError, OrganizeError
from .options import (
    add_library_options,
    library_flags,
    library_roots,
    open_library,
    print_json,
    print_table,
    run_guarded,
)
from .search_commands import ensure_index

PLAN_FILE_NAME = "plan.json"
def _reindex_hint(args):
    command = " ".join(part for part in ("lora-embedding index", library_flags(args)) if part)
    return f"file paths changed, so the index is out of date; run `{command}` to update it"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "organize", help="sort LoRAs and their sidecars into cluster folders (plan, apply, undo)",
        description="Sort LoRA files with their sidecars into one folder per cluster. First --plan, "
                    "then --apply the saved plan; --undo restores the last applied plan. "
                    "With --link VIEW_DIR the originals stay and VIEW_DIR receives links.",
    )
    add_library_options(parser)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--plan", action="store_true", help="show and save which files would move where")
    action.add_argument("--apply", action="store_true", help="carry out the saved plan (asks for confirmation)")
    action.add_argument("--undo", action="store_true", help="restore the files of the last applied plan")
    parser.add_argument("--yes", action="store_true", help="apply without asking for confirmation")
    parser.add_argument("--link", metavar="VIEW_DIR",
                        help="build cluster folders of links in VIEW_DIR instead of moving the originals")
    parser.add_argument("--target", metavar="DIR",
                        help="create the cluster folders in DIR instead of each library folder (move mode)")
    parser.add_argument("-k", "--clusters", dest="n_clusters", type=int, metavar="N",
                        help="number of clusters per base-model family (default: automatic)")
    parser.add_argument("--journal", metavar="DIR",
                        help="folder for undo journals and the saved plan (default: one per library in the user data folder)")
    parser.add_argument("--plan-file", metavar="FILE",
                        help=f"where --plan saves and --apply reads the plan (default: {PLAN_FILE_NAME} in the journal folder)")
    parser.add_argument("--refresh", action="store_true", help="update the index before planning")
    parser.set_defaults(func=lambda args: run_guarded(run, args))


def _journal_dir(args):
    from ..organize import default_journal_dir

    if args.journal:
        return os.path.abspath(args.journal)
    return default_journal_dir(library_roots(args))


def _plan_file(args, journal_dir):
    return os.path.abspath(args.plan_file) if args.plan_file else os.path.join(journal_dir, PLAN_FILE_NAME)


def _print_plan(plan):
    moves = plan.moves
    verb = "link" if plan.mode == "link" else "move"
    print(f"plan: {verb} {len(plan.groups)} LoRAs ({len(moves)} files with sidecars) "
          f"into {len(plan.folders())} folders; {len(plan.unchanged)} LoRAs already in place")
    for folder in plan.folders():
        groups = [g for g in plan.groups if g.folder == folder]
        print(f"\n{folder}/  ({len(groups)} LoRAs)")
        rows = [(move.kind, move.source, move.destination) for group in groups for move in group.moves]
        print_table(rows, ["file", "from", "to"])


def run_plan(args, journal_dir):
    from ..organize import make_plan

    library = open_library(args)
    ensure_index(library, args)
    if not library.families():
        raise LoraEmbeddingError("the index contains no embedded LoRA; run `lora-embedding index` first")

    mode = "link" if args.link else "move"
    target = args.link or args.target
    plan = make_plan(library, target_root=target, mode=mode, n_clusters=args.n_clusters)
    plan_file = _plan_file(args, journal_dir)
    plan.save(plan_file)

    if args.json:
        print_json({"plan_file": plan_file, **plan.to_json()})
    else:
        _print_plan(plan)
        print(f"\nsaved the plan to {plan_file}; carry it out with: lora-embedding organize {library_flags(args)} --apply"
              + (f" --link {args.link}" if args.link else ""))
    return 0


def _confirm(plan):
    verb = "Link" if plan.mode == "link" else "Move"
    prompt = f"{verb} {len(plan.moves)} files into {len(plan.folders())} folders? [y/N] "
    print(prompt, end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        print(file=sys.stderr)
    return answer.strip().lower() in ("y", "yes")


def _check_plan_matches(plan, args):
    roots = sorted(os.path.abspath(root) for root in library_roots(args))
    if sorted(plan.roots) != roots:
        raise OrganizeError(f"the saved plan is for the library {', '.join(plan.roots)}, not {', '.join(roots)}; "
                            "run organize --plan again")
    if args.link and (plan.mode != "link" or plan.target_root != os.path.abspath(args.link)):
        raise OrganizeError(f"the saved plan does not build a link view in {args.link}; "
                            f"run organize --plan --link {args.link} first")


def run_apply(args, journal_dir):
    from ..organize import Plan, apply_plan, make_link_view

    plan_file = _plan_file(args, journal_dir)
    plan = Plan.load(plan_file)
    _check_plan_matches(plan, args)
    if not plan.moves:
        print("the saved plan moves nothing; every LoRA is already in its folder")
        return 0
    if not args.yes and not _confirm(plan):
        print("cancelled; nothing was changed", file=sys.stderr)
        return 1

    if plan.mode == "link":
        report = make_link_view(plan, plan.target_root, journal_dir)
    else:
        report = apply_plan(plan, journal_dir)
    os.unlink(plan_file)

    if args.json:
        print_json({"mode": plan.mode, "files": report.files, "folders_created": report.folders_created,
                    "methods": report.methods, "journal": report.journal})
    else:
        verb = "linked" if plan.mode == "link" else "moved"
        print(f"{verb} {report.files} files; undo with: lora-embedding organize {library_flags(args)} --undo")
    if plan.mode == "move":
        print(_reindex_hint(args), file=sys.stderr)
    return 0


def run_undo(args, journal_dir):
    from ..organize import undo_last

    report = undo_last(journal_dir)
    if args.json:
        print_json({"mode": report.mode, "restored": report.restored, "already_in_place": report.already_in_place,
                    "folders_removed": report.folders_removed, "journal": report.journal})
    else:
        action = "removed links" if report.mode == "link" else "moved back"
        print(f"{action}: {report.restored} files; {report.already_in_place} were already in place; "
              f"removed {len(report.folders_removed)} empty folders")
    if report.mode == "move":
        print(_reindex_hint(args), file=sys.stderr)
    return 0


def run(args):
    from ..organize import WORKFLOW_WARNING

    print(WORKFLOW_WARNING, file=sys.stderr)
    if args.link and args.target:
        raise LoraEmbeddingError("--link and --target exclude each other; --link VIEW_DIR already names the target")
    if args.yes and not args.apply:
        raise LoraEmbeddingError("--yes only applies to --apply")

    journal_dir = _journal_dir(args)
    if args.plan:
        return run_plan(args, journal_dir)
    if args.apply:
        return run_apply(args, journal_dir)
    return run_undo(args, journal_dir)

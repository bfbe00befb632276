"""``lora-embedding index``: bring a library's index up to date."""

from .options import add_library_options, open_library, positive_int, print_json, print_table, run_guarded
from .progress import IndexProgress


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "index",
        help="read and embed every LoRA of a library (only new and changed files are read again)",
        description="Read and embed every LoRA under the library folders. Only new and changed files are "
        "read again; Ctrl-C stops cleanly and the next run resumes.",
    )
    parser.add_argument("folders", nargs="*", metavar="DIR", help="library folders (same as --library)")
    add_library_options(parser)
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU; 0 reads in this process)")
    parser.add_argument(
        "--show-similar", nargs="?", const="", default=None, metavar="LORA",
        help="after indexing, print the LoRAs most similar to LORA (default: the first LoRA of the library)",
    )
    parser.add_argument("-k", type=positive_int, default=5, help="results for --show-similar (default: 5)")
    parser.set_defaults(func=lambda args: run_guarded(run, args))


def run(args):
    library = open_library(args, extra_roots=args.folders)
    progress = IndexProgress(disable=args.json)
    try:
        report = library.refresh(progress=progress, workers=args.workers)
    finally:
        progress.close()

    entries = library.entries(include_errors=False)
    if args.json:
        result = {"database": library.db_path, "roots": library.roots, "indexed": len(entries), **report.to_json()}
        if args.show_similar is not None:
            result["similar"] = _similar_json(library, args)
        print_json(result)
        return 0

    print(
        f"{len(entries)} LoRAs indexed in {library.db_path}: {report.added} added, {report.updated} updated, "
        f"{report.removed} removed, {report.unchanged} unchanged, {len(report.failed)} failed"
        + (" (interrupted; run again to resume)" if report.interrupted else "")
    )
    for path, error in report.failed:
        print(f"  failed: {path}: {error}")
    if args.show_similar is not None:
        _print_similar(library, args)
    return 0


def _similar_query(library, args):
    if args.show_similar:
        return args.show_similar
    entries = library.entries(include_errors=False)
    return entries[0].name if entries else None


def _similar_json(library, args):
    query = _similar_query(library, args)
    if query is None:
        return None
    return {"query": query, "results": [m.to_json() for m in library.similar(query, args.k)]}


def _print_similar(library, args):
    query = _similar_query(library, args)
    if query is None:
        print("no readable LoRA in the library, nothing to compare")
        return
    print(f"\nmost similar to {query}:")
    rows = [(f"{m.score:.3f}", m.entry.family, m.entry.name) for m in library.similar(query, args.k)]
    print_table(rows, ["score", "family", "name"])

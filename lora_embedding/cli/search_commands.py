"""``lora-embedding similar``, ``dissimilar`` and ``duplicates``."""

from .options import add_library_options, open_library, print_json, print_table, run_guarded
from .progress import IndexProgress


def add_parser(subparsers):
    for name, help_text in (
        ("similar", "list the LoRAs most similar to one LoRA"),
        ("dissimilar", "list the LoRAs least similar to one LoRA"),
    ):
        parser = subparsers.add_parser(name, help=help_text, description=help_text.capitalize() + ", within its base-model family.")
        parser.add_argument("query", metavar="LORA", help="a library name (sub/name.safetensors), a name without ending, or a file path (also outside the library)")
        add_library_options(parser, with_k=True)
        parser.add_argument("--refresh", action="store_true", help="update the index before searching (it is always built when empty)")
        if name == "dissimilar":
            parser.add_argument("--diversify", action="store_true", help="pick results that are also far from each other")
        parser.set_defaults(func=lambda args: run_guarded(run_search, args))

    parser = subparsers.add_parser(
        "duplicates", help="list files that hold the same weights",
        description="List groups of files that hold the same weights, across file formats, precisions and names.",
    )
    add_library_options(parser)
    parser.add_argument("--refresh", action="store_true", help="update the index first")
    parser.set_defaults(func=lambda args: run_guarded(run_duplicates, args))


def ensure_index(library, args):
    """Build the index when it is empty, or update it when ``--refresh`` is given."""
    if args.refresh or not library.entries():
        progress = IndexProgress(disable=args.json)
        try:
            library.refresh(progress=progress)
        finally:
            progress.close()


def run_search(args):
    library = open_library(args)
    ensure_index(library, args)
    entry, _ = library.resolve(args.query)
    if args.command == "similar":
        matches = library.similar(args.query, args.k)
    else:
        matches = library.dissimilar(args.query, args.k, diversify=args.diversify)

    model = library.embedder.model_for(entry.family)
    if args.json:
        print_json({
            "query": entry.to_json(),
            "family": entry.family,
            "model": {"id": model.model_id, "kind": model.kind},
            "results": [m.to_json() for m in matches],
        })
        return 0

    print(f"{args.command} to {entry.name} ({entry.family}, {model.kind} model {model.model_id}):")
    if not matches:
        print(f"  no other {entry.family} LoRA in the library")
        return 0
    print_table([(f"{m.score:.3f}", m.entry.format or "", m.entry.name) for m in matches], ["score", "format", "name"])
    return 0


def run_duplicates(args):
    library = open_library(args)
    ensure_index(library, args)
    groups = library.duplicates()
    if args.json:
        print_json({"groups": [g.to_json() for g in groups]})
        return 0
    if not groups:
        print("no duplicates found")
        return 0
    for number, group in enumerate(groups, start=1):
        print(f"group {number}: {group.reason} (lowest cosine {group.min_cosine:.4f})")
        print_table([(e.size, e.format or "", e.name) for e in group.entries], ["bytes", "format", "name"])
        print()
    return 0

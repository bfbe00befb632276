"""Options shared by the commands that work on a library."""

import json
import os
import sys

from ..errors import LoraEmbeddingError


def add_library_options(parser, with_k=False):
    """Add ``--library DIR`` (repeatable), ``--db FILE``, ``--json`` and optionally ``-k``."""
    parser.add_argument(
        "--library", action="append", default=[], metavar="DIR",
        help="a LoRA folder, searched recursively (repeat for several; default: the ComfyUI or WebUI LoRA folder found)",
    )
    parser.add_argument("--db", metavar="FILE", help="the index database (default: one per library in the user data folder)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    if with_k:
        parser.add_argument("-k", type=positive_int, default=10, help="how many results to print (default: 10)")


def positive_int(text):
    """Parse a whole number of at least 1 (an argparse type)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def library_roots(args, extra=()):
    """Return the library folders from ``--library`` and ``extra``, or the host folder found.

    Raises
    ------
    LoraEmbeddingError
        When no folder is given and none can be found.
    """
    from ..host_folders import find_host_lora_folders

    roots = list(extra) + list(args.library or [])
    if not roots:
        roots = find_host_lora_folders()
        if not roots:
            raise LoraEmbeddingError(
                "no LoRA folder given and none found; pass --library DIR "
                "(or set COMFYUI_PATH / WEBUI_PATH to your ComfyUI or WebUI folder)"
            )
    missing = [root for root in roots if not os.path.isdir(root)]
    if missing:
        raise LoraEmbeddingError(f"not a folder: {', '.join(missing)}")
    return roots


def open_library(args, extra_roots=()):
    """Return the :class:`LoraLibrary` the arguments describe."""
    from ..library import LoraLibrary

    return LoraLibrary(library_roots(args, extra_roots), db_path=args.db)


def library_flags(args):
    """Return the ``--library``/``--db`` options of ``args`` as shell text, for hints to repeat them."""
    import shlex

    roots = list(getattr(args, "folders", None) or []) + list(args.library or [])
    parts = [f"--library {shlex.quote(root)}" for root in roots]
    if args.db:
        parts.append(f"--db {shlex.quote(args.db)}")
    return " ".join(parts)


def print_json(value):
    """Print ``value`` as indented JSON on stdout."""
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_table(rows, headers):
    """Print rows of strings as a left-aligned table."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def fail(message):
    """Print an error message on stderr and return exit status 2."""
    print(f"lora-embedding: error: {message}", file=sys.stderr)
    return 2


def run_guarded(function, args):
    """Run ``function(args)``, turning product errors into a message and exit status 2."""
    try:
        return function(args)
    except LoraEmbeddingError as exc:
        return fail(str(exc))

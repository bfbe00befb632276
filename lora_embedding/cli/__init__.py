"""Command-line interface: ``lora-embedding COMMAND ...``.

Each command lives in its own module with two functions: ``add_parser``,
which registers its sub-parser, and ``run``, which takes the parsed
arguments and returns the exit status.
"""

import argparse
import importlib
import logging
import sys

# Module names under lora_embedding.cli, in the order `--help` lists them.
COMMAND_MODULES = (
    "inspect_command",
    "embed_command",
    "index_command",
    "search_commands",
    "clusters_command",
    "organize_command",
    "train_command",
    "evaluate_command",
    "ui_command",
)


def build_parser():
    """Build the top-level parser with every available command."""
    parser = argparse.ArgumentParser(
        prog="lora-embedding",
        description="Embed LoRA files from their weights, then search, cluster and sort a library.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeat for debug output)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv=None):
    """Run the command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

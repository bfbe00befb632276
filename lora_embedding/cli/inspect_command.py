"""``lora-embedding inspect PATH [--json]``: describe LoRA files without embedding them.

On a folder, every ``.safetensors``/``.pt``/``.ckpt``/``.bin`` file below it is
inspected; a bad file is reported and the command carries on. The exit status
is 0 when every file is a readable LoRA, 1 when any is unusable.
"""

import json
import os
import sys

from ..reader import LORA_EXTENSIONS, inspect_file

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Register the ``inspect`` command."""
    parser = subparsers.add_parser(
        "inspect",
        help="describe LoRA files: family, dialect, modules, ranks, metadata, problems",
        description="Read LoRA files and describe them. A folder is searched recursively.",
    )
    parser.add_argument("path", help="a LoRA file or a folder of LoRA files")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file, one per line")
    parser.set_defaults(func=run)
    return parser


def find_lora_files(path):
    """Return the LoRA files under a folder (sorted), or ``[path]`` for a file."""
    if not os.path.isdir(path):
        return [path]
    found = []
    for folder, subfolders, names in os.walk(path):
        subfolders.sort()
        for name in sorted(names):
            if name.lower().endswith(LORA_EXTENSIONS):
                found.append(os.path.join(folder, name))
    return found


def run(args):
    """Inspect the files and print the results; return the exit status."""
    paths = find_lora_files(args.path)
    if not paths:
        print(f"no LoRA files (.safetensors, .pt, .ckpt, .bin) found under {args.path}", file=sys.stderr)
        return 1

    failed = 0
    for path in paths:
        result = inspect_file(path)
        if result["error"] is not None:
            failed += 1
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            print(format_result(result), flush=True)
    return 1 if failed else 0


def format_result(result):
    """Format one inspect result for people."""
    lines = [result["path"]]
    if result["error"] is not None and result["family"] is None:
        lines.append(f"  error: {result['error']}")
        return "\n".join(lines)

    ranks = ", ".join(f"rank {rank} x{count}" for rank, count in result["ranks"].items()) or "none"
    algorithms = ", ".join(f"{name} x{count}" for name, count in result["algorithms"].items())
    lines.append(f"  family: {result['family']}   format: {result['format']}   container: {result['container']}")
    lines.append(f"  modules: {result['modules']} stored, {result['canonical_modules']} canonical   ranks: {ranks}")
    lines.append(f"  algorithms: {algorithms}")
    summary = result["metadata"]
    for label, key in (("name", "output_name"), ("base model", "base_model"), ("title", "title"),
                       ("trigger", "trigger_phrase")):
        if summary.get(key):
            lines.append(f"  {label}: {summary[key]}")
    if summary.get("tags"):
        lines.append("  tags: " + ", ".join(tag for tag, _ in summary["tags"][:10]))
    if result["unmapped_keys"]:
        lines.append(f"  unmapped keys: {len(result['unmapped_keys'])}")
    for warning in result["warnings"]:
        lines.append(f"  warning: {warning}")
    if result["error"] is not None:
        lines.append(f"  error: {result['error']}")
    return "\n".join(lines)

"""Measure embedding speed, re-indexing, query latency, indexing memory and ComfyUI import time in one run.

Prints a table of figures against their goals, then the full results as
JSON (also written to ``--json``). Libraries missing under ``--root`` are
built first with ``make_library.py``. docs/benchmarks.md records a run.

Usage::

    python benchmarks/run_benchmarks.py                      # everything, about 30 minutes on 2 cores
    python benchmarks/run_benchmarks.py --quick              # 20-file libraries, 10,000 rows, no ComfyUI
    python benchmarks/run_benchmarks.py --only query comfy   # some sections only
"""

import argparse
import json
import logging
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_comfy  # noqa: E402
import bench_embedding  # noqa: E402
import bench_search  # noqa: E402
from make_library import DEFAULT_ROOT, build_library  # noqa: E402

logger = logging.getLogger(__name__)

SECTIONS = ("embed", "index", "reindex", "query", "rss", "comfy")

EMBED_GOAL_RATIO = 1.5
REINDEX_GOAL_S = 1.0
QUERY_GOAL_MS = 5.0
RSS_GOAL_MIB = 1.5 * 1024
COMFY_GOAL_S = 0.3


def machine_description():
    """Return the CPU model, core count and memory of this machine from ``/proc``."""
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as handle:
        total_kib = int(handle.readline().split()[1])
    import os

    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(total_kib / 1024 ** 2, 1),
            "python": platform.python_version()}


def _load_average():
    import os

    return os.getloadavg()[0]


def _row(figure, value, unit, goal=None, met=None):
    return {"figure": figure, "value": value, "unit": unit, "goal": goal, "met": met}


def run_embed(args, rows, results):
    """Measure the per-file embedding time against the read floor, in this process."""
    results["embed"] = []
    for kind, files in args.embed_libraries:
        library = build_library(kind, files, args.distinct, args.root)
        measured = bench_embedding.measure_per_file(library, args.embed_files)
        results["embed"].append(measured)
        label = f"{kind}, {measured['files']} files"
        rows.append(_row(f"read floor per file ({label})", measured["floor_wall_s"], "s"))
        rows.append(_row(f"embed per file ({label})", measured["embed_wall_s"], "s"))
        rows.append(_row(f"embed / floor, wall ({label})", measured["embed_ratio_wall"], "x",
                         f"<= {EMBED_GOAL_RATIO}", measured["embed_ratio_wall"] <= EMBED_GOAL_RATIO))
        rows.append(_row(f"embed / floor, CPU ({label})", measured["embed_ratio_cpu"], "x",
                         f"<= {EMBED_GOAL_RATIO}", measured["embed_ratio_cpu"] <= EMBED_GOAL_RATIO))
        rows.append(_row(f"index_one_file per file, with hash ({label})", measured["index_one_file_wall_s"], "s"))


def run_index(args, rows, results, workdir):
    """Time whole `lora-embedding index` runs with the default worker count."""
    results["index"] = []
    for kind, files in args.index_libraries:
        library = build_library(kind, files, args.distinct, args.root)
        measured = bench_embedding.run_index_command(library, workdir / f"index-{kind}-{files}.sqlite")
        results["index"].append(measured)
        rows.append(_row(f"`lora-embedding index` wall ({kind}, {files} files, {measured['workers']} workers)",
                         measured["wall_s"], "s"))


def run_rss_and_reindex(args, rows, results, workdir, sections):
    """Index the large SDXL library while sampling memory, then time refreshes of the unchanged library."""
    kind, files = "sdxl-r16", args.large_files
    library = build_library(kind, files, args.distinct, args.root)
    database = workdir / f"index-{kind}-{files}.sqlite"
    measured = bench_embedding.run_index_command(library, database, sample_memory=True)
    results["rss"] = measured
    rows.append(_row(f"`lora-embedding index` wall ({kind}, {files} files, {measured['workers']} workers)",
                     measured["wall_s"], "s"))
    if "rss" in sections:
        worker_peak = max(measured["worker_peaks_mib"], default=0.0)
        rows.append(_row(f"peak RSS main process ({kind}, {files} files)", measured["main_peak_mib"], "MiB"))
        rows.append(_row(f"peak RSS largest worker ({kind}, {files} files)", worker_peak, "MiB"))
        rows.append(_row(f"peak RSS main + workers, sum of peaks ({kind}, {files} files)",
                         measured["sum_of_peaks_mib"], "MiB", f"< {RSS_GOAL_MIB:.0f}",
                         measured["sum_of_peaks_mib"] < RSS_GOAL_MIB))
        rows.append(_row(f"peak anonymous RSS main + workers, sum of peaks ({kind}, {files} files)",
                         measured["sum_of_anonymous_peaks_mib"], "MiB"))
    if "reindex" in sections:
        reindex = bench_embedding.measure_reindex(library, database)
        results["reindex"] = reindex
        rows.append(_row(f"re-index unchanged ({kind}, {reindex['files']} files), median of 3",
                         reindex["median_s"], "s", f"< {REINDEX_GOAL_S}", reindex["median_s"] < REINDEX_GOAL_S))


def run_query(args, rows, results, workdir):
    """Measure the top-10 latency of `search.nearest` and of `LoraLibrary.similar()`."""
    results["query"] = {"nearest": [], "similar": []}
    for count in args.query_rows:
        for dim in bench_search.embedding_dims():
            measured = bench_search.time_nearest(count, dim)
            results["query"]["nearest"].append(measured)
            goal = f"< {QUERY_GOAL_MS}" if count == 10_000 else None
            met = measured["median_ms"] < QUERY_GOAL_MS if goal else None
            rows.append(_row(f"search.nearest top-10, {count} x {dim}, median", measured["median_ms"], "ms", goal, met))
        measured = bench_search.time_library_similar(workdir / f"query-{count}.sqlite", count)
        results["query"]["similar"].append(measured)
        goal = f"< {QUERY_GOAL_MS}" if count == 10_000 else None
        met = measured["median_ms"] < QUERY_GOAL_MS if goal else None
        rows.append(_row(f"LoraLibrary.similar() top-10, {count} rows, median", measured["median_ms"], "ms", goal, met))
        rows.append(_row(f"LoraLibrary.similar() first call (load), {count} rows", measured["first_call_s"], "s"))


def run_comfy(args, rows, results):
    """Measure the node pack's import time inside the real ComfyUI."""
    startup = bench_comfy.measure_startup()
    in_process = bench_comfy.measure_in_process()
    results["comfy"] = {"startup": startup, "in_process": in_process}
    rows.append(_row("ComfyUI 'Import times' line for the pack", startup["import_s"], "s",
                     f"< {COMFY_GOAL_S}", startup["import_s"] < COMFY_GOAL_S and not startup["import_failed"]))
    rows.append(_row("pack load_custom_node in ComfyUI, max of 3", in_process["max_s"], "s",
                     f"< {COMFY_GOAL_S}", in_process["max_s"] < COMFY_GOAL_S))


def print_table(rows):
    """Print the figures as an aligned text table."""
    lines = [("figure", "value", "goal", "met")]
    for row in rows:
        value = f"{row['value']:.4g} {row['unit']}"
        met = ""
        if row["met"] is not None:
            met = "yes" if row["met"] else "NO"
        lines.append((row["figure"], value, row["goal"] or "", met))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _library_spec(text):
    kind, _, files = text.partition(":")
    return kind, int(files or 100)


def parse_arguments(argv):
    """Parse the command line; ``--quick`` replaces the sizes with small ones."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"folder of the synthetic libraries (default: {DEFAULT_ROOT})")
    parser.add_argument("--distinct", type=int, default=50, help="distinct files per library, the rest hard links (default: 50)")
    parser.add_argument("--embed-libraries", type=_library_spec, nargs="+", default=[("sd15-r32-te", 100), ("sdxl-r16", 100)],
                        metavar="KIND:FILES", help="libraries timed file by file (default: sd15-r32-te:100 sdxl-r16:100)")
    parser.add_argument("--embed-files", type=int, default=None, help="time only this many files of each library (default: all)")
    parser.add_argument("--index-libraries", type=_library_spec, nargs="+", default=[("sd15-r32-te", 100), ("sdxl-r16", 100)],
                        metavar="KIND:FILES", help="libraries indexed by the CLI (default: sd15-r32-te:100 sdxl-r16:100)")
    parser.add_argument("--large-files", type=int, default=1000, help="SDXL library size for the memory and re-index figures (default: 1000)")
    parser.add_argument("--query-rows", type=int, nargs="+", default=[10_000, 100_000], help="stored embeddings for the query figures")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a check run: 20-file libraries, 10,000 rows, no ComfyUI")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.embed_libraries = [(kind, 20) for kind, _ in args.embed_libraries]
        args.index_libraries = [(kind, 20) for kind, _ in args.index_libraries]
        args.large_files = 20
        args.query_rows = [10_000]
        args.only = [section for section in args.only if section != "comfy"]
    return args


def main(argv=None):
    """Run the selected sections and print the table and the JSON results."""
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    rows, results = [], {"machine": machine_description(), "arguments": sys.argv[1:]}

    with tempfile.TemporaryDirectory(prefix="lora-bench-") as folder:
        workdir = Path(folder)
        results["load_average_start"] = _load_average()
        if "embed" in args.only:
            run_embed(args, rows, results)
        if "index" in args.only:
            run_index(args, rows, results, workdir)
        if "rss" in args.only or "reindex" in args.only:
            run_rss_and_reindex(args, rows, results, workdir, args.only)
        if "query" in args.only:
            run_query(args, rows, results, workdir)
        if "comfy" in args.only:
            run_comfy(args, rows, results)

    results["load_average_end"] = _load_average()
    results["table"] = rows
    print_table(rows)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

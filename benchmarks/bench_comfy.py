"""Time that importing the node pack adds to ComfyUI's start.

Two measurements, both with the real ComfyUI and its own virtualenv:

- ``startup``: ComfyUI starts with ``--cpu --quick-test-for-ci`` and a
  temporary base directory whose ``custom_nodes`` contains a symbolic link to
  this repository; the pack's line of ComfyUI's "Import times for custom
  nodes" is read (ComfyUI prints it to 0.1 s);
- ``in_process``: a fresh interpreter imports ComfyUI's ``nodes`` module
  (torch, comfy and the built-in nodes, as at start-up) and ComfyUI's
  ``comfy_config`` parser, then times ``nodes.load_custom_node`` on the same
  link with ``time.perf_counter``.
"""

import logging
import re
import subprocess
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

REPOSITORY = Path(__file__).resolve().parents[1]
COMFY_ROOT = Path("/work/hosts/comfy/ComfyUI")
COMFY_PYTHON = Path("/work/hosts/comfy/venv/bin/python")
PACK_FOLDER = "lora-embedding"
START_TIMEOUT_S = 600

_IN_PROCESS = r"""
import asyncio, json, sys, time
sys.argv = ["main.py", "--cpu", "--base-directory", sys.argv[1]]
sys.path.insert(0, ".")
import comfy.options
comfy.options.enable_args_parsing()
import nodes
# load_custom_node parses every pack's pyproject.toml with this module (pydantic);
# ComfyUI imports it once for all packs, so it is loaded before the timing.
from comfy_config import config_parser
before = set(sys.modules)
started = time.perf_counter()
loaded = asyncio.run(nodes.load_custom_node(PACK))
elapsed = time.perf_counter() - started
names = [name for name, cls in nodes.NODE_CLASS_MAPPINGS.items()
         if getattr(cls, "RELATIVE_PYTHON_MODULE", "").endswith(FOLDER)]
print(json.dumps({"seconds": elapsed, "loaded": loaded, "nodes": len(names),
                  "new_top_level_modules": sorted({m.split(".")[0] for m in set(sys.modules) - before})}))
"""


def _base_directory(folder):
    custom_nodes = Path(folder) / "custom_nodes"
    custom_nodes.mkdir(parents=True)
    (custom_nodes / PACK_FOLDER).symlink_to(REPOSITORY, target_is_directory=True)
    return custom_nodes / PACK_FOLDER


def measure_startup(port=18931):
    """Start ComfyUI once with the pack linked in and return the pack's import-time line in seconds."""
    with tempfile.TemporaryDirectory(prefix="comfy-bench-") as folder:
        _base_directory(folder)
        command = [
            str(COMFY_PYTHON), "main.py", "--cpu", "--base-directory", folder, "--listen", "127.0.0.1",
            "--port", str(port), "--quick-test-for-ci", "--disable-auto-launch",
        ]
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=COMFY_ROOT, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        wall = time.perf_counter() - started

    log = completed.stdout + completed.stderr
    match = re.search(r"^\s*([\d.]+) seconds(?: \(IMPORT FAILED\))?: \S*" + re.escape(PACK_FOLDER) + r"\s*$", log, re.M)
    if match is None:
        raise RuntimeError(f"ComfyUI's log has no import-time line for {PACK_FOLDER}; log tail:\n{log[-3000:]}")
    failed = "IMPORT FAILED" in match.group(0)
    pack_errors = [line for line in log.splitlines() if "LoRA Embedding" in line and "fail" in line.lower()]
    return {"import_s": float(match.group(1)), "import_failed": failed, "pack_errors": pack_errors, "start_wall_s": wall}


def measure_in_process(repeats=3):
    """Time ``nodes.load_custom_node`` on the pack in fresh ComfyUI interpreters; return the runs and their minimum."""
    import json

    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="comfy-bench-") as folder:
            pack = _base_directory(folder)
            script = _IN_PROCESS.replace("PACK", repr(str(pack))).replace("FOLDER", repr(PACK_FOLDER))
            completed = subprocess.run(
                [str(COMFY_PYTHON), "-c", script, folder], cwd=COMFY_ROOT, capture_output=True, text=True,
                timeout=START_TIMEOUT_S,
            )
        if completed.returncode != 0:
            raise RuntimeError(f"timing the pack import in ComfyUI failed: {completed.stderr[-3000:]}")
        runs.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    seconds = [run["seconds"] for run in runs]
    logger.info("pack import in ComfyUI: %s s", ", ".join(f"{s:.3f}" for s in seconds))
    return {"runs": runs, "min_s": min(seconds), "max_s": max(seconds), "nodes": runs[-1]["nodes"]}

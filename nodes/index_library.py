"""Index LoRA Library: bring the index up to date, with ComfyUI's progress bar and Cancel."""

import logging
import os
import time

from .comfy_host import ProgressReporter, interrupt_requested, raise_if_interrupted
from .library_service import default_workers, get_service
from .sockets import InputSpec, NodeResult, NodeSpec, OutputSpec

logger = logging.getLogger(__name__)

__all__ = ["SPEC", "format_report", "index_library"]

DISPLAY_NAME = "Index LoRA Library"
MAX_LISTED_FAILURES = 50


def format_report(report, roots, seconds):
    """Return a scan report as text: counts, then one line per failed file with its reason."""
    lines = [
        f"LoRA folders: {', '.join(roots) or 'none'}",
        f"added {report.added}, updated {report.updated}, removed {report.removed}, "
        f"unchanged {report.unchanged}, failed {len(report.failed)} ({seconds:.1f} s)",
    ]
    if report.interrupted:
        lines.append("interrupted: the next run resumes where this one stopped")
    for path, error in report.failed[:MAX_LISTED_FAILURES]:
        lines.append(f"failed: {os.path.basename(path)}: {error}")
    if len(report.failed) > MAX_LISTED_FAILURES:
        lines.append(f"... and {len(report.failed) - MAX_LISTED_FAILURES} more failures")
    return "\n".join(lines)


def index_library(workers=0, service=None):
    """Run the node: refresh the index in this thread and return its report.

    A background refresh that is already running is waited for first, with
    its progress on this node's bar. Cancel stops the scan after the file in
    progress, and the files already read stay indexed.

    Parameters
    ----------
    workers : int
        Reader threads. 0 picks the CPU count, at most 4.
    service : LibraryService, optional

    Returns
    -------
    NodeResult
        The report text.
    """
    service = service or get_service()
    progress = ProgressReporter()
    service.wait_for_refresh(poll=progress)

    started = time.monotonic()
    report = service.refresh(progress=progress, should_stop=interrupt_requested, workers=workers or default_workers())
    if report.interrupted:
        raise_if_interrupted()
    text = format_report(report, service.roots(), time.monotonic() - started)
    return NodeResult(values=(text,), text=text)


def _fingerprint(**_inputs):
    # A new value on every queue: files may change in place without changing the LoRA list.
    return time.time_ns()


SPEC = NodeSpec(
    node_id="IndexLoraLibrary_LoraEmbedding",
    display_name=DISPLAY_NAME,
    description=(
        "Read every LoRA in ComfyUI's loras folders that is new or changed since the last run, and embed it. "
        "Other nodes of this pack also start this in the background on first use."
    ),
    inputs=[
        InputSpec("workers", "INT", "Threads that read LoRA files. 0 uses the CPU count, at most 4.",
                  default=0, minimum=0, maximum=64),
    ],
    outputs=[
        OutputSpec("report", "STRING", "Files added, updated, removed, unchanged and failed, with each failure's reason."),
    ],
    run=index_library,
    fingerprint=_fingerprint,
    output_node=True,
)

"""The Index tab: read and embed the library, and list the files that failed."""

import logging
import os

from ..errors import LoraEmbeddingError
from .compat import component, gradio
from .gallery import table

logger = logging.getLogger(__name__)

__all__ = ["FAILURE_HEADERS", "build_index_tab", "failure_table", "index_library", "library_summary"]

FAILURE_HEADERS = ["LoRA", "error", "path"]


def failure_table(controller):
    """Return the files of the library that could not be read, with the reason."""
    rows = []
    if controller.has_index():
        rows = [[entry.name, entry.error or "", entry.path] for entry in controller.library.failures()]
    return table(rows, FAILURE_HEADERS)


def library_summary(controller):
    """Return a Markdown line with the folders and the number of indexed LoRAs."""
    folders = ", ".join(f"`{root}`" for root in controller.roots)
    if not controller.has_index():
        return f"Folders: {folders}. Not indexed yet: press **Index library**."
    entries = controller.library.entries()
    failed = sum(1 for entry in entries if entry.status != "ok")
    return f"Folders: {folders}. {len(entries) - failed} LoRAs indexed, {failed} could not be read."


def _report_text(report, indexed):
    text = (
        f"{indexed} LoRAs indexed: {report.added} added, {report.updated} updated, "
        f"{report.removed} removed, {report.unchanged} unchanged, {len(report.failed)} failed."
    )
    if report.interrupted:
        text += " Stopped before the end: press **Index library** again to resume."
    return text


def index_library(controller, progress=None):
    """Index the library and return ``(status Markdown, failure table, LoRA names)``.

    Parameters
    ----------
    controller : LibraryController
    progress : callable, optional
        Called as ``progress(fraction, desc=text)``, like ``gr.Progress``.
    """
    missing = [root for root in controller.roots if not os.path.isdir(root)]
    if missing:
        message = f"Folder not found: {', '.join(missing)}. Fix the folders in the Settings tab."
        return message, failure_table(controller), controller.names()

    def report_progress(done, total, path):
        if progress is not None:
            progress(done / max(total, 1), desc=f"{done}/{total} {os.path.basename(path)}")

    if progress is not None:
        progress(0.0, desc="looking for new and changed files")
    try:
        report = controller.index(report_progress)
    except (LoraEmbeddingError, OSError) as exc:
        logger.exception("indexing %s failed", controller.roots)
        return f"Indexing failed: {exc}", failure_table(controller), controller.names()

    names = controller.names()
    return _report_text(report, len(names)), failure_table(controller), names


def build_index_tab(controller):
    """Build the Index tab's components; :mod:`.app` wires the events.

    Returns
    -------
    dict
        ``summary``, ``index_button``, ``stop_button``, ``status``, ``failures``.
    """
    gr = gradio()
    # Callable values are evaluated again at every page load, also inside
    # WebUI, where load events of an extension's Blocks do not run.
    summary = component(gr.Markdown, value=lambda: library_summary(controller))
    with gr.Row():
        index_button = component(gr.Button, value="Index library", variant="primary", elem_id="lora_embedding_index")
        stop_button = component(gr.Button, value="Stop", variant="secondary")
    status = component(gr.Markdown, value="", elem_id="lora_embedding_index_status")
    failures = component(
        gr.Dataframe, value=lambda: failure_table(controller), headers=FAILURE_HEADERS,
        label="Files that could not be read",
        interactive=False, wrap=True, elem_id="lora_embedding_failures",
    )
    stop_button.click(controller.request_stop, inputs=None, outputs=None)
    return {"summary": summary, "index_button": index_button, "stop_button": stop_button,
            "status": status, "failures": failures}

"""The Duplicates tab: files that hold the same weights, grouped."""

import logging

from .compat import component, gradio
from .gallery import human_size, table

logger = logging.getLogger(__name__)

__all__ = ["DUPLICATE_HEADERS", "build_duplicates_tab", "find_duplicates"]

DUPLICATE_HEADERS = ["group", "reason", "LoRA", "format", "size", "path"]


def find_duplicates(controller):
    """Return ``(summary Markdown, table)`` of the library's duplicate groups, largest first."""
    if not controller.has_index():
        return "Not indexed yet: index the library first.", table([], DUPLICATE_HEADERS)
    groups = controller.library.duplicates()
    rows = []
    spare_bytes = 0
    for number, group in enumerate(groups, start=1):
        reason = f"{group.reason} (cosine ≥ {group.min_cosine:.4f})"
        for entry in group.entries:
            rows.append([number, reason, entry.name, entry.format or "", human_size(entry.size), entry.path])
        # Keeping the largest file of a group and deleting the others frees the rest.
        sizes = sorted((entry.size or 0 for entry in group.entries), reverse=True)
        spare_bytes += sum(sizes[1:])

    if not groups:
        return "No duplicates found.", table([], DUPLICATE_HEADERS)
    files = sum(len(group.entries) for group in groups)
    summary = (f"{len(groups)} groups of duplicates, {files} files. Keeping one file per group "
               f"would free about {human_size(spare_bytes)}.")
    return summary, table(rows, DUPLICATE_HEADERS)


def build_duplicates_tab(controller):
    """Build the Duplicates tab and wire its events."""
    gr = gradio()
    run = component(gr.Button, value="Find duplicates", variant="primary", elem_id="lora_embedding_duplicates_run")
    summary = component(gr.Markdown, value="")
    groups = component(
        gr.Dataframe, value=table([], DUPLICATE_HEADERS), headers=DUPLICATE_HEADERS, interactive=False, wrap=True,
        label="Duplicate groups",
    )
    run.click(lambda: find_duplicates(controller), inputs=None, outputs=[summary, groups])
    return {"summary": summary, "groups": groups}

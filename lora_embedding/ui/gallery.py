"""Turn search results into gallery items, result tables and prompt tags."""

import logging

from .images import entry_image

logger = logging.getLogger(__name__)

__all__ = [
    "RESULT_HEADERS", "caption", "entry_gallery_items", "gallery_items", "human_size", "lora_tag", "result_rows",
    "table", "tags_text",
]

RESULT_HEADERS = ["rank", "LoRA", "score", "family", "format", "prompt tag"]


def lora_tag(entry, weight=1):
    """Return the prompt tag ``<lora:stem:weight>`` that loads ``entry`` in WebUI."""
    return f"<lora:{entry.stem}:{weight:g}>"


def human_size(size):
    """Return a byte count as a short text such as ``3.2 MB``."""
    value = float(size or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def caption(match):
    """Return the gallery caption of a match: its cosine similarity, then its stem.

    The score comes first because Gradio cuts long captions at the end.
    """
    return f"{match.score:.3f} · {match.entry.stem}"


def gallery_items(matches):
    """Return ``[(image path, caption)]`` for a Gradio Gallery, in the order of ``matches``."""
    return [(entry_image(match.entry), caption(match)) for match in matches]


def entry_gallery_items(entries):
    """Return ``[(image path, stem)]`` for entries that have no score, such as cluster members."""
    return [(entry_image(entry), entry.stem) for entry in entries]


def result_rows(matches):
    """Return one table row per match, with the columns of :data:`RESULT_HEADERS`."""
    return [
        [rank, match.entry.name, round(float(match.score), 4), match.entry.family or "unknown",
         match.entry.format or "", lora_tag(match.entry)]
        for rank, match in enumerate(matches, start=1)
    ]


def tags_text(entries):
    """Return the prompt tags of ``entries`` separated by spaces, ready to paste."""
    return " ".join(lora_tag(entry) for entry in entries)


def table(rows, headers):
    """Return rows as a pandas DataFrame with ``headers``, which every Gradio line accepts, even when empty."""
    import pandas

    return pandas.DataFrame(rows, columns=headers)

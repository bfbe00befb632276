"""A labelled grid of LoRA preview images, as a ComfyUI IMAGE tensor.

Each cell shows the LoRA's sidecar preview (``name.png``,
``name.preview.png`` and the other endings the library recognises) above
its name and score. A LoRA without a readable preview gets a grey
placeholder cell with its name, so the grid always has one cell per pick.
"""

import math

__all__ = ["render_grid", "image_to_tensor", "message_image"]

CELL = 256
"""Width and height of a cell's picture area, in pixels."""

LABEL = 40
"""Height of the caption under each picture, in pixels."""

MAX_COLUMNS = 4

BACKGROUND = (32, 32, 32)
PLACEHOLDER = (72, 72, 72)
TEXT = (230, 230, 230)


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _fit_text(draw, text, width, font):
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[1:]
    return "…" + text


def _picture(preview_path):
    """Return the preview scaled into a CELL×CELL square, or None when it cannot be read."""
    from lora_embedding.sidecars import open_preview

    if not preview_path:
        return None
    return open_preview(preview_path, CELL)


def _placeholder(label):
    from PIL import Image, ImageDraw

    cell = Image.new("RGB", (CELL, CELL), PLACEHOLDER)
    draw = ImageDraw.Draw(cell)
    font = _font()
    lines = ["no preview", _fit_text(draw, label, CELL - 16, font)]
    for row, line in enumerate(lines):
        width = draw.textlength(line, font=font)
        draw.text(((CELL - width) / 2, CELL / 2 - 12 + row * 16), line, fill=TEXT, font=font)
    return cell


def render_grid(items, columns=None):
    """Draw a grid of previews.

    Parameters
    ----------
    items : list of (str, str or None, str)
        ``(label, preview image path or None, caption)`` per cell. The caption
        is a second line such as the score.
    columns : int, optional
        Cells per row. Defaults to at most ``MAX_COLUMNS``.

    Returns
    -------
    PIL.Image.Image
        RGB, ``columns × CELL`` wide. An empty ``items`` gives one
        "no results" cell.
    """
    from PIL import Image, ImageDraw

    if not items:
        return message_image("no results")
    columns = columns or min(MAX_COLUMNS, len(items))
    rows = math.ceil(len(items) / columns)
    grid = Image.new("RGB", (columns * CELL, rows * (CELL + LABEL)), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    font = _font()

    for position, (label, preview_path, caption) in enumerate(items):
        left = (position % columns) * CELL
        top = (position // columns) * (CELL + LABEL)
        picture = _picture(preview_path) or _placeholder(label)
        grid.paste(picture, (left + (CELL - picture.width) // 2, top + (CELL - picture.height) // 2))
        draw.text((left + 6, top + CELL + 4), _fit_text(draw, label, CELL - 12, font), fill=TEXT, font=font)
        if caption:
            draw.text((left + 6, top + CELL + 20), _fit_text(draw, caption, CELL - 12, font), fill=TEXT, font=font)
    return grid


def message_image(message, width=2 * CELL, height=CELL):
    """Return a dark image with ``message`` written on it, one line per ``\\n``."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font()
    for row, line in enumerate(message.splitlines()):
        draw.text((12, 12 + row * 16), _fit_text(draw, line, width - 24, font), fill=TEXT, font=font)
    return image


def image_to_tensor(image):
    """Convert a PIL image to a ComfyUI IMAGE: float32 tensor ``[1, H, W, 3]`` in 0..1."""
    import numpy as np
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).unsqueeze(0)

"""Preview thumbnails and the placeholder card of LoRAs without a preview.

Gradio serves files from its own cache and, since Gradio 4, only copies
files from the working directory or the system temporary directory into it.
A LoRA folder can be anywhere, so every image the UI shows is first written
as a small PNG under the temporary directory.
"""

import hashlib
import logging
import os
import tempfile
import textwrap

logger = logging.getLogger(__name__)

__all__ = ["THUMBNAIL_SIZE", "cache_folder", "entry_image", "placeholder_image", "thumbnail"]

THUMBNAIL_SIZE = 256
"""Maximum width and height of a gallery thumbnail, in pixels."""

_PLACEHOLDER_BACKGROUND = (58, 62, 70)
_PLACEHOLDER_TEXT = (205, 208, 214)


def cache_folder():
    """Return (and create) the folder that stores thumbnails and placeholders."""
    folder = os.path.join(tempfile.gettempdir(), "lora-embedding-ui")
    os.makedirs(folder, exist_ok=True)
    return folder


def _cache_path(*parts):
    digest = hashlib.sha1("\0".join(str(part) for part in parts).encode("utf-8")).hexdigest()[:20]
    return os.path.join(cache_folder(), digest + ".png")


def thumbnail(image_path, size=THUMBNAIL_SIZE):
    """Return a cached PNG thumbnail of ``image_path``, or None when it cannot be read.

    The cache key includes the file's size and modification time, so an
    edited preview gets a new thumbnail.
    """
    from ..sidecars import open_preview

    try:
        stat = os.stat(image_path)
    except OSError:
        return None
    target = _cache_path("thumbnail", os.path.abspath(image_path), stat.st_size, stat.st_mtime_ns, size)
    if os.path.isfile(target):
        return target

    picture = open_preview(image_path, size)
    if picture is None:
        return None
    _save_atomically(picture, target)
    return target


def _font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        pass
    # Pillow before 10.1 (WebUI Forge pins 9.5) has only a tiny bitmap font
    # built in, so use the DejaVu Sans that matplotlib ships.
    try:
        import matplotlib

        return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default()


def placeholder_image(label, size=THUMBNAIL_SIZE):
    """Return a neutral grey card with ``label`` written on it, for LoRAs without a preview."""
    from PIL import Image, ImageDraw

    import PIL

    target = _cache_path("placeholder", label, size, PIL.__version__)
    if os.path.isfile(target):
        return target

    picture = Image.new("RGB", (size, size), _PLACEHOLDER_BACKGROUND)
    draw = ImageDraw.Draw(picture)
    font = _font(max(12, size // 14))
    lines = textwrap.wrap(label, width=18)[:5] + ["", "no preview"]
    line_height = max(14, size // 11)
    top = (size - line_height * len(lines)) // 2
    for row, line in enumerate(lines):
        draw.text((size // 12, top + row * line_height), line, fill=_PLACEHOLDER_TEXT, font=font)
    _save_atomically(picture, target)
    return target


def _save_atomically(picture, target):
    partial = f"{target}.{os.getpid()}.part"
    picture.save(partial, format="PNG")
    os.replace(partial, target)


def entry_image(entry, size=THUMBNAIL_SIZE):
    """Return the image path to show for a :class:`~lora_embedding.library.LibraryEntry`.

    The preview recorded in the index comes first, then a preview found next
    to the file now (added after indexing), then a placeholder.
    """
    from ..sidecars import find_preview

    for candidate in (entry.preview, find_preview(entry.path)):
        if candidate and os.path.isfile(candidate):
            image = thumbnail(candidate, size)
            if image is not None:
                return image
    return placeholder_image(entry.stem, size)

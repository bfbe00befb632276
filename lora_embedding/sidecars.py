"""Sidecar files that users and other tools keep next to a LoRA.

The product reads them and never requires them:

- preview images ``name.png`` / ``name.preview.png`` (also jpg, jpeg, webp,
  gif), in the order Stable Diffusion WebUI looks for them;
- ``name.civitai.info`` (Civitai Helper), ``name.json`` (WebUI user
  metadata), ``name.metadata.json`` (ComfyUI-Lora-Manager),
  ``name.rgthree-info.json`` (rgthree-comfy), ``name.txt``, ``name.sha256``.

Folder organizing moves every sidecar together with its LoRA.
"""

import json
import logging
import os

logger = logging.getLogger(__name__)

LORA_EXTENSIONS = (".safetensors", ".pt", ".ckpt", ".bin", ".pth")
"""File name endings the library treats as LoRA files."""

PREVIEW_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")

METADATA_SUFFIXES = (".civitai.info", ".json", ".metadata.json", ".rgthree-info.json", ".txt", ".sha256")

MAX_SIDECAR_BYTES = 4 * 1024 * 1024
"""Sidecar JSON files larger than this are ignored rather than parsed."""

__all__ = [
    "LORA_EXTENSIONS",
    "find_preview",
    "is_lora_file",
    "open_preview",
    "read_sidecar_info",
    "sidecar_paths",
    "stem_of",
]


def is_lora_file(path):
    """Return True when ``path`` has a LoRA file ending and is not itself a sidecar."""
    return str(path).lower().endswith(LORA_EXTENSIONS)


def stem_of(path):
    """Return ``path`` without its LoRA file ending (``a/b.safetensors`` → ``a/b``)."""
    text = str(path)
    lowered = text.lower()
    for extension in LORA_EXTENSIONS:
        if lowered.endswith(extension):
            return text[: -len(extension)]
    return os.path.splitext(text)[0]


def _preview_candidates(stem):
    for extension in PREVIEW_EXTENSIONS:
        yield stem + extension
        yield stem + ".preview" + extension


def sidecar_paths(lora_path):
    """Return the sidecar files that exist next to ``lora_path``, previews first."""
    stem = stem_of(lora_path)
    candidates = list(_preview_candidates(stem)) + [stem + suffix for suffix in METADATA_SUFFIXES]
    return [path for path in candidates if os.path.isfile(path)]


def find_preview(lora_path):
    """Return the first preview image of ``lora_path``, or None."""
    for candidate in _preview_candidates(stem_of(lora_path)):
        if os.path.isfile(candidate):
            return candidate
    return None


def open_preview(image_path, size):
    """Return a sidecar preview as an RGB PIL image scaled to fit ``size``×``size``, or None.

    The first frame of an animated preview is used. An unreadable image is
    logged and gives None, so callers draw a placeholder instead.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image_path) as image:
            image.seek(0)
            picture = image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        logger.warning("%s: preview image unreadable, using a placeholder: %s", image_path, exc)
        return None
    picture.thumbnail((size, size))
    return picture


def _load_json(path):
    try:
        if os.path.getsize(path) > MAX_SIDECAR_BYTES:
            logger.warning("%s: sidecar larger than %d bytes, ignored", path, MAX_SIDECAR_BYTES)
            return None
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        logger.warning("%s: unreadable sidecar ignored: %s", path, exc)
        return None


def _as_tag_list(value):
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(part).strip() for part in value if str(part).strip()]
    return []


def _civitai_fields(data):
    info = {"tags": [], "trained_words": []}
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    info["title"] = model.get("name") or data.get("name")
    info["base_model"] = data.get("baseModel")
    info["tags"] += _as_tag_list(model.get("tags") or data.get("tags"))
    info["trained_words"] += _as_tag_list(data.get("trainedWords"))
    return info


def read_sidecar_info(lora_path):
    """Collect titles, tags, trigger words and base model from the sidecars of ``lora_path``.

    Returns
    -------
    dict
        ``title``, ``base_model``, ``tags`` (list), ``trained_words`` (list),
        ``activation_text``, ``preview`` (path or None). Missing fields are
        None or empty.
    """
    stem = stem_of(lora_path)
    info = {"title": None, "base_model": None, "tags": [], "trained_words": [], "activation_text": None}

    for suffix in (".civitai.info", ".metadata.json", ".rgthree-info.json"):
        data = _load_json(stem + suffix) if os.path.isfile(stem + suffix) else None
        if not isinstance(data, dict):
            continue
        if suffix == ".civitai.info":
            fields = _civitai_fields(data)
        else:
            civitai = data.get("civitai") if isinstance(data.get("civitai"), dict) else {}
            fields = _civitai_fields(civitai)
            fields["title"] = data.get("model_name") or data.get("name") or fields["title"]
            fields["base_model"] = data.get("base_model") or data.get("baseModel") or fields["base_model"]
            fields["tags"] += _as_tag_list(data.get("tags"))
            fields["trained_words"] += _as_tag_list(data.get("trainedWords") or data.get("trained_words"))
        info["title"] = info["title"] or fields["title"]
        info["base_model"] = info["base_model"] or fields["base_model"]
        info["tags"] += fields["tags"]
        info["trained_words"] += fields["trained_words"]

    webui = _load_json(stem + ".json") if os.path.isfile(stem + ".json") else None
    if isinstance(webui, dict):
        info["activation_text"] = webui.get("activation text") or None
        info["base_model"] = info["base_model"] or webui.get("sd version") or None

    info["tags"] = list(dict.fromkeys(info["tags"]))
    info["trained_words"] = list(dict.fromkeys(info["trained_words"]))
    info["preview"] = find_preview(lora_path)
    return info

"""Learned models shipped inside the package, one folder per base-model family.

Models load from ``lora_embedding/models/<folder>/`` with no network access,
on the CPU, once per process and only when first asked for, so importing the
package never imports torch. A family without a bundled model, a missing
torch, or an unreadable bundled model all give None, and the caller embeds
through the training-free path.
"""

import logging
import threading
from pathlib import Path

from .errors import ModelError

logger = logging.getLogger(__name__)

__all__ = ["BUNDLED_FOLDERS", "bundled_model_path", "load_bundled_model"]

BUNDLED_FOLDERS = {"SD1.x": "sd1"}
"""Family to model folder under ``lora_embedding/models``."""

_MODELS_ROOT = Path(__file__).resolve().parent / "models"
_cache = {}
_lock = threading.Lock()


def bundled_model_path(family):
    """Return the folder of the bundled model for ``family``, or None when there is none."""
    folder = BUNDLED_FOLDERS.get(family)
    if folder is None:
        return None
    path = _MODELS_ROOT / folder
    return path if (path / "config.json").is_file() else None


def _load(family, path):
    try:
        import torch  # noqa: F401  (only checks that torch is installed)
    except ImportError:
        logger.warning("torch is not installed, so %s LoRAs use the training-free embedding", family)
        return None

    from .model_io import load_model

    try:
        model = load_model(path)
    except ModelError as exc:
        logger.error("bundled model for %s cannot be used, falling back to the training-free embedding: %s", family, exc)
        return None
    if model.family != family:
        logger.error("bundled model in %s is for %s, not %s; ignoring it", path, model.family, family)
        return None
    logger.info("loaded bundled model %s from %s", model.model_id, path)
    return model


def load_bundled_model(family):
    """Return the bundled learned model for ``family``, or None.

    Parameters
    ----------
    family : str
        A base-model family such as ``SD1.x``.

    Returns
    -------
    LearnedModel or None
        None for a family without a bundled model, when torch is missing,
        or when the bundled files cannot be loaded (logged as an error).
    """
    path = bundled_model_path(family)
    if path is None:
        return None
    with _lock:
        if family not in _cache:
            _cache[family] = _load(family, path)
        return _cache[family]

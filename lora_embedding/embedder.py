"""Turn a LoRA file into one embedding vector.

A family with a bundled learned model (PCA and Transformer encoder) embeds
through it; every other family embeds through the training-free
:class:`~lora_embedding.pooling.SketchPooling`. Every :class:`Embedding`
records which path produced it.
"""

import logging
from dataclasses import dataclass

import numpy as np

from .features import extract_features
from .pooling import SketchPooling

logger = logging.getLogger(__name__)

__all__ = ["Embedder", "Embedding"]


@dataclass
class Embedding:
    """The embedding of one LoRA.

    Attributes
    ----------
    vector : ndarray of shape (dim,), float32
        Unit length, or all zeros for a LoRA with no computable update.
    family : str
    model_id : str
        The model and version that produced the vector, e.g. ``sketch-pooling-v2``.
    kind : str
        ``learned`` (a bundled encoder) or ``training-free``.
    """

    vector: np.ndarray
    family: str
    model_id: str
    kind: str

    @property
    def dim(self):
        """Length of the vector."""
        return int(self.vector.shape[0])

    def to_json(self):
        """Return the fields the CLI prints: family, model, dim, vector."""
        return {
            "family": self.family,
            "model": {"id": self.model_id, "kind": self.kind},
            "dim": self.dim,
            "vector": [round(float(x), 7) for x in self.vector],
        }


def _load_learned_model(family):
    """Return the bundled learned model for ``family``, or None when there is none."""
    try:
        from .bundled import load_bundled_model
    except ImportError:
        return None
    return load_bundled_model(family)


class Embedder:
    """Embed LoRAs with the best model available for their family.

    Parameters
    ----------
    use_learned : bool, default=True
        Use bundled learned models where a family has one; when False every
        family uses the training-free path.
    """

    def __init__(self, use_learned=True):
        self.use_learned = use_learned
        self._models = {}

    def model_for(self, family):
        """Return the model that embeds ``family`` (loaded once, then cached)."""
        if family not in self._models:
            model = _load_learned_model(family) if self.use_learned else None
            if model is None:
                model = SketchPooling(family)
            else:
                logger.info("using bundled model %s for %s", model.model_id, family)
            self._models[family] = model
        return self._models[family]

    def model_id(self, family):
        """Return the id of the model that embeds ``family``."""
        return self.model_for(family).model_id

    def embed_features(self, features):
        """Return the :class:`Embedding` of precomputed features."""
        model = self.model_for(features.family)
        vector = np.asarray(model.transform(features), dtype=np.float32)
        return Embedding(vector, features.family, model.model_id, model.kind)

    def embed_lora(self, lora_file):
        """Return the :class:`Embedding` of a file read by ``read_lora``."""
        return self.embed_features(extract_features(lora_file))

    def embed_path(self, path):
        """Read a LoRA file and return its :class:`Embedding`.

        Raises
        ------
        LoraReadError
            When the file cannot be read as a LoRA.
        """
        from .reader import read_lora

        return self.embed_lora(read_lora(path))

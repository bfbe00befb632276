"""The learned embedding: PCA module tokens fed to a Transformer encoder.

Each module of a LoRA is one input position. Its Gram-sketch token
(:mod:`lora_embedding.features`) is projected by a PCA fitted per family
(applied as a fixed linear map), concatenated with its scale-free spectrum
and mapped to ``d_model``. An embedding of the module id (from the module
vocabulary in the config, with one shared "unknown" entry) and of the module's
scale-free magnitude stand in for position embeddings, because modules have
identities rather than an order. A pre-LayerNorm Transformer encoder attends
over the present modules only, attention pooling reduces them to one vector,
and a linear layer maps it to ``output_size``.

The output concatenates a unit-length training-free skip vector (the signed
random pooling of :mod:`lora_embedding.pooling`, with ``SKIP_SIZE``
dimensions) weighted by ``cos θ`` with
the unit-length learned vector weighted by ``sin θ``, so the cosine of two
outputs is ``cos²θ · pooled cosine + sin²θ · learned cosine``. The pooled
part carries the exact Gram structure that a model trained on a few dozen
LoRAs cannot learn on its own. ``sin²θ`` is ``learned_share`` in the config,
kept fixed unless training is configured to train it (``train_share``).

Every input is a function of the output-side Gram of each module and is
normalised per module, so the embedding does not change with the rank, the
factorization, the dialect or a global rescaling of the LoRA.
"""

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .errors import ModelError
from .features import SPECTRUM_SIZE, TOKEN_SIZE
from .pooling import signed_pool, unit

logger = logging.getLogger(__name__)

__all__ = ["SKIP_SIZE", "EncoderConfig", "LearnedModel", "LoraEncoder", "make_batch", "skip_vector"]

SKIP_SIZE = 4096
"""Length of the training-free skip vector. Its noise falls as ``1/sqrt(size)``: on
the SD1.x corpus 1024 dimensions gave cross-run mAP 0.90 and 4096 gave 1.00."""

# Magnitude-profile values (natural-log ratios to the mean module norm) are
# clipped to this range so one extreme module cannot dominate its input.
PROFILE_CLIP = 8.0


@dataclass
class EncoderConfig:
    """Architecture and input description of one learned model.

    Attributes
    ----------
    family : str
        The base-model family whose LoRAs the model embeds.
    module_vocabulary : list of str
        Module ids with their own embedding; every other id shares entry 0.
    token_size, spectrum_size, pooled_size : int
        Input sizes; they must match the feature code that computes inputs.
    pca_size : int
        Components of the per-family PCA of module tokens.
    d_model, layers, heads, feedforward : int
        Transformer width, depth, attention heads and feed-forward width.
    dropout : float
        Dropout inside the Transformer during training.
    output_size : int
        Length of the learned part of the output.
    learned_share : float
        ``sin²θ``, the weight of the learned cosine in the output cosine. On the
        SD1.x corpus 0.25 gave an in-sample cross-run mAP of 0.95 and 0.1 gave 0.99.
    """

    family: str
    module_vocabulary: list = field(default_factory=list)
    token_size: int = TOKEN_SIZE
    spectrum_size: int = SPECTRUM_SIZE
    pooled_size: int = SKIP_SIZE
    pca_size: int = 64
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    feedforward: int = 512
    dropout: float = 0.1
    output_size: int = 128
    learned_share: float = 0.1

    @property
    def dim(self):
        """Length of the output vector."""
        return self.pooled_size + self.output_size

    def to_dict(self):
        """Return the config as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build a config from :meth:`to_dict` output.

        Raises
        ------
        ModelError
            When a field is unknown or the family is missing.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelError(f"unknown encoder config fields {unknown}; the model needs a newer lora_embedding")
        if "family" not in values:
            raise ModelError("the encoder config has no 'family' field")
        return cls(**values)


class LoraEncoder(nn.Module):
    """Map a padded batch of module tokens to unit-length embeddings.

    Parameters
    ----------
    config : EncoderConfig
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.register_buffer("pca_mean", torch.zeros(config.token_size))
        self.register_buffer("pca_components", torch.zeros(config.pca_size, config.token_size))

        self.input_projection = nn.Linear(config.pca_size + config.spectrum_size, config.d_model)
        self.module_embedding = nn.Embedding(len(config.module_vocabulary) + 1, config.d_model)
        self.magnitude_projection = nn.Linear(1, config.d_model)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.heads, config.feedforward, config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(config.d_model)
        self.pool_score = nn.Linear(config.d_model, 1)
        self.output_projection = nn.Linear(config.d_model, config.output_size)

        share = min(max(config.learned_share, 1e-4), 1 - 1e-4)
        self.share_logit = nn.Parameter(torch.tensor(float(np.log(share / (1 - share)))))

    def set_pca(self, mean, components):
        """Store a fitted PCA: ``mean`` of shape (token_size,), ``components`` (pca_size, token_size)."""
        with torch.no_grad():
            self.pca_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.pca_components.copy_(torch.as_tensor(components, dtype=torch.float32))

    def learned_share(self):
        """Return ``sin²θ``, the weight of the learned cosine in the output cosine."""
        return torch.sigmoid(self.share_logit)

    def forward(self, batch):
        """Return unit-length embeddings of shape (batch, pooled_size + output_size).

        ``batch`` is the dict :func:`make_batch` returns. A LoRA with no
        present module gets the zero vector.
        """
        mask = batch["mask"]
        projected = (batch["tokens"] - self.pca_mean) @ self.pca_components.T
        inputs = torch.cat([projected, batch["spectra"]], dim=-1)
        hidden = self.input_projection(inputs)
        hidden = hidden + self.module_embedding(batch["module_index"])
        hidden = hidden + self.magnitude_projection(batch["profile"].unsqueeze(-1))

        # A LoRA with no module would make every attention row empty (NaN),
        # so one padding position is unmasked for it and its output zeroed.
        empty = ~mask.any(dim=1)
        attention_mask = mask.clone()
        attention_mask[empty, 0] = True
        hidden = self.transformer(hidden, src_key_padding_mask=~attention_mask)
        hidden = self.final_norm(hidden)

        scores = self.pool_score(hidden).squeeze(-1).masked_fill(~attention_mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        pooled_hidden = torch.einsum("bl,bld->bd", weights, hidden)
        learned = nn.functional.normalize(self.output_projection(pooled_hidden), dim=-1)

        share = self.learned_share()
        output = torch.cat([torch.sqrt(1 - share) * batch["pooled"], torch.sqrt(share) * learned], dim=-1)
        output = nn.functional.normalize(output, dim=-1)
        return output.masked_fill(empty.unsqueeze(-1), 0.0)


def _module_rows(features, vocabulary_index):
    present = np.isfinite(features.log_norms)
    rows = np.flatnonzero(present)
    indices = [vocabulary_index.get(features.module_ids[row], 0) for row in rows]
    return rows, np.asarray(indices, dtype=np.int64)


def skip_vector(features, size=SKIP_SIZE):
    """Return the unit-length signed random pooling of a LoRA's tokens with ``size`` dimensions."""
    return unit(signed_pool(features.tokens, features.module_ids, size, "gram-tokens"))


def make_batch(features_list, vocabulary_index, pooled=None, pooled_size=SKIP_SIZE):
    """Pad the features of several LoRAs into one batch of tensors.

    Parameters
    ----------
    features_list : list of LoraFeatures
    vocabulary_index : dict of str to int
        Module id to embedding row (1-based; 0 is the unknown entry).
    pooled : ndarray of shape (len(features_list), pooled_size), optional
        Precomputed skip vectors; computed here when omitted.
    pooled_size : int
        Length of the skip vectors.

    Returns
    -------
    dict of str to Tensor
        ``tokens``, ``spectra``, ``profile``, ``module_index``, ``mask``
        (True at present modules) and ``pooled``. Modules with a zero
        update are left out.
    """
    count = len(features_list)
    selected = [_module_rows(features, vocabulary_index) for features in features_list]
    length = max([1] + [len(rows) for rows, _ in selected])

    tokens = np.zeros((count, length, TOKEN_SIZE), dtype=np.float32)
    spectra = np.zeros((count, length, SPECTRUM_SIZE), dtype=np.float32)
    profile = np.zeros((count, length), dtype=np.float32)
    module_index = np.zeros((count, length), dtype=np.int64)
    mask = np.zeros((count, length), dtype=bool)
    for position, (features, (rows, indices)) in enumerate(zip(features_list, selected)):
        size = len(rows)
        tokens[position, :size] = features.tokens[rows]
        spectra[position, :size] = features.spectra[rows]
        profile[position, :size] = np.clip(features.magnitude_profile()[rows], -PROFILE_CLIP, PROFILE_CLIP)
        module_index[position, :size] = indices
        mask[position, :size] = True

    if pooled is None:
        pooled = np.zeros((count, pooled_size), dtype=np.float32)
        for position, features in enumerate(features_list):
            pooled[position] = skip_vector(features, pooled_size)
    return {
        "tokens": torch.from_numpy(tokens),
        "spectra": torch.from_numpy(spectra),
        "profile": torch.from_numpy(profile),
        "module_index": torch.from_numpy(module_index),
        "mask": torch.from_numpy(mask),
        "pooled": torch.as_tensor(np.asarray(pooled, dtype=np.float32)),
    }


class LearnedModel:
    """A trained encoder with its config: the object the embedder calls.

    Parameters
    ----------
    encoder : LoraEncoder
    model_id : str
        Stored with every embedding, e.g. ``sd1-encoder-v1``; a new id makes
        the library re-embed.
    info : dict, optional
        The rest of the saved config (training description, metrics).
    """

    kind = "learned"

    def __init__(self, encoder, model_id, info=None):
        self.encoder = encoder.eval()
        self.config = encoder.config
        self.model_id = model_id
        self.family = encoder.config.family
        self.dim = encoder.config.dim
        self.info = dict(info or {})
        self._vocabulary_index = {m: i + 1 for i, m in enumerate(self.config.module_vocabulary)}

    @property
    def vocabulary_index(self):
        """Module id to embedding row (0 is the unknown entry)."""
        return self._vocabulary_index

    def transform_many(self, features_list, batch_size=16):
        """Return the unit float32 embeddings of several LoRAs as an array (n, dim).

        Raises
        ------
        ModelError
            When a LoRA is of another family than the model.
        """
        for features in features_list:
            if features.family != self.family:
                raise ModelError(
                    f"model {self.model_id} embeds {self.family} LoRAs, not {features.family}; "
                    "use the training-free path for this family"
                )
        vectors = np.zeros((len(features_list), self.dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(features_list), batch_size):
                chunk = features_list[start:start + batch_size]
                batch = make_batch(chunk, self._vocabulary_index, pooled_size=self.config.pooled_size)
                vectors[start:start + len(chunk)] = self.encoder(batch).numpy()
        return vectors

    def transform(self, features):
        """Return the unit float32 embedding of one LoRA's features (zeros if it has no module)."""
        return self.transform_many([features])[0]

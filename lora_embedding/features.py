"""Rank- and factorization-invariant features of a LoRA, one token per module.

Trainers initialise the down factor of each module from their own random
seed and it moves little in training, so the input side of ΔW mostly records
the seed, while the output-side Gram ``G = ΔW ΔWᵀ`` records what was learned.
Every feature here is therefore a function of ``G`` only, computed through
the sketch ``Z = ΔWᵀ Ω`` with a fixed Gaussian ``Ω`` of shape ``(out, k)``:

- the token is the strictly upper triangle of ``S = Zᵀ Z = Ωᵀ G Ω``, scaled to
  unit length. For independent Gaussian columns ``ω_i``, ``ω_j`` (i ≠ j),
  ``E[(ω_iᵀ G_a ω_j)(ω_iᵀ G_b ω_j)] = ⟨G_a, G_b⟩_F``, so the dot product of two
  tokens estimates the cosine of the two Grams (the diagonal is left out
  because its expectation adds ``trace(G_a)·trace(G_b)``);
- the spectrum is the square root of the top eigenvalues of ``S``, scaled to
  unit length: a scale-free description of how many directions the module
  uses;
- the log-norm ``log ‖ΔW‖_F`` is kept apart: minus its mean over modules it is
  the scale-free magnitude profile.

Because ``Z`` depends on ΔW only, the features are identical for every
factorization, zero-padded rank and file dialect of the same update.
"""

from dataclasses import dataclass

import numpy as np

from .random_projections import sketch_matrix

SKETCH_WIDTH = 32
"""Columns of the output sketch Ω."""

TOKEN_SIZE = SKETCH_WIDTH * (SKETCH_WIDTH - 1) // 2
"""Length of one module token: the strict upper triangle of a ``SKETCH_WIDTH`` square."""

SPECTRUM_SIZE = 8
"""Number of leading singular values kept per module."""

_UPPER = np.triu_indices(SKETCH_WIDTH, k=1)

__all__ = [
    "LoraFeatures",
    "SKETCH_WIDTH",
    "SPECTRUM_SIZE",
    "TOKEN_SIZE",
    "extract_features",
    "features_from_sketches",
    "module_sketch",
]


@dataclass
class LoraFeatures:
    """Per-module features of one LoRA.

    Attributes
    ----------
    family : str
        The base-model family of the LoRA.
    module_ids : list of str
        Modules with a computable update, in the file's order.
    tokens : ndarray of shape (n_modules, TOKEN_SIZE), float32
        Unit-length Gram sketch tokens; a zero row for a zero update.
    spectra : ndarray of shape (n_modules, SPECTRUM_SIZE), float32
        Unit-length leading singular values of each module's update.
    log_norms : ndarray of shape (n_modules,), float64
        ``log ‖ΔW‖_F`` per module; ``-inf`` for a zero update.
    signatures : ndarray of shape (n_modules, SKETCH_WIDTH * SKETCH_WIDTH), float32
        The two-sided sketch ``Ω_outᵀ ΔW Ω_in`` of each update, unnormalised.
        Its dot products estimate ``⟨ΔW_a, ΔW_b⟩``, which (unlike the Gram)
        tells apart runs on the same data, so duplicate detection uses it.
    """

    family: str
    module_ids: list
    tokens: np.ndarray
    spectra: np.ndarray
    log_norms: np.ndarray
    signatures: np.ndarray = None

    def magnitude_profile(self):
        """Return the log-norms minus their mean over non-zero modules (scale-free)."""
        finite = np.isfinite(self.log_norms)
        profile = np.zeros_like(self.log_norms)
        if finite.any():
            profile[finite] = self.log_norms[finite] - self.log_norms[finite].mean()
        return profile

    def subset(self, module_ids):
        """Return the features of the given modules, in that order, skipping absent ones."""
        position = {module_id: i for i, module_id in enumerate(self.module_ids)}
        rows = [position[m] for m in module_ids if m in position]
        return LoraFeatures(
            family=self.family,
            module_ids=[self.module_ids[i] for i in rows],
            tokens=self.tokens[rows],
            spectra=self.spectra[rows],
            log_norms=self.log_norms[rows],
            signatures=None if self.signatures is None else self.signatures[rows],
        )


def module_sketch(record):
    """Return ``Z = ΔWᵀ Ω`` of shape ``(in, SKETCH_WIDTH)`` for one module record.

    ``Z`` is linear in ΔW, so the sketch of a mixture of LoRAs is the same
    mixture of their sketches.
    """
    omega = sketch_matrix(record.delta.out_features, SKETCH_WIDTH)
    return record.rmatmul(omega)


def _token_and_spectrum(sketch):
    gram = sketch.T @ sketch
    token = gram[_UPPER]
    token_norm = np.linalg.norm(token)
    if token_norm > 0:
        token = token / token_norm

    eigenvalues = np.linalg.eigvalsh(gram)[::-1][:SPECTRUM_SIZE]
    spectrum = np.sqrt(np.clip(eigenvalues, 0.0, None))
    spectrum_norm = np.linalg.norm(spectrum)
    if spectrum_norm > 0:
        spectrum = spectrum / spectrum_norm
    return token, spectrum


def _signature(sketch):
    omega_in = sketch_matrix(sketch.shape[0], SKETCH_WIDTH)
    return (omega_in.T @ sketch).ravel() / SKETCH_WIDTH


def features_from_sketches(family, module_ids, sketches, squared_norms):
    """Build :class:`LoraFeatures` from per-module sketches ``Z = ΔWᵀ Ω`` and ``‖ΔW‖²_F`` values."""
    count = len(module_ids)
    tokens = np.zeros((count, TOKEN_SIZE), dtype=np.float32)
    spectra = np.zeros((count, SPECTRUM_SIZE), dtype=np.float32)
    signatures = np.zeros((count, SKETCH_WIDTH * SKETCH_WIDTH), dtype=np.float32)
    for row, sketch in enumerate(sketches):
        tokens[row], spectra[row] = _token_and_spectrum(sketch)
        signatures[row] = _signature(sketch)

    with np.errstate(divide="ignore"):
        log_norms = 0.5 * np.log(np.asarray(squared_norms, dtype=np.float64))
    return LoraFeatures(family, list(module_ids), tokens, spectra, log_norms, signatures)


def extract_features(lora_file):
    """Compute the features of every module of a LoRA that has a computable update.

    Parameters
    ----------
    lora_file : LoraFile
        A file read by :func:`lora_embedding.reader.read_lora`.

    Returns
    -------
    LoraFeatures
        Modules whose update depends on the base weights (IA3, GLoRA, OFT)
        are left out; the reader reports them as findings.
    """
    module_ids, sketches, squared_norms = [], [], []
    for module_id, record in lora_file.modules.items():
        if record.delta is None or len(record.delta.shape) < 2:
            continue
        sketch = module_sketch(record)
        module_ids.append(module_id)
        sketches.append(sketch)
        squared_norms.append(record.squared_norm())
    return features_from_sketches(lora_file.family, module_ids, sketches, squared_norms)

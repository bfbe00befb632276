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

import contextlib
import functools
import threading
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
    "single_threaded_blas",
]

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with NumPy's BLAS limited to one thread, then restore the previous limit.

    The feature and pooling products are small (one side is ``SKETCH_WIDTH``
    wide), and OpenBLAS splitting each of them over threads made a whole
    SD1.5 file 10 times slower on a 2-core machine than one thread did
    (``benchmarks/run_benchmarks.py``). The indexer already runs one worker
    per CPU, so more BLAS threads would only oversubscribe the cores.
    Nested and concurrent uses are counted, so the limit is restored only
    when the last user leaves.

    NOTE: the limit is process-wide while any block runs, so inside a host
    application other threads' NumPy products are single-threaded meanwhile.
    Without threadpoolctl (a scikit-learn dependency) the block runs unchanged.
    """
    global _blas_users, _blas_limiter

    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = _limit_blas_threads()
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def _limit_blas_threads():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")


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
        distinguishes runs on the same data, so duplicate detection uses it.
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


def _products_from_sketch(sketch):
    """Return ``(S, Ω_inᵀ Z)`` of one sketch ``Z = ΔWᵀ Ω``, each ``SKETCH_WIDTH`` square."""
    omega_in = sketch_matrix(sketch.shape[0], SKETCH_WIDTH)
    return sketch.T @ sketch, omega_in.T @ sketch


@functools.lru_cache(maxsize=64)
def _sketch_matrix_float32(rows):
    matrix = np.ascontiguousarray(sketch_matrix(rows, SKETCH_WIDTH), dtype=np.float32)
    matrix.setflags(write=False)
    return matrix


def _products_from_factors(record, up, down):
    """Return ``(S, Ω_inᵀ Z, ‖ΔW‖²_F)`` of one module from its factors ``ΔW = scale · up @ down``.

    With ``Y = upᵀ Ω`` (rank × width) the sketch is ``Z = scale · downᵀ Y``, so
    ``S = ZᵀZ = scale² · Yᵀ (down downᵀ) Y`` and ``Ω_inᵀ Z = scale · (down Ω_in)ᵀ Y``.
    This never forms ``Z`` (in × width) and shares ``down downᵀ`` with the
    norm, which saves two products over the long ``in`` side per module.
    The long products run in float32, which halves their time. The results
    differ from float64 by float32 rounding only (embedding cosines above
    0.99999). The small rank-sized products run in float64.
    """
    scale = record.scale
    up = up.astype(np.float32)
    down = down.astype(np.float32)

    projected_up = (up.T @ _sketch_matrix_float32(up.shape[0])).astype(np.float64)
    projected_down = (down @ _sketch_matrix_float32(down.shape[1])).astype(np.float64)
    up_gram = (up.T @ up).astype(np.float64)
    down_gram = (down @ down.T).astype(np.float64)

    squared_norm = scale * scale * float(np.sum(up_gram * down_gram))
    gram = (scale * scale) * (projected_up.T @ down_gram @ projected_up)
    two_sided = scale * (projected_down.T @ projected_up)
    return gram, two_sided, squared_norm


def _module_products(record):
    """Return ``(S, Ω_inᵀ Z, ‖ΔW‖²_F)`` of one module, from its factors when it has them."""
    factors = record.delta.factors()
    if factors is not None:
        return _products_from_factors(record, *factors)

    gram, two_sided = _products_from_sketch(module_sketch(record))
    return gram, two_sided, record.squared_norm()


def _unit_rows(rows):
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def _finish_features(family, module_ids, grams, two_sided, squared_norms):
    """Build :class:`LoraFeatures` from stacked ``S`` and ``Ω_inᵀ Z`` matrices of all modules at once."""
    count = len(module_ids)
    if count == 0:
        grams = np.zeros((0, SKETCH_WIDTH, SKETCH_WIDTH))
        two_sided = np.zeros((0, SKETCH_WIDTH, SKETCH_WIDTH))

    tokens = _unit_rows(grams[:, _UPPER[0], _UPPER[1]])

    # eigvalsh sorts ascending, so the leading values are the last columns.
    eigenvalues = np.linalg.eigvalsh(grams)[:, ::-1][:, :SPECTRUM_SIZE]
    spectra = _unit_rows(np.sqrt(np.clip(eigenvalues, 0.0, None)))

    signatures = two_sided.reshape(count, SKETCH_WIDTH * SKETCH_WIDTH) / SKETCH_WIDTH
    with np.errstate(divide="ignore"):
        log_norms = 0.5 * np.log(np.asarray(squared_norms, dtype=np.float64).reshape(count))
    return LoraFeatures(
        family,
        list(module_ids),
        tokens.astype(np.float32),
        spectra.astype(np.float32),
        log_norms,
        signatures.astype(np.float32),
    )


def features_from_sketches(family, module_ids, sketches, squared_norms):
    """Build :class:`LoraFeatures` from per-module sketches ``Z = ΔWᵀ Ω`` and ``‖ΔW‖²_F`` values."""
    products = [_products_from_sketch(sketch) for sketch in sketches]
    grams = np.array([gram for gram, _ in products])
    two_sided = np.array([pair for _, pair in products])
    return _finish_features(family, module_ids, grams, two_sided, squared_norms)


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
    module_ids, grams, two_sided, squared_norms = [], [], [], []
    with single_threaded_blas():
        for module_id, record in lora_file.modules.items():
            if record.delta is None or len(record.delta.shape) < 2:
                continue
            gram, pair, squared_norm = _module_products(record)
            module_ids.append(module_id)
            grams.append(gram)
            two_sided.append(pair)
            squared_norms.append(squared_norm)
        return _finish_features(lora_file.family, module_ids, np.array(grams), np.array(two_sided), squared_norms)

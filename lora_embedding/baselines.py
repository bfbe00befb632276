"""Reference similarities and baselines the learned embedding is compared with.

- :class:`GramReference`: the exact output-side Gram cosine, averaged over
  the modules two LoRAs share, computed from one thin factor ``L`` per module
  with ``L Lᵀ = ΔW ΔWᵀ`` so that each LoRA is factored once and every pair
  costs ``O(out · r_a · r_b)`` per module;
- :func:`delta_cosine_matrix`: the exact cosine of the whole updates ΔW;
- :class:`RawFactorPCA`: the research method's input, the flattened stored
  factors of each module compressed by a per-module PCA, which is not
  invariant to the factorization;
- :func:`random_similarity`: random unit vectors, the chance level.
"""

import logging

import numpy as np

from .canonical import KroneckerDelta, LowRankDelta
from .similarity import delta_inner

logger = logging.getLogger(__name__)

__all__ = ["GramReference", "RawFactorPCA", "delta_cosine_matrix", "output_factor", "random_similarity"]

# Singular values below this fraction of the largest are dropped from thin factors.
_RELATIVE_TOLERANCE = 1e-10


def _thin_left(matrix):
    """Return ``L`` with ``L Lᵀ = M Mᵀ`` and as few columns as the rank of ``M``."""
    if matrix.shape[0] <= matrix.shape[1]:
        values, vectors = np.linalg.eigh(matrix @ matrix.T)
        keep = values > _RELATIVE_TOLERANCE * max(values[-1], 1e-300)
        return vectors[:, keep] * np.sqrt(values[keep])
    left, singular, _ = np.linalg.svd(matrix, full_matrices=False)
    keep = singular > _RELATIVE_TOLERANCE * max(singular[0], 1e-300)
    return left[:, keep] * singular[keep]


class KroneckerFactor:
    """``L = L1 ⊗ L2`` kept as its two factors, for LoKr updates ``w1 ⊗ w2``."""

    def __init__(self, first, second):
        self.first = first
        self.second = second

    @property
    def rows(self):
        """Rows of the first and second factor."""
        return self.first.shape[0], self.second.shape[0]

    def dense(self):
        """Form ``L1 ⊗ L2``."""
        return np.kron(self.first, self.second)

    def transpose_times(self, matrix):
        """Return ``(L1 ⊗ L2)ᵀ @ matrix`` without forming the Kronecker product."""
        columns = matrix.shape[1]
        blocks = matrix.T.reshape(columns, self.first.shape[0], self.second.shape[0])
        product = self.first.T @ blocks @ self.second
        return product.reshape(columns, -1).T


def output_factor(record):
    """Return a thin ``L`` with ``L Lᵀ = ΔW ΔWᵀ`` for one module record.

    Low-rank updates ``U V`` give ``L = U Rᵀ`` from the QR ``Vᵀ = Q R``; a LoKr
    update ``w1 ⊗ w2`` gives a :class:`KroneckerFactor` ``L(w1) ⊗ L(w2)``;
    other updates are formed densely and factored.
    """
    factors = record.factors()
    if factors is not None:
        up, down = factors
        _, triangular = np.linalg.qr(down.T)
        return up @ triangular.T
    if isinstance(record.delta, KroneckerDelta):
        return KroneckerFactor(record.scale * _thin_left(record.delta.w1), _thin_left(record.delta.w2))
    return _thin_left(record.dense())


def _squared_cross_norm(left_a, left_b):
    """Return ``‖L_aᵀ L_b‖²_F = ⟨ΔW_a ΔW_aᵀ, ΔW_b ΔW_bᵀ⟩`` for dense or Kronecker factors."""
    kron_a = isinstance(left_a, KroneckerFactor)
    kron_b = isinstance(left_b, KroneckerFactor)
    if kron_a and kron_b and left_a.rows == left_b.rows:
        first = left_a.first.T @ left_b.first
        second = left_a.second.T @ left_b.second
        return float(np.sum(first * first) * np.sum(second * second))
    if kron_a and kron_b:
        left_b = left_b.dense()
        kron_b = False
    if kron_a:
        cross = left_a.transpose_times(left_b)
    elif kron_b:
        cross = left_b.transpose_times(left_a)
    else:
        cross = left_a.T @ left_b
    return float(np.sum(cross * cross))


class GramReference:
    """Exact output-side Gram cosines between many LoRAs.

    Parameters
    ----------
    loras : list of LoraFile
    """

    def __init__(self, loras):
        self.factors = []
        for lora in loras:
            per_module = {}
            for module_id, record in lora.modules.items():
                if record.delta is None or len(record.delta.shape) < 2:
                    continue
                left = output_factor(record)
                per_module[module_id] = (record.shape, left, _squared_cross_norm(left, left))
            self.factors.append(per_module)

    def cosine(self, i, j):
        """Return the Gram cosine of LoRAs ``i`` and ``j`` averaged over shared modules (0.0 if none)."""
        first, second = self.factors[i], self.factors[j]
        cosines = []
        for module_id, (shape, left_a, norm_a) in first.items():
            other = second.get(module_id)
            if other is None or other[0] != shape:
                continue
            _, left_b, norm_b = other
            denominator = np.sqrt(norm_a * norm_b)
            cosines.append(0.0 if denominator == 0 else _squared_cross_norm(left_a, left_b) / denominator)
        return float(np.mean(cosines)) if cosines else 0.0

    def matrix(self):
        """Return the symmetric cosine matrix over all LoRAs (ones on the diagonal of non-empty LoRAs)."""
        count = len(self.factors)
        result = np.zeros((count, count))
        for i in range(count):
            for j in range(i, count):
                result[i, j] = result[j, i] = self.cosine(i, j)
        return result


def _kron_low_rank_inner(kron, up, down):
    """Return ``⟨w1 ⊗ w2, U V⟩`` as ``Σ_k ⟨U_k, w1 V_k w2ᵀ⟩`` with ``u_k``, ``v_k`` reshaped to blocks."""
    a, b = kron.w1.shape
    c, d = kron.w2.shape
    up_blocks = up.T.reshape(-1, a, c)
    down_blocks = down.reshape(-1, b, d)
    mapped = kron.w1 @ down_blocks @ kron.w2.T
    return float(np.sum(up_blocks * mapped))


def _module_inner(record_a, record_b):
    """Return ``⟨ΔW_a, ΔW_b⟩``, using the Kronecker structure of LoKr updates where it helps."""
    kron_a = isinstance(record_a.delta, KroneckerDelta)
    kron_b = isinstance(record_b.delta, KroneckerDelta)
    if kron_a and kron_b and record_a.delta.w1.shape == record_b.delta.w1.shape:
        first = np.sum(record_a.delta.w1 * record_b.delta.w1)
        second = np.sum(record_a.delta.w2 * record_b.delta.w2)
        return float(record_a.scale * record_b.scale * first * second)
    if kron_b and not kron_a:
        record_a, record_b = record_b, record_a
        kron_a, kron_b = True, False
    factors_b = record_b.factors()
    if kron_a and factors_b is not None:
        return record_a.scale * _kron_low_rank_inner(record_a.delta, *factors_b)
    return delta_inner(record_a, record_b)


def delta_cosine_matrix(loras):
    """Return the matrix of exact cosines of the whole updates ΔW (all modules concatenated)."""
    norms = []
    for lora in loras:
        total = 0.0
        for record in lora.modules.values():
            if record.delta is not None and len(record.delta.shape) >= 2:
                total += _module_inner(record, record)
        norms.append(total)

    count = len(loras)
    result = np.zeros((count, count))
    for i in range(count):
        for j in range(i, count):
            inner = 0.0
            for module_id, record in loras[i].modules.items():
                other = loras[j].modules.get(module_id)
                if record.delta is None or other is None or other.delta is None or other.shape != record.shape:
                    continue
                inner += _module_inner(record, other)
            denominator = np.sqrt(norms[i] * norms[j])
            result[i, j] = result[j, i] = 0.0 if denominator == 0 else inner / denominator
    return result


class RawFactorPCA:
    """The research method's input: flattened stored factors, compressed by a PCA per module.

    Each module's stored ``up`` and ``down`` factors (scale folded into
    ``up``) are padded or truncated to ``rank`` columns, flattened and
    concatenated. A PCA per module fitted on the given LoRAs reduces each to
    at most ``components`` values, and a LoRA's vector concatenates its
    modules (zeros for absent or non-factored modules). Refactorizing a LoRA
    changes this vector although ΔW does not change.

    Parameters
    ----------
    rank : int
    components : int
    """

    def __init__(self, rank=4, components=16):
        self.rank = rank
        self.components = components
        self.modules = {}

    def _flatten(self, record):
        if not isinstance(record.delta, LowRankDelta):
            return None
        up, down = record.factors()
        padded_up = np.zeros((up.shape[0], self.rank))
        padded_down = np.zeros((self.rank, down.shape[1]))
        width = min(self.rank, up.shape[1])
        padded_up[:, :width] = up[:, :width]
        padded_down[:width] = down[:width]
        return np.concatenate([padded_up.ravel(), padded_down.ravel()])

    def fit(self, loras):
        """Fit one PCA per module id over the LoRAs that store it as factors."""
        rows = {}
        for lora in loras:
            for module_id, record in lora.modules.items():
                flat = self._flatten(record)
                if flat is not None:
                    rows.setdefault((module_id, flat.size), []).append(flat)
        for key, vectors in sorted(rows.items()):
            stacked = np.stack(vectors)
            mean = stacked.mean(axis=0)
            centered = stacked - mean
            # The principal axes from the small (files × files) Gram matrix.
            values, vectors_small = np.linalg.eigh(centered @ centered.T)
            order = np.argsort(values)[::-1][:self.components]
            order = order[values[order] > _RELATIVE_TOLERANCE * max(values.max(), 1e-300)]
            basis = (vectors_small[:, order].T @ centered) / np.sqrt(values[order])[:, None]
            self.modules[key] = (mean, basis)
        return self

    def transform(self, lora):
        """Return the concatenated PCA coefficients of ``lora``, in the order of the fitted modules."""
        parts = []
        for (module_id, size), (mean, basis) in self.modules.items():
            record = lora.modules.get(module_id)
            flat = None if record is None else self._flatten(record)
            part = np.zeros(self.components)
            if flat is not None and flat.size == size:
                part[:basis.shape[0]] = basis @ (flat - mean)
            parts.append(part)
        return np.concatenate(parts) if parts else np.zeros(0)


def random_similarity(count, seed, size=256):
    """Return the cosine matrix of ``count`` random unit vectors (the chance level)."""
    vectors = np.random.default_rng(seed).standard_normal((count, size))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors @ vectors.T

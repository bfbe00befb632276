"""Exact similarities between LoRAs, computed in factored form.

These are the references the learned embedding is measured against, and the
"exact" search mode for small libraries.

For two modules with ``ΔW_a = U_a V_a`` and ``ΔW_b = U_b V_b``:

- ``⟨ΔW_a, ΔW_b⟩_F = trace((U_aᵀ U_b)(V_b V_aᵀ))``, in O(r_a·r_b·(out + in));
- the output-side Grams ``G = ΔW ΔWᵀ`` satisfy
  ``⟨G_a, G_b⟩_F = ‖ΔW_aᵀ ΔW_b‖²_F = trace(Mᵀ (V_a V_aᵀ) M (V_b V_bᵀ))`` with
  ``M = U_aᵀ U_b``.

Modules without a thin factorization (LoHa, LoKr, full diffs) go through
their operators' ``matmul``/``rmatmul`` or, for two such modules, through the
dense update.
"""

import numpy as np

from .canonical import KroneckerDelta

__all__ = [
    "delta_cosine",
    "delta_inner",
    "gram_cosine",
    "gram_inner",
    "module_delta_cosines",
    "module_gram_cosines",
]


def _wide_factors(record):
    """Return the record's factors in float64, or None."""
    factors = record.factors()
    if factors is None:
        return None
    return tuple(np.asarray(matrix, dtype=np.float64) for matrix in factors)


def _wide_dense(record):
    return np.asarray(record.dense(), dtype=np.float64)


def _kronecker_pair(record_a, record_b):
    """Return the float64 Kronecker factors of two LoKr records with matching factor shapes, or None."""
    delta_a, delta_b = record_a.delta, record_b.delta
    if not (isinstance(delta_a, KroneckerDelta) and isinstance(delta_b, KroneckerDelta)):
        return None
    if delta_a.w1.shape != delta_b.w1.shape or delta_a.w2.shape != delta_b.w2.shape:
        return None
    wide = [np.asarray(m, dtype=np.float64) for m in (delta_a.w1, delta_a.w2, delta_b.w1, delta_b.w2)]
    return wide, record_a.scale * record_b.scale


def delta_inner(record_a, record_b):
    """Return the Frobenius inner product ``⟨ΔW_a, ΔW_b⟩`` of two module records, summed in float64."""
    kronecker = _kronecker_pair(record_a, record_b)
    if kronecker is not None:
        # ⟨A⊗B, C⊗D⟩ = ⟨A, C⟩·⟨B, D⟩
        (w1_a, w2_a, w1_b, w2_b), scale = kronecker
        return float(scale * np.sum(w1_a * w1_b) * np.sum(w2_a * w2_b))

    factors_a = _wide_factors(record_a)
    factors_b = _wide_factors(record_b)

    if factors_a is not None and factors_b is not None:
        up_a, down_a = factors_a
        up_b, down_b = factors_b
        return float(np.sum((up_a.T @ up_b) * (down_a @ down_b.T)))

    if factors_b is not None:
        up_b, down_b = factors_b
        projected = np.asarray(record_a.rmatmul(up_b), dtype=np.float64)
        return float(np.sum(projected * down_b.T))

    if factors_a is not None:
        return delta_inner(record_b, record_a)

    return float(np.sum(_wide_dense(record_a) * _wide_dense(record_b)))


def gram_inner(record_a, record_b):
    """Return ``⟨ΔW_a ΔW_aᵀ, ΔW_b ΔW_bᵀ⟩ = ‖ΔW_aᵀ ΔW_b‖²_F`` for two module records, summed in float64."""
    kronecker = _kronecker_pair(record_a, record_b)
    if kronecker is not None:
        # (A⊗B)ᵀ(C⊗D) = (AᵀC)⊗(BᵀD), and ‖X⊗Y‖_F = ‖X‖_F·‖Y‖_F
        (w1_a, w2_a, w1_b, w2_b), scale = kronecker
        first = w1_a.T @ w1_b
        second = w2_a.T @ w2_b
        return float(scale * scale * np.sum(first * first) * np.sum(second * second))

    factors_a = _wide_factors(record_a)
    factors_b = _wide_factors(record_b)

    if factors_a is not None and factors_b is not None:
        up_a, down_a = factors_a
        up_b, down_b = factors_b
        middle = up_a.T @ up_b
        gram_down_a = down_a @ down_a.T
        gram_down_b = down_b @ down_b.T
        return float(np.sum((gram_down_a @ middle) * (middle @ gram_down_b)))

    if factors_b is not None:
        up_b, down_b = factors_b
        # ΔW_aᵀ ΔW_b = (ΔW_aᵀ U_b) V_b
        projected = np.asarray(record_a.rmatmul(up_b), dtype=np.float64)
        return float(np.sum((projected.T @ projected) * (down_b @ down_b.T)))

    if factors_a is not None:
        return gram_inner(record_b, record_a)

    cross = _wide_dense(record_a).T @ _wide_dense(record_b)
    return float(np.sum(cross * cross))


def _cosine(inner, norm_a_squared, norm_b_squared):
    denominator = np.sqrt(norm_a_squared * norm_b_squared)
    return 0.0 if denominator == 0 else float(inner / denominator)


def _comparable_modules(lora_a, lora_b):
    """Return the module ids both files adapt with a computable update."""
    shared = []
    for module_id, record in lora_a.modules.items():
        other = lora_b.modules.get(module_id)
        if other is None or record.delta is None or other.delta is None:
            continue
        if record.delta.shape != other.delta.shape:
            continue
        shared.append(module_id)
    return shared


def module_delta_cosines(lora_a, lora_b):
    """Return ``{module_id: cosine of ΔW}`` over the modules both LoRAs adapt."""
    cosines = {}
    for module_id in _comparable_modules(lora_a, lora_b):
        record_a = lora_a.modules[module_id]
        record_b = lora_b.modules[module_id]
        cosines[module_id] = _cosine(
            delta_inner(record_a, record_b),
            delta_inner(record_a, record_a),
            delta_inner(record_b, record_b),
        )
    return cosines


def module_gram_cosines(lora_a, lora_b):
    """Return ``{module_id: cosine of the output-side Grams}`` over shared modules."""
    cosines = {}
    for module_id in _comparable_modules(lora_a, lora_b):
        record_a = lora_a.modules[module_id]
        record_b = lora_b.modules[module_id]
        cosines[module_id] = _cosine(
            gram_inner(record_a, record_b),
            gram_inner(record_a, record_a),
            gram_inner(record_b, record_b),
        )
    return cosines


def delta_cosine(lora_a, lora_b):
    """Return the cosine of the two LoRAs' whole updates, all modules concatenated.

    Modules that only one LoRA adapts count in its norm, so a LoRA that
    adapts extra modules is less similar than one that adapts the same ones.
    """
    shared = _comparable_modules(lora_a, lora_b)
    inner = sum(delta_inner(lora_a.modules[m], lora_b.modules[m]) for m in shared)
    norm_a = sum(delta_inner(r, r) for r in lora_a.modules.values() if r.delta is not None)
    norm_b = sum(delta_inner(r, r) for r in lora_b.modules.values() if r.delta is not None)
    return _cosine(inner, norm_a, norm_b)


def gram_cosine(lora_a, lora_b):
    """Return the output-side Gram cosine averaged over the modules both LoRAs adapt.

    Returns 0.0 when the two LoRAs share no module.
    """
    cosines = module_gram_cosines(lora_a, lora_b)
    if not cosines:
        return 0.0
    return float(np.mean(list(cosines.values())))

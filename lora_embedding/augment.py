"""Transforms of canonical LoRAs, most of which keep every update ΔW.

The weight-preserving transforms (:data:`WEIGHT_PRESERVING`) change how ΔW
is stored but not ΔW itself, apart from rounding: refactorization by a
random invertible matrix, rank padding, SVD refactorization, an fp16 or bf16
round trip, alpha rescaling, and a rewrite in another file dialect. Global
scaling changes ΔW by a constant factor, which the embedding ignores by
design. Module dropout removes modules, so it only serves as a training
augmentation.

Each transform returns a new :class:`~lora_embedding.canonical.LoraFile`
and leaves its input unchanged. Modules without a thin factorization (LoHa,
LoKr, full diffs) are kept as they are by the factor-level transforms.
"""

import os

import numpy as np

from .canonical import FullDelta, LoraFile, LowRankDelta, ModuleRecord

__all__ = [
    "WEIGHT_PRESERVING",
    "cast_precision",
    "convert_dialect",
    "drop_modules",
    "pad_rank",
    "refactorize",
    "rescale_alpha",
    "round_to_bf16",
    "scale_global",
    "svd_refactorize",
]


def _copy_file(lora, modules, path_suffix):
    return LoraFile(
        path=f"{lora.path}#{path_suffix}",
        container=lora.container,
        format=lora.format,
        family=lora.family,
        modules=modules,
        stored_modules=len(modules),
        metadata=dict(lora.metadata),
        summary=dict(lora.summary),
    )


def _low_rank_record(record, up, down, scale=1.0, alpha=None):
    rank = up.shape[1]
    return ModuleRecord(
        record.module_id, "lora", LowRankDelta(up, down, record.shape),
        alpha=float(rank) if alpha is None else alpha, rank=rank, scale=scale,
        source_keys=record.source_keys,
    )


def _map_factored(lora, transform, path_suffix):
    """Apply ``transform(record, up, down) -> ModuleRecord`` to every factorable module."""
    modules = {}
    for module_id, record in lora.modules.items():
        factors = record.factors()
        modules[module_id] = record if factors is None else transform(record, *factors)
    return _copy_file(lora, modules, path_suffix)


def refactorize(lora, rng):
    """Return a copy with ``U → U·G`` and ``V → G⁻¹·V`` for a random invertible ``G`` per module."""

    def transform(record, up, down):
        rank = up.shape[1]
        # Two random rotations around a diagonal in [0.5, 2] keep G's condition number at most 4.
        left = np.linalg.qr(rng.standard_normal((rank, rank)))[0]
        right = np.linalg.qr(rng.standard_normal((rank, rank)))[0]
        mixing = left @ np.diag(rng.uniform(0.5, 2.0, rank)) @ right.T
        return _low_rank_record(record, up @ mixing, np.linalg.solve(mixing, down))

    return _map_factored(lora, transform, "refactorized")


def pad_rank(lora, rng, extra=4):
    """Return a copy with ``extra`` more rank: zero columns in ``U``, random rows in ``V``."""

    def transform(record, up, down):
        padded_up = np.hstack([up, np.zeros((up.shape[0], extra))])
        padded_down = np.vstack([down, rng.standard_normal((extra, down.shape[1])) * np.std(down)])
        return _low_rank_record(record, padded_up, padded_down)

    return _map_factored(lora, transform, "rank-padded")


def _thin_svd(up, down):
    left, left_r = np.linalg.qr(up)
    right, right_r = np.linalg.qr(down.T)
    core_u, singular, core_vt = np.linalg.svd(left_r @ right_r.T)
    return left @ core_u, singular, right @ core_vt.T


def svd_refactorize(lora, rank=None):
    """Return a copy stored as ``(U_s·diag(σ)) · V_sᵀ`` from the SVD of each update.

    Parameters
    ----------
    lora : LoraFile
    rank : int, optional
        Keep this many singular directions. None keeps the numerical rank
        (singular values above ``1e-10`` of the largest), which preserves ΔW
        up to rounding; a smaller rank truncates it.
    """

    def transform(record, up, down):
        left, singular, right = _thin_svd(up, down)
        if rank is None:
            keep = int(np.sum(singular > 1e-10 * max(singular[0], 1e-300))) if singular.size else 0
        else:
            keep = min(rank, singular.size)
        keep = max(keep, 1)
        return _low_rank_record(record, left[:, :keep] * singular[:keep], right[:, :keep].T)

    suffix = "svd" if rank is None else f"svd-rank-{rank}"
    return _map_factored(lora, transform, suffix)


def round_to_bf16(values):
    """Round float values to the nearest bfloat16 (ties to even), returned as float64."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounding = np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))
    rounded = ((bits + rounding) & np.uint64(0xFFFF0000)).astype(np.uint32)
    return rounded.view(np.float32).astype(np.float64)


def _cast(values, dtype):
    if dtype == "fp16":
        return np.asarray(values, dtype=np.float16).astype(np.float64)
    if dtype == "bf16":
        return round_to_bf16(values)
    raise ValueError(f"unsupported precision {dtype!r}; use 'fp16' or 'bf16'")


def cast_precision(lora, dtype):
    """Return a copy whose stored tensors went through a ``fp16`` or ``bf16`` round trip.

    The factors are rounded with the scale kept apart, as a file stores them.
    Full diffs are rounded as a whole; other modules are kept.
    """
    modules = {}
    for module_id, record in lora.modules.items():
        delta = record.delta
        if isinstance(delta, LowRankDelta):
            rounded = LowRankDelta(_cast(delta.up, dtype), _cast(delta.down, dtype), delta.shape)
            modules[module_id] = ModuleRecord(
                module_id, record.algorithm, rounded, alpha=record.alpha, rank=record.rank,
                scale=record.scale, source_keys=record.source_keys,
            )
        elif isinstance(delta, FullDelta):
            rounded = FullDelta(_cast(delta.matrix, dtype).reshape(delta.shape), delta.shape)
            modules[module_id] = ModuleRecord(module_id, "full", rounded, scale=record.scale, source_keys=record.source_keys)
        else:
            modules[module_id] = record
    return _copy_file(lora, modules, dtype)


def rescale_alpha(lora, factor):
    """Return a copy with ``alpha`` and the scale multiplied by ``factor`` and ``U`` divided by it (ΔW unchanged)."""

    def transform(record, up, down):
        rank = up.shape[1]
        return _low_rank_record(record, up / factor, down, scale=factor, alpha=factor * rank)

    return _map_factored(lora, transform, f"alpha-x{factor:g}")


def scale_global(lora, factor):
    """Return a copy with every update multiplied by ``factor`` (as a longer training run might give)."""
    modules = {}
    for module_id, record in lora.modules.items():
        modules[module_id] = ModuleRecord(
            module_id, record.algorithm, record.delta, alpha=record.alpha, rank=record.rank,
            scale=record.scale * factor, source_keys=record.source_keys,
        )
    return _copy_file(lora, modules, f"scaled-x{factor:g}")


def drop_modules(lora, rng, fraction=0.2):
    """Return a copy without a random ``fraction`` of its modules (at least one module is kept)."""
    module_ids = list(lora.modules)
    keep_count = max(1, int(round(len(module_ids) * (1.0 - fraction))))
    kept = set(rng.choice(len(module_ids), size=min(keep_count, len(module_ids)), replace=False).tolist())
    modules = {m: lora.modules[m] for i, m in enumerate(module_ids) if i in kept}
    return _copy_file(lora, modules, "dropped")


def convert_dialect(lora, write, directory, name="converted.safetensors"):
    """Write ``lora`` with ``write(lora, path)`` in another dialect, then read the file back.

    Parameters
    ----------
    lora : LoraFile
    write : callable
        Writes a canonical LoRA to a file in some key dialect.
    directory : str or Path
        Where the file is written.
    name : str
        The file name.

    Returns
    -------
    LoraFile
        The file as :func:`lora_embedding.reader.read_lora` reads it.
    """
    from .reader import read_lora

    path = os.path.join(os.fspath(directory), name)
    write(lora, path)
    return read_lora(path)


WEIGHT_PRESERVING = {
    "refactorized": lambda lora, rng: refactorize(lora, rng),
    "rank-padded": lambda lora, rng: pad_rank(lora, rng),
    "svd": lambda lora, rng: svd_refactorize(lora),
    "fp16": lambda lora, rng: cast_precision(lora, "fp16"),
    "bf16": lambda lora, rng: cast_precision(lora, "bf16"),
    "alpha-rescaled": lambda lora, rng: rescale_alpha(lora, 4.0),
    "scaled-x3": lambda lora, rng: scale_global(lora, 3.0),
}
"""Transform name to ``function(lora, rng) -> LoraFile``; ``scaled-x3`` changes only the norm."""

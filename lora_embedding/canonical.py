"""Canonical form of a LoRA: one record per adapted module.

Every file dialect is read into the same form, so the rest of the package
never deals with key names. A module's weight update is ``ΔW = scale · D`` where
``D`` is a :class:`DeltaOperator`. Operators compute ``D·X`` and ``Dᵀ·X`` for
a matrix ``X`` without forming ``D`` when the factors allow it (LoRA, LoCon
with a Tucker mid, LoKr), and form ``D`` where they must (LoHa, full diffs).

Shapes follow the base model: a Linear weight is ``(out, in)``, a Conv2d
weight ``(out, in, kh, kw)``. Operators work on the flattened
``(out, in·kh·kw)`` matrix.
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DeltaOperator",
    "FullDelta",
    "HadamardDelta",
    "KroneckerDelta",
    "LoraFile",
    "LowRankDelta",
    "ModuleRecord",
    "RowStackDelta",
]


def _as_matrix(tensor):
    """Flatten a weight-shaped tensor to ``(out, in·kh·kw)`` float32.

    float32 represents every fp16 and bf16 value exactly and halves the memory of
    float64; the exact similarities widen to float64 where they sum.
    """
    array = np.asarray(tensor, dtype=np.float32)
    return array.reshape(array.shape[0], -1)


class DeltaOperator:
    """The unscaled weight update ``D`` of one module, as a linear operator.

    Subclasses implement :meth:`matmul` and :meth:`rmatmul`; :meth:`dense`
    and :meth:`factors` have generic fallbacks.

    Attributes
    ----------
    shape : tuple of int
        The target weight shape, ``(out, in)`` or ``(out, in, kh, kw)``.
    """

    shape = ()

    @property
    def out_features(self):
        """Number of rows of the flattened update."""
        return int(self.shape[0])

    @property
    def in_features(self):
        """Number of columns of the flattened update (``in·kh·kw``)."""
        return int(np.prod(self.shape[1:]))

    def matmul(self, x):
        """Return ``D @ x`` for ``x`` of shape ``(in_features, k)``."""
        raise NotImplementedError

    def rmatmul(self, x):
        """Return ``Dᵀ @ x`` for ``x`` of shape ``(out_features, k)``."""
        raise NotImplementedError

    def factors(self):
        """Return ``(U, V)`` with ``D = U @ V`` when a thin factorization is cheap, else None."""
        return None

    def dense(self):
        """Form ``D`` as an ``(out_features, in_features)`` matrix."""
        factors = self.factors()
        if factors is not None:
            up, down = factors
            return up @ down
        return self.matmul(np.eye(self.in_features, dtype=np.float32))

    def max_rank(self):
        """Return an upper bound on the rank of ``D``."""
        return min(self.out_features, self.in_features)

    def squared_norm(self):
        """Return ``‖D‖²_F``."""
        factors = self.factors()
        if factors is not None:
            up, down = factors
            return float(np.sum((up.T @ up) * (down @ down.T)))
        dense = self.dense()
        return float(np.sum(dense * dense))


class LowRankDelta(DeltaOperator):
    """``D = up @ down``, with an optional Tucker core (LoCon ``lora_mid``).

    Parameters
    ----------
    up : array, shape (out, r) or (out, r, 1, 1)
    down : array, shape (r, in) or (r, in, kh, kw), or (r, in, 1, 1) with a mid
    mid : array of shape (r, r, kh, kw), optional
        The Tucker core. Then ``D[o, i, h, w] = Σ up[o, a]·mid[a, b, h, w]·down[b, i]``.
    shape : tuple of int
        The target weight shape.
    """

    def __init__(self, up, down, shape, mid=None):
        self.shape = tuple(int(s) for s in shape)
        self.up = _as_matrix(up)
        if mid is None:
            self.down = _as_matrix(down)
        else:
            self.down = self._contract_tucker(mid, down)

    @staticmethod
    def _contract_tucker(mid, down):
        mid = np.asarray(mid, dtype=np.float32)
        down = _as_matrix(down)
        rank, _, kh, kw = mid.shape
        # V[a, (i, h, w)] = Σ_b mid[a, b, h, w] · down[b, i]
        contracted = np.einsum("abhw,bi->aihw", mid, down)
        return contracted.reshape(rank, down.shape[1] * kh * kw)

    def matmul(self, x):
        return self.up @ (self.down @ x)

    def rmatmul(self, x):
        return self.down.T @ (self.up.T @ x)

    def factors(self):
        return self.up, self.down

    def max_rank(self):
        return min(self.up.shape[1], self.out_features, self.in_features)


class FullDelta(DeltaOperator):
    """``D`` stored as a full matrix (LyCORIS ``diff``)."""

    def __init__(self, diff, shape=None):
        diff = np.asarray(diff)
        self.shape = tuple(int(s) for s in (shape or diff.shape))
        self.matrix = _as_matrix(diff)

    def matmul(self, x):
        return self.matrix @ x

    def rmatmul(self, x):
        return self.matrix.T @ x

    def dense(self):
        return self.matrix


class HadamardDelta(DeltaOperator):
    """LoHa: ``D = (w1a @ w1b) ⊙ (w2a @ w2b)``; formed densely, rank up to r²."""

    def __init__(self, first, second, shape):
        self.shape = tuple(int(s) for s in shape)
        self.first = first
        self.second = second
        self._matrix = None

    def dense(self):
        if self._matrix is None:
            self._matrix = self.first.dense() * self.second.dense()
        return self._matrix

    def matmul(self, x):
        return self.dense() @ x

    def rmatmul(self, x):
        return self.dense().T @ x

    def max_rank(self):
        bound = self.first.max_rank() * self.second.max_rank()
        return min(bound, self.out_features, self.in_features)


class KroneckerDelta(DeltaOperator):
    """LoKr: ``D = w1 ⊗ w2`` with ``w1`` of shape (a, b) and ``w2`` of shape (c, d·kh·kw).

    The flattened update has rows ``(a, c)`` and columns ``(b, d, kh, kw)``.
    ``w1`` and ``w2`` are operators themselves (full or low rank).
    """

    def __init__(self, w1, w2, shape):
        self.shape = tuple(int(s) for s in shape)
        self.w1 = w1.dense()
        self.w2 = w2.dense()
        a, b = self.w1.shape
        c, d_flat = self.w2.shape
        if a * c != self.out_features or b * d_flat != self.in_features:
            raise ValueError(
                f"LoKr factors {self.w1.shape} ⊗ {self.w2.shape} do not match the "
                f"target shape {self.shape}"
            )

    def matmul(self, x):
        a, b = self.w1.shape
        c, d = self.w2.shape
        k = x.shape[1]
        # (w1 ⊗ w2) vec-by-rows: y[(p, q)] = Σ_{s, t} w1[p, s] w2[q, t] x[(s, t)]
        blocks = x.reshape(b, d, k)
        result = np.einsum("ps,qt,stk->pqk", self.w1, self.w2, blocks, optimize=True)
        return result.reshape(a * c, k)

    def rmatmul(self, x):
        a, b = self.w1.shape
        c, d = self.w2.shape
        k = x.shape[1]
        blocks = x.reshape(a, c, k)
        result = np.einsum("ps,qt,pqk->stk", self.w1, self.w2, blocks, optimize=True)
        return result.reshape(b * d, k)

    def dense(self):
        return np.kron(self.w1, self.w2)

    def squared_norm(self):
        # ‖w1 ⊗ w2‖_F = ‖w1‖_F · ‖w2‖_F
        return float(np.sum(self.w1 * self.w1) * np.sum(self.w2 * self.w2))

    def max_rank(self):
        bound = np.linalg.matrix_rank(self.w1) * np.linalg.matrix_rank(self.w2)
        return min(int(bound), self.out_features, self.in_features)


class RowStackDelta(DeltaOperator):
    """Updates of row ranges of one fused weight (split q/k/v of Flux or SD3).

    Parameters
    ----------
    parts : list of (int, DeltaOperator)
        Each part's first row in the fused weight, and its update. Rows that
        no part covers are zero.
    shape : tuple of int
        The fused target shape.
    """

    def __init__(self, parts, shape):
        self.shape = tuple(int(s) for s in shape)
        self.parts = sorted(parts, key=lambda part: part[0])

    def matmul(self, x):
        result = np.zeros((self.out_features, x.shape[1]))
        for start, part in self.parts:
            result[start:start + part.out_features] += part.matmul(x)
        return result

    def rmatmul(self, x):
        result = np.zeros((self.in_features, x.shape[1]))
        for start, part in self.parts:
            result += part.rmatmul(x[start:start + part.out_features])
        return result

    def factors(self):
        pieces = [part.factors() for _, part in self.parts]
        if any(piece is None for piece in pieces):
            return None
        total_rank = sum(up.shape[1] for up, _ in pieces)
        up_fused = np.zeros((self.out_features, total_rank))
        column = 0
        for (start, part), (up, _) in zip(self.parts, pieces):
            up_fused[start:start + part.out_features, column:column + up.shape[1]] = up
            column += up.shape[1]
        down_fused = np.concatenate([down for _, down in pieces], axis=0)
        return up_fused, down_fused

    def squared_norm(self):
        # Parts cover disjoint rows, so their squared norms add up.
        return float(sum(part.squared_norm() for _, part in self.parts))

    def max_rank(self):
        bound = sum(part.max_rank() for _, part in self.parts)
        return min(bound, self.out_features, self.in_features)


@dataclass
class ModuleRecord:
    """One adapted module of a LoRA in canonical form.

    Attributes
    ----------
    module_id : str
        The target weight's path in the base model's native naming, without
        ``.weight``: ``diffusion_model.<LDM or BFL path>`` for the UNet or
        transformer, ``clip_l.``/``clip_g.``/``clip_h.``/``t5xxl.`` plus the
        Hugging Face path for text encoders.
    algorithm : str
        ``lora``, ``locon_tucker``, ``loha``, ``lokr``, ``full``, ``norm``,
        ``ia3``, ``glora``, ``oft``, ``boft``. ``dora`` is recorded in
        ``dora_scale``, not here.
    delta : DeltaOperator or None
        The unscaled update ``D``; None when the update depends on the base
        weights (IA3, GLoRA, OFT, BOFT) or is not a matrix (norm).
    alpha : float or None
        The stored alpha, in float even when the file stores bf16 or int64.
    rank : int or None
        The rank that alpha is divided by, per the algorithm's scale rule.
    scale : float
        The factor applied to ``D``, from alpha and rank (or an explicit
        ``scale`` tensor); ``ΔW = scale · D``.
    source_keys : tuple of str
        The file keys this record was built from.
    tensors : dict of str to array
        The raw tensors by role (``up``, ``down``, ``mid``, ``hada_w1_a``, ...).
    dora_scale : array or None
        The DoRA magnitude vector, when present.
    """

    module_id: str
    algorithm: str
    delta: DeltaOperator = None
    alpha: float = None
    rank: int = None
    scale: float = 1.0
    source_keys: tuple = ()
    tensors: dict = field(default_factory=dict, repr=False)
    dora_scale: object = field(default=None, repr=False)

    @property
    def shape(self):
        """The target weight shape, or None when the update is not a matrix."""
        return None if self.delta is None else self.delta.shape

    def matmul(self, x):
        """Return ``ΔW @ x`` with the scale applied."""
        return self.scale * self.delta.matmul(x)

    def rmatmul(self, x):
        """Return ``ΔWᵀ @ x`` with the scale applied."""
        return self.scale * self.delta.rmatmul(x)

    def factors(self):
        """Return ``(U, V)`` with ``ΔW = U @ V`` (scale folded into U), or None."""
        pair = None if self.delta is None else self.delta.factors()
        if pair is None:
            return None
        up, down = pair
        return self.scale * up, down

    def dense(self):
        """Form ``ΔW`` as an ``(out, in·kh·kw)`` matrix with the scale applied."""
        return self.scale * self.delta.dense()

    def squared_norm(self):
        """Return ``‖ΔW‖²_F`` with the scale applied."""
        return self.scale * self.scale * self.delta.squared_norm()


@dataclass
class Finding:
    """A problem or notable fact found while reading a file.

    Attributes
    ----------
    code : str
        A stable identifier such as ``unmapped_key``, ``nan_or_inf``,
        ``all_zero``, ``unsupported_algorithm``, ``shape_mismatch``.
    message : str
        A sentence for people.
    module_id : str or None
        The module concerned, when there is one.
    """

    code: str
    message: str
    module_id: str = None


@dataclass
class LoraFile:
    """A LoRA file read into canonical form.

    Attributes
    ----------
    path : str
    container : str
        ``safetensors`` or ``pickle``.
    format : str
        The key dialect: ``kohya``, ``lycoris``, ``diffusers_old``,
        ``diffusers_new``, ``peft``, ``onetrainer``, ``cloneofsimo``, ...
    family : str
        ``SD1.x``, ``SD2.x``, ``SDXL``, ``SDXL-refiner``, ``SD3``, ``Flux`` or ``unknown``.
    modules : dict of str to ModuleRecord
        Canonical records keyed by module id.
    stored_modules : int
        The number of adapted modules as stored in the file (split q/k/v
        parts count separately).
    metadata : dict of str to str
        The raw safetensors ``__metadata__``.
    summary : dict
        ``output_name``, ``base_model``, ``tags`` (most frequent first),
        ``sshs_model_hash`` and the other fields the product shows.
    unmapped_keys : list of str
    findings : list of Finding
    """

    path: str
    container: str
    format: str
    family: str
    modules: dict
    stored_modules: int = 0
    metadata: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    unmapped_keys: list = field(default_factory=list)
    findings: list = field(default_factory=list)

    def ranks(self):
        """Return ``{rank: number of modules}`` over modules with a rank."""
        counts = {}
        for record in self.modules.values():
            if record.rank is not None:
                counts[record.rank] = counts.get(record.rank, 0) + 1
        return dict(sorted(counts.items()))

    def algorithms(self):
        """Return ``{algorithm: number of modules}``."""
        counts = {}
        for record in self.modules.values():
            counts[record.algorithm] = counts.get(record.algorithm, 0) + 1
        return dict(sorted(counts.items()))

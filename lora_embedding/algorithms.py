"""Turn the tensors of one stored module into a canonical update and its scale.

Scale rules (``ΔW = scale · D``), as the reference loaders implement them:

* LoRA/LoCon: rank = ``down.shape[0]``, scale = α/rank; α missing -> 1;
  α == 0 -> 1 (LyCORIS and kohya save α = rank in that case).
* LoHa: rank = ``hada_w1_b.shape[0]``.
* LoKr: rank of the decomposed factor (``lokr_w2_b`` first, then
  ``lokr_w1_b``); when both factors are full the stored α is ignored and
  scale = 1.
* full, norm, IA3, OFT, BOFT: scale 1. GLoRA: rank = ``a2.shape[0]``.
* An explicit ``scale`` tensor replaces α/rank for any algorithm.

IA3, GLoRA, OFT and BOFT updates depend on the base weights, so their
records carry the tensors but no operator (``delta`` is None).
"""

import numpy as np

from .canonical import FullDelta, HadamardDelta, KroneckerDelta, LowRankDelta

__all__ = ["algorithm_of", "build_delta", "implied_shape", "rank_of", "up_factor_roles"]

# Algorithms whose update this reader cannot form without the base weights.
BASE_DEPENDENT = ("ia3", "glora", "oft", "boft")


def algorithm_of(roles):
    """Name the algorithm of a module from its tensor roles (ComfyUI's detection order)."""
    if "up" in roles and "down" in roles:
        return "locon_tucker" if "mid" in roles else "lora"
    if "hada_w1_a" in roles:
        return "loha"
    if roles & {"lokr_w1", "lokr_w1_a", "lokr_w2", "lokr_w2_a"}:
        return "lokr"
    if "glora_a1" in roles:
        return "glora"
    if "oft_blocks" in roles or "oft_diag" in roles:
        return "oft"
    if "w_norm" in roles:
        return "norm"
    if "diff" in roles:
        return "full"
    if "ia3_weight" in roles and "on_input" in roles:
        return "ia3"
    return None


def _flat(shape):
    return int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1


def implied_shape(algorithm, shapes):
    """Return the ``(out, in·kh·kw)`` an update implies from its tensor shapes, or None.

    Parameters
    ----------
    algorithm : str
    shapes : dict of str to tuple
        Role -> stored shape.
    """
    if algorithm == "lora":
        return shapes["up"][0], _flat(shapes["down"])
    if algorithm == "locon_tucker":
        kernel = int(np.prod(shapes["mid"][2:], dtype=np.int64))
        return shapes["up"][0], shapes["down"][1] * kernel
    if algorithm == "loha":
        if "hada_t1" in shapes:
            t1 = shapes["hada_t1"]
            return shapes["hada_w1_a"][1], shapes["hada_w1_b"][1] * int(np.prod(t1[2:], dtype=np.int64))
        return shapes["hada_w1_a"][0], _flat(shapes["hada_w1_b"])
    if algorithm == "lokr":
        return _lokr_shape(shapes)
    if algorithm == "full":
        diff = shapes["diff"]
        return diff[0], _flat(diff)
    return None


def _lokr_shape(shapes):
    if "lokr_w1" in shapes:
        a, b = shapes["lokr_w1"][0], _flat(shapes["lokr_w1"])
    else:
        a, b = shapes["lokr_w1_a"][0], _flat(shapes["lokr_w1_b"])
    if "lokr_w2" in shapes:
        c, d = shapes["lokr_w2"][0], _flat(shapes["lokr_w2"])
    elif "lokr_t2" in shapes:
        t2 = shapes["lokr_t2"]
        c, d = shapes["lokr_w2_a"][1], shapes["lokr_w2_b"][1] * int(np.prod(t2[2:], dtype=np.int64))
    else:
        c, d = shapes["lokr_w2_a"][0], _flat(shapes["lokr_w2_b"])
    return a * c, b * d


def rank_of(algorithm, shapes):
    """Return the rank α is divided by, or None when the scale does not use α."""
    if algorithm in ("lora", "locon_tucker"):
        return int(shapes["down"][0])
    if algorithm == "loha":
        return int(shapes["hada_w1_b"][0])
    if algorithm == "lokr":
        if "lokr_w2_b" in shapes:
            return int(shapes["lokr_w2_b"][0])
        if "lokr_w1_b" in shapes:
            return int(shapes["lokr_w1_b"][0])
        return None
    if algorithm == "glora":
        return int(shapes["glora_a2"][0])
    return None


def up_factor_roles(algorithm, roles):
    """Return the roles of which any one being all zero makes the whole update zero."""
    if algorithm in ("lora", "locon_tucker"):
        return ("up",)
    if algorithm == "loha":
        return ("hada_w1_a", "hada_w2_a")
    if algorithm == "lokr":
        return tuple(role for role in ("lokr_w1", "lokr_w1_a", "lokr_w2", "lokr_w2_a") if role in roles)
    if algorithm == "full":
        return ("diff",)
    return ()


def build_delta(algorithm, arrays, shape):
    """Build the unscaled update operator of one module.

    Parameters
    ----------
    algorithm : str
    arrays : dict of str to numpy.ndarray
        Role -> tensor.
    shape : tuple of int
        The target weight shape; its flattened size must match the factors.

    Returns
    -------
    DeltaOperator or None
        None for algorithms whose update depends on the base weights.
    """
    if algorithm == "lora":
        return LowRankDelta(arrays["up"], arrays["down"], shape)
    if algorithm == "locon_tucker":
        return LowRankDelta(arrays["up"], arrays["down"], shape, mid=arrays["mid"])
    if algorithm == "loha":
        return _loha(arrays, shape)
    if algorithm == "lokr":
        return _lokr(arrays, shape)
    if algorithm == "full":
        return FullDelta(arrays["diff"], shape)
    return None


def _tucker(core, left, right):
    """Contract ``M[o, i, h, w] = Σ core[p, q, h, w] · left[p, o] · right[q, i]``, flattened."""
    core = np.asarray(core, dtype=np.float64)
    contracted = np.einsum("pqhw,po,qi->oihw", core, np.asarray(left, np.float64), np.asarray(right, np.float64))
    return contracted.reshape(contracted.shape[0], -1)


def _loha(arrays, shape):
    if "hada_t1" in arrays:
        first = FullDelta(_tucker(arrays["hada_t1"], arrays["hada_w1_a"], arrays["hada_w1_b"]), shape)
        second = FullDelta(_tucker(arrays["hada_t2"], arrays["hada_w2_a"], arrays["hada_w2_b"]), shape)
    else:
        first = LowRankDelta(arrays["hada_w1_a"], arrays["hada_w1_b"], shape)
        second = LowRankDelta(arrays["hada_w2_a"], arrays["hada_w2_b"], shape)
    return HadamardDelta(first, second, shape)


def _lokr(arrays, shape):
    if "lokr_w1" in arrays:
        w1 = FullDelta(arrays["lokr_w1"])
    else:
        w1_shape = (arrays["lokr_w1_a"].shape[0], _flat(arrays["lokr_w1_b"].shape))
        w1 = LowRankDelta(arrays["lokr_w1_a"], arrays["lokr_w1_b"], w1_shape)
    if "lokr_w2" in arrays:
        w2 = FullDelta(np.asarray(arrays["lokr_w2"]).reshape(arrays["lokr_w2"].shape[0], -1))
    elif "lokr_t2" in arrays:
        w2 = FullDelta(_tucker(arrays["lokr_t2"], arrays["lokr_w2_a"], arrays["lokr_w2_b"]))
    else:
        w2_shape = (arrays["lokr_w2_a"].shape[0], _flat(arrays["lokr_w2_b"].shape))
        w2 = LowRankDelta(arrays["lokr_w2_a"], arrays["lokr_w2_b"], w2_shape)
    return KroneckerDelta(w1, w2, shape)


def scalar(array):
    """Return a stored scalar (0-d or 1-element tensor of any dtype) as a Python float."""
    return float(np.asarray(array, dtype=np.float64).reshape(-1)[0])


def compute_scale(algorithm, alpha, rank, explicit_scale):
    """Return ``(scale, note)`` per the module docstring; note names an ignored or odd α."""
    if explicit_scale is not None:
        return explicit_scale, None
    if algorithm == "lokr" and rank is None:
        return 1.0, "lokr_full_alpha_ignored" if alpha is not None else None
    if algorithm in ("lora", "locon_tucker", "loha", "lokr", "glora"):
        if alpha is None:
            return 1.0, None
        if alpha == 0:
            return 1.0, "zero_alpha"
        return alpha / rank, None
    return 1.0, None

"""Portable pseudo-random matrices for the feature sketches.

Every machine must compute the same features, so the random matrices cannot
depend on NumPy's generator streams, which may change between releases.
They come from SplitMix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) over a counter, turned into
uniform doubles by the top 53 bits and into Gaussians by the Box-Muller
transform. The arithmetic is plain 64-bit integer and IEEE double
arithmetic, so the values are identical on every platform.
"""

import functools
import hashlib

import numpy as np

FEATURE_SEED = 20250704
"""The seed of every random matrix the features use. Changing it changes every embedding."""

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def stream_seed(*labels):
    """Derive a 64-bit seed from ``FEATURE_SEED`` and text labels."""
    text = "\x1f".join([str(FEATURE_SEED), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def splitmix64(seed, count):
    """Return ``count`` consecutive SplitMix64 outputs for ``seed`` as uint64."""
    with np.errstate(over="ignore"):
        counter = np.arange(1, count + 1, dtype=np.uint64)
        state = np.uint64(seed) + counter * _GOLDEN_GAMMA
        state = (state ^ (state >> np.uint64(30))) * _MIX_1
        state = (state ^ (state >> np.uint64(27))) * _MIX_2
        return state ^ (state >> np.uint64(31))


def uniform(seed, count):
    """Return ``count`` doubles in the open interval (0, 1)."""
    bits = splitmix64(seed, count) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def gaussian(seed, shape):
    """Return standard normal samples of ``shape`` by the Box-Muller transform."""
    count = int(np.prod(shape))
    pairs = (count + 1) // 2
    draws = uniform(seed, 2 * pairs)
    radius = np.sqrt(-2.0 * np.log(draws[:pairs]))
    angle = 2.0 * np.pi * draws[pairs:]
    samples = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])
    return samples[:count].reshape(shape)


def signs(seed, count):
    """Return ``count`` random values of +1.0 or -1.0."""
    bits = splitmix64(seed, count) >> np.uint64(63)
    return 1.0 - 2.0 * bits.astype(np.float64)


@functools.lru_cache(maxsize=64)
def sketch_matrix(rows, width):
    """Return the Gaussian sketch matrix Ω of shape ``(rows, width)`` for a side of size ``rows``.

    The matrix is read-only and shared by all modules with a side of that size.
    """
    matrix = gaussian(stream_seed("output-sketch", rows, width), (rows, width))
    matrix.setflags(write=False)
    return matrix

"""Exact similarities, features and training-free embeddings on synthetic canonical LoRAs."""

import numpy as np
import pytest

from lora_embedding.canonical import (
    FullDelta,
    HadamardDelta,
    KroneckerDelta,
    LoraFile,
    LowRankDelta,
    ModuleRecord,
    RowStackDelta,
)
from lora_embedding.features import extract_features
from lora_embedding.pooling import SketchPooling
from lora_embedding.random_projections import gaussian, splitmix64, stream_seed
from lora_embedding.signature import pooled_signature
from lora_embedding.similarity import delta_cosine, delta_inner, gram_cosine, gram_inner

SHAPES = {
    "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q": (320, 320),
    "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k": (320, 768),
    "diffusion_model.middle_block.1.proj_in": (1280, 1280, 1, 1),
    "diffusion_model.input_blocks.1.0.in_layers.2": (320, 320, 3, 3),
}


def _lora(rng, rank=4, modules=SHAPES, shared_up=None):
    records = {}
    for module_id, shape in modules.items():
        out, flat_in = shape[0], int(np.prod(shape[1:]))
        up = rng.standard_normal((out, rank)) if shared_up is None else shared_up[module_id]
        down = rng.standard_normal((rank, flat_in))
        records[module_id] = ModuleRecord(module_id, "lora", LowRankDelta(up, down, shape), alpha=rank, rank=rank, scale=1.0)
    return LoraFile(path="synthetic", container="safetensors", format="kohya", family="SD1.x", modules=records)


def _transformed(lora, transform):
    records = {m: transform(r) for m, r in lora.modules.items()}
    return LoraFile(path="copy", container="safetensors", format="peft", family=lora.family, modules=records)


def _refactorized(record, rng):
    up, down = record.factors()
    rank = up.shape[1]
    mixing = rng.standard_normal((rank, rank)) + 3 * np.eye(rank)
    new_up = up @ mixing
    new_down = np.linalg.solve(mixing, down)
    return ModuleRecord(record.module_id, "lora", LowRankDelta(new_up, new_down, record.shape), scale=1.0)


def _rank_padded(record):
    up, down = record.factors()
    pad = 3
    new_up = np.hstack([up, np.zeros((up.shape[0], pad))])
    new_down = np.vstack([down, np.random.default_rng(5).standard_normal((pad, down.shape[1]))])
    # alpha/rank scaling: store alpha = 2·rank so the scale is 2, with the up factor halved
    return ModuleRecord(record.module_id, "lora", LowRankDelta(new_up / 2, new_down, record.shape), alpha=2 * (up.shape[1] + pad), rank=up.shape[1] + pad, scale=2.0)


def _as_full(record):
    return ModuleRecord(record.module_id, "full", FullDelta(record.dense().reshape(record.shape), record.shape))


def _scaled(record, factor):
    up, down = record.factors()
    return ModuleRecord(record.module_id, "lora", LowRankDelta(up, down, record.shape), scale=factor)


def _half_precision(record, dtype):
    up, down = record.factors()
    if dtype == "bf16":
        def cast(x):
            bits = np.asarray(x, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
            return bits.view(np.float32).astype(np.float64)
    else:
        def cast(x):
            return np.asarray(x, dtype=np.float16).astype(np.float64)
    return ModuleRecord(record.module_id, "lora", LowRankDelta(cast(up), cast(down), record.shape), scale=1.0)


def test_splitmix64_matches_reference_values():
    # First outputs of SplitMix64 seeded with 0, from the reference C implementation.
    values = splitmix64(0, 3)
    assert int(values[0]) == 0xE220A8397B1DCDAF
    assert int(values[1]) == 0x6E789E6AA1B965F4
    assert int(values[2]) == 0x06C45D188009454F


def test_gaussian_is_deterministic_and_standard():
    first = gaussian(stream_seed("test"), (200, 50))
    second = gaussian(stream_seed("test"), (200, 50))
    assert np.array_equal(first, second)
    assert abs(first.mean()) < 0.02
    assert abs(first.std() - 1.0) < 0.02


def _dense64(record):
    """Form ΔW from the stored factors in float64: the reference for the exact identities."""
    up, down = record.factors()
    return np.asarray(up, dtype=np.float64) @ np.asarray(down, dtype=np.float64)


def test_delta_inner_matches_dense():
    rng = np.random.default_rng(0)
    a, b = _lora(rng), _lora(rng)
    for module_id in SHAPES:
        ra, rb = a.modules[module_id], b.modules[module_id]
        expected = float(np.sum(_dense64(ra) * _dense64(rb)))
        assert delta_inner(ra, rb) == pytest.approx(expected, rel=1e-9)
        # A full diff is stored in float32, so its products carry float32 rounding.
        assert delta_inner(ra, _as_full(rb)) == pytest.approx(expected, rel=1e-5)
        assert delta_inner(_as_full(ra), _as_full(rb)) == pytest.approx(expected, rel=1e-5)


def test_gram_inner_matches_dense():
    rng = np.random.default_rng(1)
    a, b = _lora(rng), _lora(rng)
    for module_id in SHAPES:
        ra, rb = a.modules[module_id], b.modules[module_id]
        dense_a, dense_b = _dense64(ra), _dense64(rb)
        expected = float(np.sum((dense_a @ dense_a.T) * (dense_b @ dense_b.T)))
        assert gram_inner(ra, rb) == pytest.approx(expected, rel=1e-9)
        assert gram_inner(_as_full(ra), rb) == pytest.approx(expected, rel=1e-5)
        assert gram_inner(_as_full(ra), _as_full(rb)) == pytest.approx(expected, rel=1e-5)


def test_lokr_and_loha_operators_match_dense():
    rng = np.random.default_rng(2)
    w1 = FullDelta(rng.standard_normal((4, 8)))
    w2 = LowRankDelta(rng.standard_normal((80, 2)), rng.standard_normal((2, 40 * 9)), (80, 40, 3, 3))
    lokr = KroneckerDelta(w1, w2, (320, 320, 3, 3))
    dense = np.kron(w1.dense(), w2.dense())
    x = rng.standard_normal((lokr.in_features, 5))
    y = rng.standard_normal((lokr.out_features, 5))
    # Operators compute in float32, so compare with a float32-sized tolerance.
    assert np.allclose(lokr.matmul(x), dense @ x, rtol=1e-4, atol=1e-3)
    assert np.allclose(lokr.rmatmul(y), dense.T @ y, rtol=1e-4, atol=1e-3)

    first = LowRankDelta(rng.standard_normal((64, 2)), rng.standard_normal((2, 32)), (64, 32))
    second = LowRankDelta(rng.standard_normal((64, 2)), rng.standard_normal((2, 32)), (64, 32))
    loha = HadamardDelta(first, second, (64, 32))
    assert np.allclose(loha.dense(), first.dense() * second.dense())


def test_row_stack_factors_match_parts():
    rng = np.random.default_rng(3)
    parts = [(0, LowRankDelta(rng.standard_normal((8, 2)), rng.standard_normal((2, 6)), (8, 6))),
             (16, LowRankDelta(rng.standard_normal((8, 3)), rng.standard_normal((3, 6)), (8, 6)))]
    fused = RowStackDelta(parts, (24, 6))
    dense = np.zeros((24, 6))
    dense[0:8] = parts[0][1].dense()
    dense[16:24] = parts[1][1].dense()
    up, down = fused.factors()
    assert np.allclose(up @ down, dense)
    assert np.allclose(fused.matmul(np.eye(6)), dense)


@pytest.mark.parametrize("transform", ["refactorized", "rank_padded", "full", "scaled", "fp16", "bf16"])
def test_embedding_invariant_to_storage(transform):
    rng = np.random.default_rng(4)
    lora = _lora(rng)
    transforms = {
        "refactorized": lambda r: _refactorized(r, rng),
        "rank_padded": _rank_padded,
        "full": _as_full,
        "scaled": lambda r: _scaled(r, 3.0),
        "fp16": lambda r: _half_precision(r, "fp16"),
        "bf16": lambda r: _half_precision(r, "bf16"),
    }
    copy = _transformed(lora, transforms[transform])
    model = SketchPooling()
    original = model.transform(extract_features(lora))
    transformed = model.transform(extract_features(copy))
    assert float(original @ transformed) >= 0.999
    assert gram_cosine(lora, copy) >= 0.999


def test_gram_separates_seed_from_data():
    rng = np.random.default_rng(6)
    # Same learned output directions (same data), different random down factors (different seeds).
    shared_up = {m: rng.standard_normal((s[0], 4)) for m, s in SHAPES.items()}
    same_data_a = _lora(rng, shared_up=shared_up)
    same_data_b = _lora(rng, shared_up=shared_up)
    other = _lora(rng)

    assert gram_cosine(same_data_a, same_data_b) > 0.9
    assert abs(delta_cosine(same_data_a, same_data_b)) < 0.2
    assert gram_cosine(same_data_a, other) < 0.5

    model = SketchPooling()
    vectors = [model.transform(extract_features(x)) for x in (same_data_a, same_data_b, other)]
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


def test_signature_tells_seeds_apart():
    rng = np.random.default_rng(7)
    shared_up = {m: rng.standard_normal((s[0], 4)) for m, s in SHAPES.items()}
    a = _lora(rng, shared_up=shared_up)
    b = _lora(rng, shared_up=shared_up)
    a_copy = _transformed(a, lambda r: _half_precision(_refactorized(r, rng), "fp16"))
    sig_a, sig_b, sig_copy = (pooled_signature(extract_features(x)) for x in (a, b, a_copy))
    assert float(sig_a @ sig_copy) > 0.999
    assert float(sig_a @ sig_b) < 0.9


def test_kronecker_similarities_match_dense():
    rng = np.random.default_rng(8)
    shape = (320, 320, 3, 3)

    def lokr(scale):
        w1 = FullDelta(rng.standard_normal((4, 8)))
        w2 = LowRankDelta(rng.standard_normal((80, 2)), rng.standard_normal((2, 40 * 9)), (80, 40, 3, 3))
        return ModuleRecord("m", "lokr", KroneckerDelta(w1, w2, shape), scale=scale)

    a, b = lokr(0.5), lokr(2.0)
    dense_a = np.asarray(a.dense(), dtype=np.float64)
    dense_b = np.asarray(b.dense(), dtype=np.float64)
    expected_delta = float(np.sum(dense_a * dense_b))
    cross = dense_a.T @ dense_b
    expected_gram = float(np.sum(cross * cross))
    assert delta_inner(a, b) == pytest.approx(expected_delta, rel=1e-4)
    assert gram_inner(a, b) == pytest.approx(expected_gram, rel=1e-4)

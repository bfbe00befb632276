"""Learned encoder: save/load round trip, load errors and invariance of the embedding."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lora_fixtures as fixtures  # noqa: E402
from lora_embedding import augment  # noqa: E402
from lora_embedding.bundled import load_bundled_model  # noqa: E402
from lora_embedding.canonical import LoraFile, LowRankDelta, ModuleRecord  # noqa: E402
from lora_embedding.encoder import EncoderConfig, LearnedModel, LoraEncoder  # noqa: E402
from lora_embedding.errors import ModelError  # noqa: E402
from lora_embedding.features import TOKEN_SIZE, extract_features  # noqa: E402
from lora_embedding.model_io import CONFIG_NAME, WEIGHTS_NAME, load_model, save_model  # noqa: E402
from lora_embedding.reader import read_lora  # noqa: E402

MODULES = fixtures.SD15_MODULES


def _lora(seed, rank=4):
    truth = fixtures.make_truth(MODULES, rank=rank, seed=seed)
    records = {}
    for module_id, (up, down, shape) in truth.items():
        delta = LowRankDelta(up.astype(np.float64), down.astype(np.float64), shape)
        records[module_id] = ModuleRecord(module_id, "lora", delta, alpha=float(rank), rank=rank, scale=1.0)
    lora = LoraFile(path=f"synthetic-{seed}", container="safetensors", format="kohya", family="SD1.x", modules=records)
    return lora, truth


def _small_model(seed=0):
    torch.manual_seed(seed)
    vocabulary = [module_id for module_id, _, _ in MODULES]
    config = EncoderConfig(family="SD1.x", module_vocabulary=vocabulary, pca_size=8, d_model=32,
                           feedforward=64, output_size=16, pooled_size=256)
    encoder = LoraEncoder(config)
    rng = np.random.default_rng(seed)
    components = np.linalg.qr(rng.standard_normal((TOKEN_SIZE, 8)))[0].T
    encoder.set_pca(rng.standard_normal(TOKEN_SIZE) * 0.01, components)
    return LearnedModel(encoder, "test-encoder-v1")


def _cosine(first, second):
    return float(np.dot(first, second) / (np.linalg.norm(first) * np.linalg.norm(second)))


def test_round_trip_same_vectors(tmp_path):
    model = _small_model()
    features = [extract_features(_lora(seed)[0]) for seed in range(3)]
    before = model.transform_many(features)

    save_model(model, tmp_path, training={"corpus": "synthetic"}, metrics={"map": 1.0})
    loaded = load_model(tmp_path)

    assert loaded.model_id == "test-encoder-v1"
    assert loaded.dim == model.dim == 256 + 16
    assert loaded.info["metrics"] == {"map": 1.0}
    np.testing.assert_allclose(loaded.transform_many(features), before, atol=1e-6)
    assert np.allclose(np.linalg.norm(before, axis=1), 1.0, atol=1e-5)


def test_single_and_batch_agree():
    model = _small_model()
    features = [extract_features(_lora(seed)[0]) for seed in range(3)]
    batch = model.transform_many(features)
    for row, single in enumerate(features):
        np.testing.assert_allclose(model.transform(single), batch[row], atol=1e-5)


def test_load_rejects_wrong_shape(tmp_path):
    save_model(_small_model(), tmp_path)
    config_path = tmp_path / CONFIG_NAME
    config = json.loads(config_path.read_text())
    config["encoder"]["d_model"] = 48
    config_path.write_text(json.dumps(config))

    with pytest.raises(ModelError, match="shape"):
        load_model(tmp_path)


def test_load_rejects_other_feature_seed(tmp_path):
    save_model(_small_model(), tmp_path)
    config_path = tmp_path / CONFIG_NAME
    config = json.loads(config_path.read_text())
    config["features"]["feature_seed"] += 1
    config_path.write_text(json.dumps(config))

    with pytest.raises(ModelError, match="feature_seed"):
        load_model(tmp_path)


def test_load_reports_missing_files(tmp_path):
    with pytest.raises(ModelError, match="config not found"):
        load_model(tmp_path)

    save_model(_small_model(), tmp_path)
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(ModelError, match="weights not found"):
        load_model(tmp_path)


def test_other_family_is_rejected():
    model = _small_model()
    lora, _ = _lora(0)
    lora.family = "SDXL"
    with pytest.raises(ModelError, match="SD1.x"):
        model.transform(extract_features(lora))


def test_bundled_model_only_for_sd1():
    assert load_bundled_model("Flux") is None
    assert load_bundled_model("SDXL") is None
    model = load_bundled_model("SD1.x")
    assert model is not None
    assert model.kind == "learned"
    assert model.family == "SD1.x"
    assert model.model_id.startswith("sd1-encoder-v")
    assert load_bundled_model("SD1.x") is model


@pytest.fixture(scope="module")
def models():
    bundled = load_bundled_model("SD1.x")
    return {"small": _small_model(), **({"bundled": bundled} if bundled is not None else {})}


@pytest.mark.parametrize("transform", sorted(augment.WEIGHT_PRESERVING))
def test_embedding_invariant(models, transform):
    rng = np.random.default_rng(7)
    lora, _ = _lora(1)
    copy = augment.WEIGHT_PRESERVING[transform](lora, rng)
    for name, model in models.items():
        cosine = _cosine(model.transform(extract_features(lora)), model.transform(extract_features(copy)))
        assert cosine >= 0.999, f"{name} model, {transform} copy: cosine {cosine:.6f}"


@pytest.mark.parametrize("dialect", ["kohya", "peft"])
def test_embedding_invariant_to_dialect(models, tmp_path, dialect):
    lora, truth = _lora(2)

    def write(_, path):
        if dialect == "kohya":
            fixtures.write_kohya(path, truth, MODULES, "SD1.x", alpha=8.0)
        else:
            fixtures.write_peft(path, truth, MODULES)

    converted = augment.convert_dialect(lora, write, tmp_path)
    for name, model in models.items():
        cosine = _cosine(model.transform(extract_features(lora)), model.transform(extract_features(converted)))
        assert cosine >= 0.999, f"{name} model, {dialect} file: cosine {cosine:.6f}"


def test_distinct_loras_differ(models):
    first = extract_features(_lora(3)[0])
    second = extract_features(_lora(4)[0])
    for model in models.values():
        assert _cosine(model.transform(first), model.transform(second)) < 0.99


def test_augment_keeps_delta():
    lora, _ = _lora(5)
    rng = np.random.default_rng(0)
    module_id = next(iter(lora.modules))
    original = lora.modules[module_id].dense()
    # Canonical factors are stored in float32, so copies agree to float32 rounding.
    tolerance = 1e-5 * np.abs(original).max()
    for name in ("refactorized", "rank-padded", "svd", "alpha-rescaled"):
        copy = augment.WEIGHT_PRESERVING[name](lora, rng)
        np.testing.assert_allclose(copy.modules[module_id].dense(), original, atol=tolerance, err_msg=name)
    scaled = augment.scale_global(lora, 3.0)
    np.testing.assert_allclose(scaled.modules[module_id].dense(), 3.0 * original, atol=tolerance)


def test_round_to_bf16_nearest():
    values = np.array([1.0, 1.00390625, 1.005859375, -2.5, 3.0e-3])
    rounded = augment.round_to_bf16(values)
    expected = torch.tensor(values, dtype=torch.float32).to(torch.bfloat16).to(torch.float64).numpy()
    np.testing.assert_array_equal(rounded, expected)


def test_drop_modules_keeps_fraction():
    lora, _ = _lora(6)
    dropped = augment.drop_modules(lora, np.random.default_rng(0), fraction=0.5)
    assert 1 <= len(dropped.modules) < len(lora.modules)
    assert set(dropped.modules) <= set(lora.modules)

"""Training: catalog labels, mixtures with exact targets, and a tiny run that lowers the loss."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lora_embedding.canonical import LoraFile, LowRankDelta, ModuleRecord  # noqa: E402
from lora_embedding.errors import LoraEmbeddingError  # noqa: E402
from lora_embedding.features import extract_features  # noqa: E402
from lora_embedding.training import (  # noqa: E402
    CorpusEntry,
    CorpusLora,
    TrainingOptions,
    build_mixtures,
    gram_matrix,
    load_catalog,
    mix_loras,
    positive_labels,
    train_model,
)

SHAPES = {
    "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q": (320, 320),
    "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k": (320, 768),
    "diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_v": (1280, 1280),
    "diffusion_model.output_blocks.3.1.transformer_blocks.0.attn2.to_out.0": (1280, 1280),
}


def _lora(style_ups, rng, name, noise=0.3):
    """A LoRA whose up factors are a style's column space plus noise, with a fresh random down factor."""
    records = {}
    for module_id, shape in SHAPES.items():
        up = style_ups[module_id] + noise * rng.standard_normal(style_ups[module_id].shape)
        down = rng.standard_normal((up.shape[1], shape[1]))
        records[module_id] = ModuleRecord(module_id, "lora", LowRankDelta(up, down, shape), alpha=4.0, rank=4, scale=1.0)
    return LoraFile(path=name, container="safetensors", format="kohya", family="SD1.x", modules=records)


def _style(rng):
    return {module_id: rng.standard_normal((shape[0], 4)) for module_id, shape in SHAPES.items()}


def _items(styles=3, per_style=3, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for style in range(styles):
        ups = _style(rng)
        for copy in range(per_style):
            name = f"repo{style}-{copy}/lora.safetensors"
            entry = CorpusEntry(name=name, path=name, repo=f"repo{style}-{copy}", run_id=name, group=f"style{style}")
            lora = _lora(ups, rng, name)
            items.append(CorpusLora(entry, lora, extract_features(lora), f"style{style}"))
    return items


def test_tiny_training_lowers_loss():
    items = _items()
    options = TrainingOptions(
        epochs=16, batch_size=9, mixtures=6, mixtures_per_step=3, learning_rate=1e-3, seed=1,
        encoder={"pca_size": 8, "d_model": 32, "feedforward": 64, "output_size": 16, "pooled_size": 256,
                 "learned_share": 0.9},
    )
    model, history = train_model(items, "SD1.x", options, model_id="tiny-v1")

    assert len(history) == 16
    first = np.mean([epoch["loss"] for epoch in history[:3]])
    last = np.mean([epoch["loss"] for epoch in history[-3:]])
    assert last < first, f"loss did not fall: first epochs {first:.4f}, last epochs {last:.4f}"
    vector = model.transform(items[0].features)
    assert vector.shape == (256 + 16,)
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5


def test_training_is_reproducible():
    items = _items(styles=2, per_style=2)
    options = TrainingOptions(epochs=2, batch_size=4, mixtures=2, mixtures_per_step=2, seed=3,
                              encoder={"pca_size": 4, "d_model": 16, "feedforward": 32, "output_size": 8, "pooled_size": 64})
    first, _ = train_model(items, "SD1.x", options)
    second, _ = train_model(items, "SD1.x", options)
    np.testing.assert_allclose(first.transform(items[0].features), second.transform(items[0].features), atol=1e-6)


def test_training_needs_two_loras():
    with pytest.raises(LoraEmbeddingError, match="at least 2"):
        train_model(_items(styles=1, per_style=1), "SD1.x", TrainingOptions(epochs=1))


def test_mixture_targets_are_exact():
    items = _items(styles=2, per_style=1)
    first, second = items[0].lora, items[1].lora
    pure = mix_loras(first, second, 1.0)
    matrix = gram_matrix([pure, first, second])
    assert matrix[0, 1] == pytest.approx(1.0, abs=1e-5)

    mixtures = build_mixtures(items, 1, np.random.default_rng(0))
    assert len(mixtures) == 1
    _, a, b, target_a, target_b = mixtures[0]
    assert {a, b} == {0, 1}
    assert 0.0 < target_a < 1.0
    assert 0.0 < target_b < 1.0


def test_labels_join_runs_groups_and_duplicates():
    entries = [
        CorpusEntry(name="a/1", path="", repo="a", run_id="a:run"),
        CorpusEntry(name="a/2", path="", repo="a", run_id="a:run", intermediate=True),
        CorpusEntry(name="b/1", path="", repo="b", run_id="b:run", group="pokemon"),
        CorpusEntry(name="c/1", path="", repo="c", run_id="c:run", group="pokemon"),
        CorpusEntry(name="d/1", path="", repo="d", run_id="d:one", duplicates=["d/2"]),
        CorpusEntry(name="d/2", path="", repo="d", run_id="d:two"),
        CorpusEntry(name="e/1", path="", repo="e", run_id="e:run"),
    ]
    labels = positive_labels(entries)
    assert labels[0] == labels[1]
    assert labels[2] == labels[3]
    assert labels[4] == labels[5]
    assert len(set(labels)) == 4


def test_catalog_errors_name_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(LoraEmbeddingError, match="missing.json"):
        load_catalog(missing, tmp_path)

    broken = tmp_path / "catalog.json"
    broken.write_text(json.dumps([{"repo": "x"}]))
    with pytest.raises(LoraEmbeddingError, match="saved_as"):
        load_catalog(broken, tmp_path)

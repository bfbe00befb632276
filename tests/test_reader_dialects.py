"""The same ΔW written in every dialect reads back to the same canonical ΔW, with the right scale."""

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import lora_fixtures as fixtures
from lora_embedding.module_names import module_shape, module_vocabulary
from lora_embedding.reader import read_lora

TOLERANCE = 1e-5


def assert_same_delta(lora, truth, module_ids=None):
    """Check every truth module (or the listed ones) against the read record, by the Frobenius identity."""
    for module_id in module_ids if module_ids is not None else truth:
        up, down = truth[module_id][:2]
        assert module_id in lora.modules, f"{module_id} missing from {sorted(lora.modules)}"
        distance = fixtures.relative_distance((up, down), lora.modules[module_id].factors())
        assert distance < TOLERANCE, f"{module_id}: relative distance {distance}"


def unet_only(truth):
    return [module_id for module_id in truth if module_id.startswith("diffusion_model.")]


def attention_only(truth):
    return [module_id for module_id in truth if ".attn" in module_id or "self_attn" in module_id]


UNET_LAYOUTS = [("SD1.x", fixtures.SD15_MODULES), ("SDXL", fixtures.SDXL_MODULES)]


@pytest.mark.parametrize("family,modules", UNET_LAYOUTS)
def test_kohya_round_trip(tmp_path, family, modules):
    truth = fixtures.make_truth(modules, rank=2)
    lora = read_lora(fixtures.write_kohya(tmp_path / "kohya.safetensors", truth, modules, family, alpha=1.0))
    assert lora.family == family
    assert lora.format == "kohya"
    assert lora.unmapped_keys == []
    assert_same_delta(lora, truth)


@pytest.mark.parametrize("family,modules", UNET_LAYOUTS)
def test_lycoris_standalone_round_trip(tmp_path, family, modules):
    truth = fixtures.make_truth(modules)
    unet_truth = {key: truth[key] for key in unet_only(truth)}
    lora = read_lora(fixtures.write_lycoris_standalone(tmp_path / "lycoris.safetensors", unet_truth, modules))
    assert lora.family == family
    assert lora.format == "lycoris_standalone"
    assert_same_delta(lora, unet_truth)


@pytest.mark.parametrize("family,modules", UNET_LAYOUTS)
def test_diffusers_attention_processor_round_trip(tmp_path, family, modules):
    truth = fixtures.make_truth(modules)
    lora = read_lora(fixtures.write_diffusers_old(tmp_path / "old.safetensors", truth, modules))
    assert lora.family == family
    assert lora.format == "diffusers_old"
    assert_same_delta(lora, truth, attention_only(truth))


@pytest.mark.parametrize("family,modules", UNET_LAYOUTS)
def test_new_diffusers_round_trip(tmp_path, family, modules):
    truth = fixtures.make_truth(modules)
    lora = read_lora(fixtures.write_diffusers_new(tmp_path / "new.safetensors", truth, modules))
    assert lora.family == family
    assert lora.format == "diffusers_new"
    assert_same_delta(lora, truth)


@pytest.mark.parametrize("style", ["component", "base_model", "adapter", "mochi"])
@pytest.mark.parametrize("family,modules", UNET_LAYOUTS)
def test_peft_round_trip(tmp_path, family, modules, style):
    truth = fixtures.make_truth(modules)
    lora = read_lora(fixtures.write_peft(tmp_path / "peft.safetensors", truth, modules, style=style))
    assert lora.family == family
    assert lora.format == "peft"
    expected = unet_only(truth) if style == "base_model" else list(truth)
    assert_same_delta(lora, truth, expected)


@pytest.mark.parametrize("family,modules", UNET_LAYOUTS)
def test_peft_alpha_from_adapter_metadata(tmp_path, family, modules):
    truth = fixtures.make_truth(modules)
    lora = read_lora(fixtures.write_peft(tmp_path / "peft.safetensors", truth, modules, lora_alpha=8))
    record = next(iter(lora.modules.values()))
    assert record.alpha == 8.0
    assert record.scale == 8.0
    assert_same_delta(lora, truth)


@pytest.mark.parametrize("family,modules", UNET_LAYOUTS)
def test_convert_state_dict_to_kohya_round_trip(tmp_path, family, modules):
    truth = fixtures.make_truth(modules)
    path = fixtures.write_kohya_converted(tmp_path / "converted.safetensors", truth, modules)
    lora = read_lora(path)
    assert lora.family == family
    assert_same_delta(lora, truth)
    assert all(isinstance(record.alpha, float) for record in lora.modules.values())


@pytest.mark.parametrize(
    "writer,expected_format",
    [
        (lambda path, truth: fixtures.write_flux_kohya(path, truth), "kohya"),
        (lambda path, truth: fixtures.write_flux_peft(path, truth), "peft"),
        (lambda path, truth: fixtures.write_flux_peft(path, truth, prefix="transformer.base_model.model."), "peft"),
        (lambda path, truth: fixtures.write_flux_onetrainer(path, truth), "onetrainer"),
        (lambda path, truth: fixtures.write_flux_lycoris(path, truth), "lycoris_standalone"),
    ],
    ids=["kohya", "ai_toolkit", "simpletuner", "onetrainer", "lycoris"],
)
def test_flux_round_trip(tmp_path, writer, expected_format):
    truth = fixtures.make_flux_truth()
    lora = read_lora(writer(tmp_path / "flux.safetensors", truth))
    assert lora.family == "Flux"
    assert lora.format == expected_format
    assert lora.unmapped_keys == []
    assert_same_delta(lora, truth)


def test_flux_split_parts_become_row_stack(tmp_path):
    truth = fixtures.make_flux_truth()
    lora = read_lora(fixtures.write_flux_peft(tmp_path / "flux.safetensors", truth))
    record = lora.modules["diffusion_model.single_blocks.7.linear1"]
    assert record.shape == (21504, 3072)
    assert record.rank == 4
    assert lora.stored_modules == 3 + 3 + 1 + 1 + 4 + 1 + 1


def test_flux_norm_out_halves_swapped(tmp_path):
    truth = fixtures.make_flux_truth()
    lora = read_lora(fixtures.write_flux_peft(tmp_path / "flux.safetensors", truth))
    module_id = "diffusion_model.final_layer.adaLN_modulation.1"
    up, down, _ = truth[module_id]
    read_up, read_down = lora.modules[module_id].factors()
    assert np.allclose(read_up @ read_down[:, :4], up @ down[:, :4], atol=1e-5)


def test_xlabs_keys_map_to_fused_rows(tmp_path):
    path, expected = fixtures.write_xlabs(tmp_path / "xlabs.safetensors")
    lora = read_lora(path)
    assert lora.family == "Flux"
    assert lora.format == "xlabs"
    linear1 = lora.modules["diffusion_model.single_blocks.5.linear1"]
    assert linear1.shape == (21504, 3072)
    probe = np.random.default_rng(1).standard_normal((3072, 2))
    up, down, _ = expected["diffusion_model.single_blocks.5.linear1"]
    result = linear1.matmul(probe)
    assert np.allclose(result[:9216], up @ (down @ probe), atol=1e-4)
    assert not np.any(result[9216:])


def test_cloneofsimo_index_keys_map_by_order(tmp_path):
    path, expected = fixtures.write_cloneofsimo(tmp_path / "cloneofsimo.safetensors")
    lora = read_lora(path)
    assert lora.family == "SD1.x"
    assert lora.format == "cloneofsimo"
    assert lora.stored_modules == 192
    assert lora.summary["pivotal_tuning_tokens"] == ["<s1>"]
    for module_id, factors in expected.items():
        assert fixtures.relative_distance(factors, lora.modules[module_id].factors()) < TOLERANCE


def test_cloneofsimo_list_pickle(tmp_path):
    _, expected = fixtures.write_cloneofsimo(tmp_path / "unused.safetensors", text_encoder=False)
    tensors = []
    for module_id, _ in fixtures.cloneofsimo_sd15_order():
        up, down = expected[module_id]
        tensors += [torch.from_numpy(up), torch.from_numpy(down)]
    path = tmp_path / "lora.pt"
    torch.save(tensors, path)
    lora = read_lora(path)
    assert lora.container == "pickle"
    assert lora.family == "SD1.x"
    assert len(lora.modules) == 144


# ---------------------------------------------------------------- scale rules


def kohya_single_module(tmp_path, alpha_entry, rank=4, extra=None):
    """Write one SD1.5 kohya module with a raw alpha entry; return (path, up, down)."""
    rng = np.random.default_rng(3)
    up = rng.standard_normal((320, rank)).astype(np.float32)
    down = rng.standard_normal((rank, 768)).astype(np.float32)
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    entries = {
        f"{name}.lora_up.weight": ("F32", up.shape, up.tobytes()),
        f"{name}.lora_down.weight": ("F32", down.shape, down.tobytes()),
    }
    if alpha_entry is not None:
        entries[f"{name}.alpha"] = alpha_entry
    entries.update(extra or {})
    path = fixtures.write_raw_safetensors(tmp_path / "scale.safetensors", entries)
    return path, up, down


MODULE = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k"


@pytest.mark.parametrize(
    "alpha_entry,expected_alpha",
    [
        (("F32", (), np.float32(2.0).tobytes()), 2.0),
        (("F16", (), np.float16(2.0).tobytes()), 2.0),
        (("BF16", (), fixtures.bf16_bytes([2.0])), 2.0),
        (("I64", (), np.int64(2).tobytes()), 2.0),
    ],
    ids=["f32", "f16", "bf16", "int64"],
)
def test_alpha_over_rank_scale(tmp_path, alpha_entry, expected_alpha):
    path, up, down = kohya_single_module(tmp_path, alpha_entry)
    record = read_lora(path).modules[MODULE]
    assert isinstance(record.alpha, float)
    assert record.alpha == expected_alpha
    assert record.rank == 4
    assert record.scale == pytest.approx(expected_alpha / 4)
    assert fixtures.relative_distance((up * expected_alpha / 4, down), record.factors()) < TOLERANCE


def test_missing_alpha_scale_one(tmp_path):
    path, _, _ = kohya_single_module(tmp_path, None)
    record = read_lora(path).modules[MODULE]
    assert record.alpha is None
    assert record.scale == 1.0


def test_explicit_scale_key_wins(tmp_path):
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    extra = {f"{name}.scale": ("F32", (), np.float32(0.25).tobytes())}
    path, _, _ = kohya_single_module(tmp_path, ("F32", (), np.float32(8.0).tobytes()), extra=extra)
    assert read_lora(path).modules[MODULE].scale == 0.25


# ---------------------------------------------------------------- LyCORIS algorithms


LINEAR = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
LINEAR_ID = "clip_l.text_model.encoder.layers.0.self_attn.q_proj"
CONV = "lora_unet_down_blocks_1_resnets_0_conv1"
CONV_ID = "diffusion_model.input_blocks.4.0.in_layers.2"
ATTN2 = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"


def write_tensors(tmp_path, tensors, name="lycoris.safetensors"):
    # An attn2.to_k with a 768-wide context pins the family to SD1.x in every test file.
    rng = np.random.default_rng(9)
    tensors = dict(tensors)
    tensors.setdefault(f"{ATTN2}.lora_down.weight", rng.standard_normal((1, 768)).astype(np.float32))
    tensors.setdefault(f"{ATTN2}.lora_up.weight", rng.standard_normal((320, 1)).astype(np.float32))
    save_file({key: np.ascontiguousarray(value) for key, value in tensors.items()}, str(tmp_path / name))
    return tmp_path / name


def test_loha_dense_matches_hadamard(tmp_path):
    rng = np.random.default_rng(0)
    w1a, w1b = rng.standard_normal((768, 2)), rng.standard_normal((2, 768))
    w2a, w2b = rng.standard_normal((768, 2)), rng.standard_normal((2, 768))
    path = write_tensors(tmp_path, {
        f"{LINEAR}.hada_w1_a": w1a.astype(np.float32), f"{LINEAR}.hada_w1_b": w1b.astype(np.float32),
        f"{LINEAR}.hada_w2_a": w2a.astype(np.float32), f"{LINEAR}.hada_w2_b": w2b.astype(np.float32),
        f"{LINEAR}.alpha": np.asarray(1.0, dtype=np.float32),
    })
    record = read_lora(path).modules[LINEAR_ID]
    assert record.algorithm == "loha"
    assert record.scale == 0.5
    expected = (w1a.astype(np.float32) @ w1b.astype(np.float32)) * (w2a.astype(np.float32) @ w2b.astype(np.float32))
    assert np.allclose(record.delta.dense(), expected, rtol=1e-4, atol=1e-4)


def test_loha_tucker_conv(tmp_path):
    rng = np.random.default_rng(1)
    rank = 2
    t1, t2 = rng.standard_normal((rank, rank, 3, 3)), rng.standard_normal((rank, rank, 3, 3))
    w1a, w1b = rng.standard_normal((rank, 640)), rng.standard_normal((rank, 320))
    w2a, w2b = rng.standard_normal((rank, 640)), rng.standard_normal((rank, 320))
    tensors = {"hada_t1": t1, "hada_t2": t2, "hada_w1_a": w1a, "hada_w1_b": w1b, "hada_w2_a": w2a, "hada_w2_b": w2b}
    path = write_tensors(tmp_path, {f"{CONV}.{role}": value.astype(np.float32) for role, value in tensors.items()})
    record = read_lora(path).modules[CONV_ID]
    assert record.shape == (640, 320, 3, 3)
    cast = {role: value.astype(np.float32).astype(np.float64) for role, value in tensors.items()}
    first = np.einsum("pqhw,po,qi->oihw", cast["hada_t1"], cast["hada_w1_a"], cast["hada_w1_b"])
    second = np.einsum("pqhw,po,qi->oihw", cast["hada_t2"], cast["hada_w2_a"], cast["hada_w2_b"])
    assert np.allclose(record.delta.dense(), (first * second).reshape(640, -1), atol=1e-6)


@pytest.mark.parametrize("w1_factored", [False, True])
@pytest.mark.parametrize("w2_kind", ["full", "factored", "tucker"])
def test_lokr_factor_combinations(tmp_path, w1_factored, w2_kind):
    rng = np.random.default_rng(2)
    rank = 2
    tensors = {}
    if w1_factored:
        tensors["lokr_w1_a"], tensors["lokr_w1_b"] = rng.standard_normal((16, rank)), rng.standard_normal((rank, 16))
        w1 = tensors["lokr_w1_a"].astype(np.float32) @ tensors["lokr_w1_b"].astype(np.float32)
    else:
        tensors["lokr_w1"] = rng.standard_normal((16, 16))
        w1 = tensors["lokr_w1"].astype(np.float32)
    # Conv 640x320x3x3 = (16*40) x (16*20*9).
    if w2_kind == "full":
        tensors["lokr_w2"] = rng.standard_normal((40, 20, 3, 3))
        w2 = tensors["lokr_w2"].astype(np.float32).reshape(40, -1)
    elif w2_kind == "factored":
        tensors["lokr_w2_a"], tensors["lokr_w2_b"] = rng.standard_normal((40, rank)), rng.standard_normal((rank, 20, 3, 3))
        w2 = tensors["lokr_w2_a"].astype(np.float32) @ tensors["lokr_w2_b"].astype(np.float32).reshape(rank, -1)
    else:
        tensors["lokr_t2"] = rng.standard_normal((rank, rank, 3, 3))
        tensors["lokr_w2_a"], tensors["lokr_w2_b"] = rng.standard_normal((rank, 40)), rng.standard_normal((rank, 20))
        cast = {role: tensors[role].astype(np.float32).astype(np.float64) for role in ("lokr_t2", "lokr_w2_a", "lokr_w2_b")}
        w2 = np.einsum("pqhw,pc,qd->cdhw", cast["lokr_t2"], cast["lokr_w2_a"], cast["lokr_w2_b"]).reshape(40, -1)
    tensors["alpha"] = np.asarray(1.0)
    path = write_tensors(tmp_path, {f"{CONV}.{role}": value.astype(np.float32) for role, value in tensors.items()})
    lora = read_lora(path)
    record = lora.modules[CONV_ID]
    assert record.algorithm == "lokr"
    assert np.allclose(record.delta.dense(), np.kron(w1, w2), rtol=1e-4, atol=1e-4)
    full_full = not w1_factored and w2_kind == "full"
    assert record.scale == (1.0 if full_full else 0.5)
    assert any(finding.code == "lokr_full_alpha_ignored" for finding in lora.findings) == full_full


def test_locon_tucker_mid(tmp_path):
    rng = np.random.default_rng(4)
    down, mid, up = rng.standard_normal((2, 320, 1, 1)), rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((640, 2, 1, 1))
    path = write_tensors(tmp_path, {
        f"{CONV}.lora_down.weight": down.astype(np.float32), f"{CONV}.lora_mid.weight": mid.astype(np.float32),
        f"{CONV}.lora_up.weight": up.astype(np.float32), f"{CONV}.alpha": np.asarray(2.0, dtype=np.float32),
    })
    record = read_lora(path).modules[CONV_ID]
    assert record.algorithm == "locon_tucker"
    cast = [value.astype(np.float32).astype(np.float64) for value in (up, mid, down)]
    expected = np.einsum("oa,abhw,bi->oihw", cast[0][:, :, 0, 0], cast[1], cast[2][:, :, 0, 0])
    assert np.allclose(record.dense(), expected.reshape(640, -1), atol=1e-6)


def test_norm_algorithm_recorded(tmp_path):
    name = "lora_unet_down_blocks_1_resnets_0_norm1"
    path = write_tensors(tmp_path, {f"{name}.w_norm": np.ones(320, np.float32), f"{name}.b_norm": np.zeros(320, np.float32)})
    record = read_lora(path).modules["diffusion_model.input_blocks.4.0.in_layers.0"]
    assert record.algorithm == "norm"
    assert record.delta is None
    assert record.tensors["w_norm"].shape == (320,)


@pytest.mark.parametrize(
    "roles,algorithm",
    [
        ({"a1.weight": (768, 2), "a2.weight": (2, 768), "b1.weight": (768, 2), "b2.weight": (2, 768)}, "glora"),
        ({"oft_blocks": (4, 192, 192)}, "oft"),
        ({"oft_blocks": (2, 4, 96, 96)}, "boft"),
    ],
)
def test_base_dependent_algorithms_flagged(tmp_path, roles, algorithm):
    rng = np.random.default_rng(5)
    tensors = {f"{LINEAR}.{role}": rng.standard_normal(shape).astype(np.float32) for role, shape in roles.items()}
    lora = read_lora(write_tensors(tmp_path, tensors))
    record = lora.modules[LINEAR_ID]
    assert record.algorithm == algorithm
    assert record.delta is None
    assert any(finding.code == "unsupported_algorithm" for finding in lora.findings)


# ---------------------------------------------------------------- vocabularies


@pytest.mark.parametrize("family,count", [("SD1.x", 264), ("SD2.x", 330), ("SDXL", 986), ("Flux", 304)])
def test_module_vocabulary_default_counts(family, count):
    vocabulary = module_vocabulary(family)
    conv = sum(1 for module_id in vocabulary if module_shape(family, module_id)[-1:] == (3,)
               or module_id.endswith((".emb_layers.1", ".skip_connection")))
    assert len(vocabulary) - conv == count
    assert len(set(vocabulary)) == len(vocabulary)


def test_module_vocabulary_locon_counts():
    assert len(module_vocabulary("SD1.x")) == 264 + 86
    assert len(module_vocabulary("SDXL")) == 986 + 66


def test_module_shapes_reference_values():
    assert module_shape("SD1.x", "diffusion_model.input_blocks.1.1.proj_in") == (320, 320, 1, 1)
    assert module_shape("SDXL", "diffusion_model.input_blocks.7.1.transformer_blocks.0.attn2.to_k") == (1280, 2048)
    assert module_shape("SD2.x", "clip_h.text_model.encoder.layers.22.mlp.fc1") == (4096, 1024)
    assert module_shape("Flux", "diffusion_model.single_blocks.0.linear2") == (3072, 15360)
    assert module_shape("SD1.x", "diffusion_model.output_blocks.2.1.conv") == (1280, 1280, 3, 3)

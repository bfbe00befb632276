"""Reading cases that reference loaders have failed on, plus findings and non-LoRA files."""

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import lora_fixtures as fixtures
from lora_embedding.errors import LoraReadError, NotALoraError
from lora_embedding.reader import inspect_file, read_lora

RNG = np.random.default_rng(11)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def save(tmp_path, tensors, metadata=None, name="lora.safetensors"):
    save_file({key: np.ascontiguousarray(value) for key, value in tensors.items()}, str(tmp_path / name), metadata=metadata)
    return tmp_path / name


def codes(lora):
    return {finding.code for finding in lora.findings}


def sdxl_kohya_base():
    """A few SDXL kohya modules in LDM naming, enough to pin the family."""
    name = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    return {f"{name}.lora_down.weight": randn(1, 2048), f"{name}.lora_up.weight": randn(640, 1),
            f"{name}.alpha": np.asarray(1.0, np.float32)}


def test_lokr_on_sdxl_second_text_encoder(tmp_path):
    name = "lora_te2_text_model_encoder_layers_3_mlp_fc1"
    tensors = sdxl_kohya_base()
    tensors.update({f"{name}.lokr_w1": randn(64, 32), f"{name}.lokr_w2_a": randn(80, 2),
                    f"{name}.lokr_w2_b": randn(2, 40), f"{name}.alpha": np.asarray(2.0, np.float32)})
    lora = read_lora(save(tmp_path, tensors))
    record = lora.modules["clip_g.text_model.encoder.layers.3.mlp.fc1"]
    assert record.algorithm == "lokr"
    assert record.shape == (5120, 1280)
    assert lora.unmapped_keys == []


def test_dora_scale_kept_on_sdxl_ldm_names(tmp_path):
    tensors = sdxl_kohya_base()
    tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.dora_scale"] = np.ones((640, 1), np.float32)
    lora = read_lora(save(tmp_path, tensors))
    record = lora.modules["diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k"]
    assert record.dora_scale.shape == (640, 1)
    assert lora.unmapped_keys == []


def test_dora_optional_per_module(tmp_path):
    tensors = sdxl_kohya_base()
    name = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
    tensors.update({f"{name}.lora_down.weight": randn(1, 640), f"{name}.lora_up.weight": randn(640, 1)})
    tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.dora_scale"] = np.ones((640, 1), np.float32)
    lora = read_lora(save(tmp_path, tensors))
    assert lora.modules["diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q"].dora_scale is None


def test_peft_magnitude_vector_mixed_separators(tmp_path):
    truth = fixtures.make_truth(fixtures.SD15_MODULES)
    path = fixtures.write_kohya_converted(tmp_path / "dora.safetensors", truth, fixtures.SD15_MODULES, with_magnitude=True)
    lora = read_lora(path)
    assert lora.unmapped_keys == []
    record = lora.modules["diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k"]
    assert record.dora_scale.shape == (320,)
    assert record.scale == 1.0


def test_full_diff_with_bias(tmp_path):
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    diff = randn(320, 768)
    lora = read_lora(save(tmp_path, {f"{name}.diff": diff, f"{name}.diff_b": randn(320)}))
    record = lora.modules["diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k"]
    assert record.algorithm == "full"
    assert record.scale == 1.0
    assert np.allclose(record.dense(), diff)
    assert record.tensors["bias"].shape == (320,)


def test_ia3_recognised_and_flagged(tmp_path):
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    lora = read_lora(save(tmp_path, {f"{name}.weight": randn(320), f"{name}.on_input": np.asarray(0, np.int64)}))
    record = lora.modules["diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k"]
    assert record.algorithm == "ia3"
    assert record.delta is None
    assert "unsupported_algorithm" in codes(lora)


def test_lycoris_flux_lokr_full_factors_scale_one(tmp_path):
    tensors = {}
    for letter in "qkv":
        name = f"lycoris_single_transformer_blocks_17_attn_to_{letter}"
        tensors.update({f"{name}.lokr_w1": randn(48, 48), f"{name}.lokr_w2": randn(64, 64),
                        f"{name}.alpha": np.asarray(100000.0, np.float32)})
    lora = read_lora(save(tmp_path, tensors))
    assert lora.family == "Flux"
    record = lora.modules["diffusion_model.single_blocks.17.linear1"]
    assert record.shape == (21504, 3072)
    assert "lokr_full_alpha_ignored" in codes(lora)
    probe = np.eye(3072)[:, :1]
    w1 = tensors["lycoris_single_transformer_blocks_17_attn_to_k.lokr_w1"]
    w2 = tensors["lycoris_single_transformer_blocks_17_attn_to_k.lokr_w2"]
    assert np.allclose(record.matmul(probe)[3072:6144], np.kron(w1, w2)[:, :1], atol=1e-4)


def test_bfl_control_lora_flags_set_and_shape(tmp_path):
    tensors = {
        "img_in.lora_A.weight": randn(1, 128), "img_in.lora_B.weight": randn(3072, 1),
        "double_blocks.0.img_attn.qkv.lora_A.weight": randn(1, 3072),
        "double_blocks.0.img_attn.qkv.lora_B.weight": randn(9216, 1),
        "double_blocks.0.img_attn.qkv.lora_B.bias": randn(9216),
        "double_blocks.0.img_attn.norm.key_norm.scale": randn(128),
        "single_blocks.0.norm.query_norm.scale": randn(128),
    }
    lora = read_lora(save(tmp_path, tensors))
    assert lora.family == "Flux"
    assert lora.format == "bfl_control"
    assert {"set_weight", "shape_mismatch"} <= codes(lora)
    assert lora.modules["diffusion_model.double_blocks.0.img_attn.qkv"].tensors["bias"].shape == (9216,)
    assert lora.modules["diffusion_model.img_in"].shape == (3072, 128)


def test_sd3_diffusers_keys_map_to_joint_blocks(tmp_path):
    tensors = {}
    for letter in "qkv":
        prefix = f"transformer.transformer_blocks.0.attn.to_{letter}"
        tensors.update({f"{prefix}.lora_A.weight": randn(1, 1536), f"{prefix}.lora_B.weight": randn(1536, 1)})
    tensors.update({"transformer.transformer_blocks.5.attn.add_q_proj.lora_A.weight": randn(1, 1536),
                    "transformer.transformer_blocks.5.attn.add_q_proj.lora_B.weight": randn(1536, 1)})
    lora = read_lora(save(tmp_path, tensors))
    assert lora.family == "SD3"
    assert lora.modules["diffusion_model.joint_blocks.0.x_block.attn.qkv"].shape == (4608, 1536)
    assert "diffusion_model.joint_blocks.5.context_block.attn.qkv" in lora.modules


def test_onetrainer_sd3_two_part_keys(tmp_path):
    name = "lora_transformer_transformer_blocks_2_attn_to_out_0"
    tensors = {f"{name}.lora_down.weight": randn(2, 1536), f"{name}.lora_up.weight": randn(1536, 2),
               f"{name}.alpha": np.asarray(1.0, np.float32),
               "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": randn(2, 768),
               "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": randn(768, 2)}
    lora = read_lora(save(tmp_path, tensors))
    assert lora.family == "SD3"
    assert lora.format == "onetrainer"
    assert lora.modules["diffusion_model.joint_blocks.2.x_block.attn.proj"].scale == 0.5
    assert "clip_l.text_model.encoder.layers.0.self_attn.q_proj" in lora.modules


def test_peft_prefixed_lokr_maps(tmp_path):
    tensors = {"base_model.model.conv_in.lokr_w1": randn(16, 2), "base_model.model.conv_in.lokr_w2": randn(20, 18),
               "base_model.model.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lokr_w1": randn(16, 32),
               "base_model.model.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lokr_w2": randn(20, 24)}
    lora = read_lora(save(tmp_path, tensors))
    assert lora.family == "SD1.x"
    assert lora.modules["diffusion_model.input_blocks.0.0"].shape == (320, 4, 3, 3)


def test_boft_without_alpha_reads(tmp_path):
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q"
    lora = read_lora(save(tmp_path, {f"{name}.oft_blocks": randn(2, 4, 40, 40),
                                     "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": randn(1, 768),
                                     "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": randn(320, 1)}))
    record = lora.modules["diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_q"]
    assert record.algorithm == "boft"
    assert record.alpha is None


def test_cloneofsimo_unknown_order_rejected(tmp_path):
    tensors = {"unet:0:up": randn(320, 1), "unet:0:down": randn(1, 320),
               "unet:1:up": randn(999, 1), "unet:1:down": randn(1, 320)}
    with pytest.raises(LoraReadError, match="no known module order"):
        read_lora(save(tmp_path, tensors))


def test_pickled_lora_reads(tmp_path):
    truth = fixtures.make_truth(fixtures.SD15_MODULES)
    source = fixtures.write_diffusers_old(tmp_path / "old.safetensors", truth, fixtures.SD15_MODULES)
    state = {key: torch.from_numpy(value) for key, value in load_file(str(source)).items()}
    torch.save(state, tmp_path / "pytorch_lora_weights.bin")
    lora = read_lora(tmp_path / "pytorch_lora_weights.bin")
    assert lora.container == "pickle"
    assert lora.format == "diffusers_old"
    assert len(lora.modules) == 5


def test_bf16_pickle_reads(tmp_path):
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    state = {f"{name}.lora_down.weight": torch.randn(2, 768, dtype=torch.bfloat16),
             f"{name}.lora_up.weight": torch.randn(320, 2, dtype=torch.bfloat16),
             f"{name}.alpha": torch.tensor(1.0, dtype=torch.bfloat16)}
    torch.save(state, tmp_path / "bf16.pt")
    lora = read_lora(tmp_path / "bf16.pt")
    record = lora.modules["diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k"]
    assert record.scale == 0.5
    assert "low_precision_storage" in codes(lora)


@pytest.mark.parametrize("width,family", [(768, "SD1.x"), (1024, "SD2.x"), (2048, "SDXL")])
def test_family_from_cross_attention_width(tmp_path, width, family):
    channels = 640
    name = ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k" if family == "SDXL"
            else "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k")
    lora = read_lora(save(tmp_path, {f"{name}.lora_down.weight": randn(1, width),
                                     f"{name}.lora_up.weight": randn(channels, 1)}))
    assert lora.family == family


def test_sd1_text_encoder_on_sd2_width_detected(tmp_path):
    name = "lora_te_text_model_encoder_layers_0_mlp_fc1"
    lora = read_lora(save(tmp_path, {f"{name}.lora_down.weight": randn(1, 1024), f"{name}.lora_up.weight": randn(4096, 1)}))
    assert lora.family == "SD2.x"


def test_sdxl_detected_without_metadata(tmp_path):
    lora = read_lora(save(tmp_path, sdxl_kohya_base()))
    assert lora.family == "SDXL"
    assert lora.metadata == {}


def test_metadata_disagreement_reported_shapes_win(tmp_path):
    lora = read_lora(save(tmp_path, sdxl_kohya_base(), metadata={"ss_base_model_version": "sd_v1", "ss_v2": "False"}))
    assert lora.family == "SDXL"
    assert "family_metadata_mismatch" in codes(lora)


def test_shape_mismatch_reported_not_raised(tmp_path):
    name = "lora_unet_single_blocks_0_linear1"
    tensors = {f"{name}.lora_down.weight": randn(1, 1728), f"{name}.lora_up.weight": randn(21504, 1),
               "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": randn(1, 3072),
               "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": randn(9216, 1)}
    lora = read_lora(save(tmp_path, tensors))
    assert lora.family == "Flux"
    assert "shape_mismatch" in codes(lora)


def test_update_for_vector_weight_reported(tmp_path):
    name = "lora_unet_down_blocks_1_resnets_0_norm1"
    tensors = {f"{name}.lokr_w1": randn(16, 16), f"{name}.lokr_w2": randn(80, 80),
               "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": randn(1, 768),
               "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": randn(320, 1)}
    lora = read_lora(save(tmp_path, tensors))
    assert "shape_mismatch" in codes(lora)


def test_unmapped_keys_listed(tmp_path):
    tensors = sdxl_kohya_base()
    tensors.update({"lora_unet_not_a_block_0.lora_down.weight": randn(1, 4),
                    "lora_unet_not_a_block_0.lora_up.weight": randn(4, 1), "stray_tensor": randn(3)})
    lora = read_lora(save(tmp_path, tensors))
    assert set(lora.unmapped_keys) == {"lora_unet_not_a_block_0.lora_down.weight",
                                       "lora_unet_not_a_block_0.lora_up.weight", "stray_tensor"}
    assert lora.stored_modules == 2
    assert "unmapped_key" in codes(lora)


def test_dotted_kohya_names_group_correctly(tmp_path):
    prefix = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0.attn2.to_k"
    lora = read_lora(save(tmp_path, {f"{prefix}.lora_down.weight": randn(1, 768), f"{prefix}.lora_up.weight": randn(320, 1)}))
    assert list(lora.modules) == ["diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k"]


def test_nan_values_reported(tmp_path):
    tensors = sdxl_kohya_base()
    tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight"][0, 0] = np.nan
    assert "nan_or_inf" in codes(read_lora(save(tmp_path, tensors)))


def test_all_zero_lora_unusable(tmp_path):
    tensors = sdxl_kohya_base()
    tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight"][:] = 0
    path = save(tmp_path, tensors)
    with pytest.raises(LoraReadError, match="zero"):
        read_lora(path)
    assert "all_zero" in codes(read_lora(path, allow_all_zero=True))
    assert "zero" in inspect_file(path)["error"]


def test_large_alpha_reported(tmp_path):
    tensors = sdxl_kohya_base()
    tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.alpha"] = np.asarray(64.0, np.float32)
    assert "large_alpha" in codes(read_lora(save(tmp_path, tensors)))


def test_split_qkv_alpha_reported(tmp_path):
    truth = fixtures.make_flux_truth()
    path = fixtures.write_flux_kohya(tmp_path / "flux.safetensors", truth)
    tensors = load_file(str(path))
    metadata = {"ss_network_args": '{"split_qkv": "True"}', "ss_base_model_version": "flux1"}
    assert "split_qkv_alpha" in codes(read_lora(save(tmp_path, tensors, metadata=metadata, name="split.safetensors")))


@pytest.mark.parametrize(
    "tensors,match",
    [
        ({"model.diffusion_model.input_blocks.0.0.weight": np.zeros((4, 4), np.float32)}, "checkpoint"),
        ({"emb_params": np.zeros((2, 768), np.float32)}, "textual-inversion"),
        ({"clip_l": np.zeros((2, 768), np.float32), "clip_g": np.zeros((2, 1280), np.float32)}, "textual-inversion"),
        ({"encoder.down.0.block.0.conv1.weight": np.zeros((4, 4), np.float32),
          "decoder.up.0.block.0.conv1.weight": np.zeros((4, 4), np.float32)}, "VAE"),
    ],
    ids=["checkpoint", "embedding", "sdxl_embedding", "vae"],
)
def test_non_lora_files_rejected(tmp_path, tensors, match):
    with pytest.raises(NotALoraError, match=match):
        read_lora(save(tmp_path, tensors))

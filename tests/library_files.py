"""Small real LoRA files for library tests: SD1.5 attention modules in the diffusers dialect."""

import numpy as np
from safetensors.numpy import save_file

# (module path in diffusers naming, out features, in features) of a few SD1.5 UNet attention projections.
SD15_MODULES = [
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 320, 320),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k", 320, 320),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v", 320, 320),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", 320, 768),
    ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", 640, 640),
    ("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v", 640, 768),
    ("mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0", 1280, 1280),
    ("up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", 1280, 768),
]


def style_factors(style_seed, rank=4):
    """Return ``{module: up factor}``: the learned output directions shared by one style."""
    rng = np.random.default_rng(style_seed)
    return {name: rng.standard_normal((out, rank)).astype(np.float32) * 0.05 for name, out, _ in SD15_MODULES}


def write_lora(path, style_seed, run_seed, rank=4, dtype=np.float32, metadata=None):
    """Write a diffusers-dialect SD1.5 LoRA whose up factors come from ``style_seed``.

    Two files with the same ``style_seed`` and different ``run_seed`` behave
    like one training set trained twice with different seeds.
    """
    ups = style_factors(style_seed, rank)
    rng = np.random.default_rng(run_seed)
    tensors = {}
    for name, out, inp in SD15_MODULES:
        noise = rng.standard_normal((out, rank)).astype(np.float32) * 0.005
        tensors[f"unet.{name}.lora.up.weight"] = (ups[name] + noise).astype(dtype)
        tensors[f"unet.{name}.lora.down.weight"] = (rng.standard_normal((rank, inp)) * 0.1).astype(dtype)
    save_file(tensors, str(path), metadata=metadata or {"format": "pt"})
    return path

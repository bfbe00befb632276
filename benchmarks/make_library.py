"""Build synthetic LoRA libraries with real module layouts for the benchmarks.

Each library is a folder of kohya-dialect ``.safetensors`` files with every
default module of its family (SD1.x: 264 modules, 72 in the CLIP-L text
encoder and 192 in the UNet; SDXL: 986 modules over CLIP-L, CLIP-G and the
UNet), fp16 factors and an fp16 alpha, as kohya sd-scripts saves them.

Disk space limits how many distinct files fit (an SDXL rank-16 file is about
110 MB), so a library of N files holds ``--distinct`` distinct files, each
hard-linked several times. Every link is a separate path for the index, so
each one is still fully read and embedded.

Usage::

    python benchmarks/make_library.py --kind sd15-r32-te --files 100 1000
    python benchmarks/make_library.py --kind sdxl-r16 --files 100 1000 --distinct 50
"""

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_embedding.module_names import alias_table, module_shape, module_vocabulary  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/work/bench")


@dataclass(frozen=True)
class LibraryKind:
    """The layout of one synthetic library: family, rank and trained components."""

    family: str
    rank: int
    default_modules: int
    text_encoder: bool
    base_model: str


KINDS = {
    "sd15-r32-te": LibraryKind("SD1.x", 32, 264, True, "sd_v1"),
    "sdxl-r16": LibraryKind("SDXL", 16, 986, True, "sdxl_base_v1-0"),
}
"""Library kinds by name. ``default_modules`` is the size of the family's default kohya target list."""


def diffusers_unet_paths(family):
    """Return ``{module id: diffusers path}`` for the UNet modules of ``family``.

    Kohya names SD1.x UNet modules by their diffusers path (``down_blocks…``)
    and SDXL ones by their LDM path, so only SD1.x needs this table.
    """
    aliases, _ = alias_table(family, "unet")
    paths = {}
    for alias, target in aliases.items():
        if target.row_start is None and alias.startswith(("down_blocks_", "mid_block_", "up_blocks_")):
            paths.setdefault(target.module_id, alias)
    return paths


def kohya_prefix(module_id, family, diffusers_paths):
    """Return the kohya key prefix (``lora_unet_…``, ``lora_te_…``) of a canonical module id."""
    component, native = module_id.split(".", 1)
    underscored = native.replace(".", "_")
    if component == "clip_g":
        return "lora_te2_" + underscored
    if component == "clip_l":
        return ("lora_te1_" if family == "SDXL" else "lora_te_") + underscored
    if family == "SDXL":
        return "lora_unet_" + underscored
    return "lora_unet_" + diffusers_paths[module_id]


def module_layout(kind):
    """Return ``[(module id, weight shape)]`` of the default kohya target list of a library kind."""
    modules = module_vocabulary(kind.family)[: kind.default_modules]
    if not kind.text_encoder:
        modules = [m for m in modules if m.startswith("diffusion_model.")]
    return [(module_id, module_shape(kind.family, module_id)) for module_id in modules]


def lora_tensors(kind, layout, seed):
    """Return the fp16 tensors of one random kohya LoRA of ``kind``."""
    rng = np.random.default_rng(seed)
    diffusers_paths = diffusers_unet_paths(kind.family) if kind.family != "SDXL" else {}
    rank = kind.rank
    tensors = {}
    for module_id, shape in layout:
        prefix = kohya_prefix(module_id, kind.family, diffusers_paths)
        out_features, in_features = shape[0], int(np.prod(shape[1:]))
        up = rng.standard_normal((out_features, rank), dtype=np.float32) * 0.01
        down = rng.standard_normal((rank, in_features), dtype=np.float32) / np.sqrt(in_features)
        if len(shape) == 4:
            up = up.reshape(out_features, rank, 1, 1)
            down = down.reshape(rank, *shape[1:])
        tensors[f"{prefix}.lora_up.weight"] = up.astype(np.float16)
        tensors[f"{prefix}.lora_down.weight"] = down.astype(np.float16)
        tensors[f"{prefix}.alpha"] = np.asarray(rank / 2, dtype=np.float16)
    return tensors


def lora_metadata(kind, seed):
    """Return kohya-style ``__metadata__`` with a few training tags."""
    return {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(kind.rank),
        "ss_network_alpha": str(kind.rank / 2),
        "ss_base_model_version": kind.base_model,
        "ss_output_name": f"bench_{seed:04d}",
        "ss_tag_frequency": '{"img": {"1girl": 40, "solo": 31, "style%d": 12}}' % seed,
    }


def write_distinct_files(kind_name, count, folder):
    """Write ``count`` distinct LoRA files into ``folder`` (existing ones are kept); return their paths."""
    kind = KINDS[kind_name]
    layout = module_layout(kind)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = folder / f"{kind_name}_{seed:04d}.safetensors"
        if not path.exists():
            started = time.perf_counter()
            partial = path.with_suffix(".partial")
            save_file(lora_tensors(kind, layout, seed), str(partial), metadata=lora_metadata(kind, seed))
            os.replace(partial, path)
            logger.info("wrote %s (%.1f MB, %.1f s)", path, path.stat().st_size / 1e6, time.perf_counter() - started)
        paths.append(path)
    return paths


def link_library(sources, files, folder):
    """Fill ``folder`` with ``files`` hard links that cycle through ``sources``; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(files):
        link = folder / f"lora_{number:05d}.safetensors"
        if not link.exists():
            os.link(sources[number % len(sources)], link)
    return folder


def build_library(kind_name, files, distinct=50, root=DEFAULT_ROOT):
    """Build (or reuse) the library ``root/<kind>-<files>`` of ``files`` hard-linked LoRAs.

    Parameters
    ----------
    kind_name : str
        A key of :data:`KINDS`.
    files : int
        Number of paths in the library.
    distinct : int
        Number of distinct files the paths link to (at most ``files``).
    root : Path
        Folder holding the distinct sources and the libraries.

    Returns
    -------
    Path
        The library folder.
    """
    root = Path(root)
    sources = write_distinct_files(kind_name, min(files, distinct), root / "sources" / kind_name)
    return link_library(sources, files, root / f"{kind_name}-{files}")


def main(argv=None):
    """Build the libraries named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=sorted(KINDS), required=True, help="library layout")
    parser.add_argument("--files", type=int, nargs="+", default=[100], help="library sizes in files (default: 100)")
    parser.add_argument("--distinct", type=int, default=50, help="distinct files per library (default: 50)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"output folder (default: {DEFAULT_ROOT})")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for files in args.files:
        folder = build_library(args.kind, files, args.distinct, args.root)
        logger.info("library %s: %d files", folder, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())

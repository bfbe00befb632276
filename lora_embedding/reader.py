"""Read any common LoRA file into the canonical form of :mod:`lora_embedding.canonical`.

:func:`read_lora` opens the container, groups keys per module, detects the
base-model family from names and shapes, maps every module to its native id,
builds the update operators with the right scale, and records findings
(unmapped keys, shape mismatches, NaN/Inf, all-zero updates, unsupported
algorithms, odd alphas). :func:`inspect_file` wraps it into the JSON object
of ``lora-embedding inspect`` and never raises for a bad file.
"""

import logging
import os
from collections import Counter

import numpy as np

from . import algorithms, cloneofsimo
from .canonical import Finding, FullDelta, LoraFile, LowRankDelta, ModuleRecord, RowStackDelta
from .containers import LOW_PRECISION_DTYPES, open_tensors, weights_hash
from .dialects import detect_format, group_keys
from .errors import LoraReadError, NotALoraError
from .family import detect_family, expected_flat_shape, family_of_variant, resolve
from .metadata import peft_alpha_config, summarize

__all__ = ["LORA_EXTENSIONS", "inspect_file", "is_usable", "read_lora"]

logger = logging.getLogger(__name__)

LORA_EXTENSIONS = (".safetensors", ".pt", ".ckpt", ".bin")

# An alpha this much larger than the rank multiplies the update by more than 16.
LARGE_ALPHA_FACTOR = 16


def read_lora(path, allow_all_zero=False):
    """Read a LoRA file into canonical form.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors`` file or a pickled ``.pt``/``.ckpt``/``.bin`` file.
    allow_all_zero : bool
        Return a file whose every update is zero (an untrained checkpoint)
        with an ``all_zero`` finding instead of raising.

    Returns
    -------
    LoraFile

    Raises
    ------
    LoraReadError
        When the file is missing, malformed, none of its modules maps to a
        supported base model, or every update is zero.
    UnsafeFileError
        When a pickle needs more than tensors to load.
    NotALoraError
        When the file is a full checkpoint, a textual-inversion embedding,
        a VAE or contains no LoRA tensors.
    """
    path = os.fspath(path)
    source = open_tensors(path)
    keys = source.keys()
    if getattr(source, "is_list", False) or any(":" in key for key in keys[:64]):
        lora = _read_index_named(path, source)
    else:
        lora = _read_named(path, source)

    if not allow_all_zero and any(finding.code == "all_zero" for finding in lora.findings):
        raise LoraReadError(path, "every up factor is zero, so the LoRA has no effect (an untrained checkpoint)")
    return lora


def is_usable(lora):
    """Return True when a read file has at least one non-zero update."""
    return bool(lora.modules) and not any(finding.code == "all_zero" for finding in lora.findings)


# ---------------------------------------------------------------- named keys


def _read_named(path, source):
    metadata = dict(source.metadata)
    groups, unparsed = group_keys(source.keys())
    adapters = [group for group in groups.values() if group.is_adapter()]
    if not adapters:
        raise NotALoraError(path, _describe_non_lora(source.keys()))

    entries = []
    for group in adapters:
        algorithm = algorithms.algorithm_of(set(group.keys))
        shapes = {role: source.info(key).shape for role, key in group.keys.items()}
        entries.append((group, algorithm, shapes))

    variant, findings = detect_family(
        [(group, algorithms.implied_shape(algorithm, shapes)) for group, algorithm, shapes in entries],
        metadata,
    )
    if variant is None:
        names = ", ".join(group.name for group in adapters[:3])
        raise LoraReadError(
            path,
            f"none of the {len(adapters)} LoRA modules maps to a supported base model "
            f"(SD1.x, SD2.x, SDXL, SD3, Flux); first modules: {names}",
        )

    lora = LoraFile(
        path=path,
        container=source.container,
        format=detect_format(groups, metadata),
        family=family_of_variant(variant),
        modules={},
        stored_modules=len(adapters),
        metadata=metadata,
        summary=summarize(metadata),
        findings=findings,
    )
    builder = _RecordBuilder(lora, source, variant, peft_alpha_config(metadata))
    for group, algorithm, shapes in entries:
        builder.add(group, algorithm, shapes)
    builder.finish()

    set_weights = [group for group in groups.values() if group.is_set_weight()]
    if set_weights:
        lora.findings.append(Finding(
            "set_weight",
            f"{len(set_weights)} tensors replace base weights outright (control LoRA norm scales or "
            "set/reshape entries); they are not part of the update",
        ))
    leftovers = [key for group in groups.values() if not group.is_adapter() and not group.is_set_weight()
                 for key in group.keys.values()]
    _add_unmapped(lora, unparsed + leftovers)
    _add_file_findings(lora, source)
    return lora


def _describe_non_lora(keys):
    """Say what a file without LoRA tensors is, for NotALoraError."""
    joined = "\n".join(keys[:2000])
    if "model.diffusion_model." in joined or "first_stage_model." in joined or "conditioner.embedders" in joined:
        return "this is a full Stable Diffusion checkpoint (model.diffusion_model.* weights), not a LoRA"
    if "string_to_param" in joined or "emb_params" in joined or set(keys) <= {"clip_l", "clip_g"}:
        return "this is a textual-inversion embedding, not a LoRA"
    if any(key.startswith(("encoder.down.", "decoder.", "encoder.conv_in", "quant_conv")) for key in keys):
        return "this is a VAE, not a LoRA"
    if keys and all(key.endswith((".weight", ".bias")) for key in keys):
        return f"this file contains plain model weights ({len(keys)} tensors such as {keys[0]!r}), not a LoRA"
    sample = ", ".join(repr(key) for key in keys[:3]) or "none"
    return f"no LoRA tensors found among {len(keys)} keys (first keys: {sample})"


class _RecordBuilder:
    """Build ModuleRecords for one file, merging split q/k/v parts into fused targets."""

    def __init__(self, lora, source, variant, peft_alpha):
        self.lora = lora
        self.source = source
        self.variant = variant
        self.peft_alpha = peft_alpha
        self.parts = {}  # module_id -> [(row_start, operator, algorithm, rank, keys)]
        self.zero = {}  # module_id -> bool
        self.unmapped = []

    def add(self, group, algorithm, shapes):
        resolved = resolve(group, self.variant)
        if resolved is None:
            self.unmapped.extend(group.keys.values())
            return
        target, full_shape = resolved
        arrays = {role: self.source.load(key) for role, key in group.keys.items()}
        self._check_finite(target.module_id, arrays)

        if algorithm in algorithms.BASE_DEPENDENT:
            self._add_base_dependent(group, algorithm, target, arrays)
            return

        if algorithm == "norm":
            self._add_norm(group, target, full_shape, arrays)
            return

        implied = algorithms.implied_shape(algorithm, shapes)
        expected = expected_flat_shape(target, full_shape)
        if tuple(implied) != expected:
            self.lora.findings.append(Finding(
                "shape_mismatch",
                f"{group.name}: the update is {implied[0]}x{implied[1]} but {target.module_id} in "
                f"{self.lora.family} needs {expected[0]}x{expected[1]}",
                target.module_id,
            ))
            shape = tuple(implied)
        elif target.row_start is None:
            shape = full_shape
        else:
            shape = (target.row_count,) + tuple(full_shape[1:])

        alpha = self._alpha(group, arrays)
        rank = algorithms.rank_of(algorithm, shapes)
        explicit = algorithms.scalar(arrays["scale"]) if "scale" in arrays else None
        scale, note = algorithms.compute_scale(algorithm, alpha, rank, explicit)
        self._note_alpha(target.module_id, algorithm, alpha, rank, note)

        delta = algorithms.build_delta(algorithm, arrays, shape)
        if target.swap_halves:
            delta = _swap_halves(delta)
        zero = any(not np.any(arrays[role]) for role in algorithms.up_factor_roles(algorithm, arrays))
        record = ModuleRecord(
            module_id=target.module_id,
            algorithm=algorithm,
            delta=delta,
            alpha=alpha,
            rank=rank,
            scale=scale,
            source_keys=tuple(group.keys.values()),
            tensors={role: array for role, array in arrays.items() if role not in ("alpha", "scale", "dora_scale")},
            dora_scale=arrays.get("dora_scale"),
        )
        if target.row_start is None or shape == tuple(implied) and tuple(implied) != expected:
            self._store(record, zero)
        else:
            self.parts.setdefault(target.module_id, []).append((target.row_start, record, full_shape))
            self.zero[target.module_id] = self.zero.get(target.module_id, True) and zero

    def _add_base_dependent(self, group, algorithm, target, arrays):
        if algorithm == "oft" and "oft_blocks" in arrays and np.ndim(arrays["oft_blocks"]) == 4:
            algorithm = "boft"
        alpha = algorithms.scalar(arrays["alpha"]) if "alpha" in arrays else None
        record = ModuleRecord(
            module_id=target.module_id,
            algorithm=algorithm,
            alpha=alpha,
            rank=algorithms.rank_of(algorithm, {role: np.shape(array) for role, array in arrays.items()}),
            source_keys=tuple(group.keys.values()),
            tensors={role: array for role, array in arrays.items() if role != "alpha"},
            dora_scale=arrays.get("dora_scale"),
        )
        self.lora.findings.append(Finding(
            "unsupported_algorithm",
            f"{target.module_id}: {algorithm} updates depend on the base weights; the record keeps "
            "the tensors but has no update operator",
            target.module_id,
        ))
        self._store(record, zero=False)

    def _add_norm(self, group, target, full_shape, arrays):
        if tuple(np.shape(arrays["w_norm"])) != tuple(full_shape):
            self.lora.findings.append(Finding(
                "shape_mismatch",
                f"{group.name}: the norm update has shape {np.shape(arrays['w_norm'])} but {target.module_id} "
                f"in {self.lora.family} has shape {tuple(full_shape)}",
                target.module_id,
            ))
        record = ModuleRecord(
            module_id=target.module_id,
            algorithm="norm",
            source_keys=tuple(group.keys.values()),
            tensors={role: array for role, array in arrays.items() if role != "scale"},
        )
        self._store(record, zero=not any(np.any(array) for array in arrays.values()))

    def _alpha(self, group, arrays):
        if "alpha" in arrays:
            return algorithms.scalar(arrays["alpha"])
        if not self.peft_alpha:
            return None
        prefixes = {"unet": ("", "unet", "transformer"), "auto": ("", "unet", "transformer")}
        for component in prefixes.get(group.component, ("", "text_encoder", "text_encoder_2")):
            if component not in self.peft_alpha:
                continue
            alpha, pattern = self.peft_alpha[component]
            for name, value in pattern.items():
                if group.path.endswith(name.replace(".", "_")):
                    return value
            return alpha
        return None

    def _note_alpha(self, module_id, algorithm, alpha, rank, note):
        if note == "lokr_full_alpha_ignored":
            self.lora.findings.append(Finding(
                note, f"{module_id}: both LoKr factors are full, so the stored alpha {alpha:g} is ignored (scale 1)",
                module_id,
            ))
        elif note == "zero_alpha":
            self.lora.findings.append(Finding(
                note, f"{module_id}: alpha is 0; using scale 1 as LyCORIS and kohya do", module_id,
            ))
        if alpha is not None and rank and alpha > LARGE_ALPHA_FACTOR * rank:
            self.lora.findings.append(Finding(
                "large_alpha",
                f"{module_id}: alpha {alpha:g} is more than {LARGE_ALPHA_FACTOR} times the rank {rank}",
                module_id,
            ))

    def _check_finite(self, module_id, arrays):
        for role, array in arrays.items():
            # One float64 reduction instead of an element-wise mask: NaN or Inf anywhere makes the sum non-finite.
            if np.issubdtype(np.asarray(array).dtype, np.floating) and not np.isfinite(array.sum(dtype=np.float64)):
                self.lora.findings.append(Finding(
                    "nan_or_inf", f"{module_id}: tensor {role} contains NaN or Inf values", module_id,
                ))
                return

    def _store(self, record, zero):
        if record.module_id in self.lora.modules:
            self.lora.findings.append(Finding(
                "duplicate_module",
                f"{record.module_id}: several stored modules map to it; keeping the first",
                record.module_id,
            ))
            return
        self.lora.modules[record.module_id] = record
        self.zero[record.module_id] = zero

    def finish(self):
        for module_id, parts in self.parts.items():
            self._store(_merge_parts(module_id, parts), self.zero[module_id])
        self.lora.unmapped_keys.extend(self.unmapped)
        if self.lora.modules and all(self.zero.get(module_id, False) for module_id in self.lora.modules):
            self.lora.findings.append(Finding("all_zero", "every up factor is zero, so the LoRA has no effect"))
        if not self.lora.modules and self.unmapped:
            raise LoraReadError(
                self.lora.path,
                f"none of the LoRA modules maps to {self.lora.family} module ids; "
                f"first unmapped keys: {', '.join(self.unmapped[:3])}",
            )


def _swap_halves(delta):
    """Swap the two output halves of an update (diffusers [scale, shift] -> BFL [shift, scale])."""
    half = delta.out_features // 2
    if isinstance(delta, LowRankDelta):
        delta.up = np.concatenate([delta.up[half:], delta.up[:half]], axis=0)
        return delta
    matrix = delta.dense()
    return FullDelta(np.concatenate([matrix[half:], matrix[:half]], axis=0).reshape(delta.shape), delta.shape)


def _scaled_operator(record):
    """Fold a record's scale into its operator so parts with different scales can be stacked."""
    factors = record.factors()
    if factors is not None:
        up, down = factors
        return LowRankDelta(up, down, record.delta.shape)
    return FullDelta(record.scale * record.delta.dense(), record.delta.shape)


def _merge_parts(module_id, parts):
    """Stack row-slice updates (split q/k/v, proj_mlp) of one fused weight into a RowStackDelta."""
    full_shape = parts[0][2]
    operators = [(start, _scaled_operator(record)) for start, record, _ in parts]
    records = [record for _, record, _ in parts]
    algorithm_names = {record.algorithm for record in records}
    ranks = [record.rank for record in records if record.rank is not None]
    dora = [record.dora_scale for record in records if record.dora_scale is not None]
    return ModuleRecord(
        module_id=module_id,
        algorithm=algorithm_names.pop() if len(algorithm_names) == 1 else "lora",
        delta=RowStackDelta(operators, full_shape),
        alpha=None,
        rank=sum(ranks) if ranks else None,
        scale=1.0,
        source_keys=tuple(key for record in records for key in record.source_keys),
        tensors={f"part{start}.{role}": array for (start, record, _) in parts for role, array in record.tensors.items()},
        dora_scale=np.concatenate([np.reshape(scale, -1) for scale in dora]) if len(dora) == len(records) else None,
    )


def _add_unmapped(lora, keys):
    if not keys:
        return
    lora.unmapped_keys.extend(keys)
    lora.unmapped_keys[:] = list(dict.fromkeys(lora.unmapped_keys))
    preview = ", ".join(lora.unmapped_keys[:5])
    lora.findings.append(Finding(
        "unmapped_key",
        f"{len(lora.unmapped_keys)} keys match no module of {lora.family}: {preview}",
    ))


def _add_file_findings(lora, source):
    dtypes = Counter(source.info(key).dtype for key in source.keys())
    low = sorted(dtype for dtype in dtypes if dtype in LOW_PRECISION_DTYPES)
    if low:
        lora.findings.append(Finding(
            "low_precision_storage",
            f"tensors are stored as {', '.join(low)}; they are widened to float32 on load",
        ))
    args = (lora.summary.get("network_args") or {})
    if str(args.get("split_qkv", "")).lower() == "true":
        lora.findings.append(Finding(
            "split_qkv_alpha",
            "the file was trained with split_qkv: its alpha refers to each q/k/v part, but every loader "
            "divides it by the merged rank, so the update is 3-4 times weaker than in training",
        ))


# ---------------------------------------------------------------- index-named keys (cloneofsimo)


def _read_index_named(path, source):
    pairs = _index_pairs(path, source)
    lora = LoraFile(
        path=path, container=source.container, format="cloneofsimo", family="unknown", modules={},
        stored_modules=sum(len(items) for items in pairs.values()), metadata=dict(source.metadata),
    )
    lora.summary = summarize(lora.metadata)
    tokens = [key for key in source.keys() if key.startswith("<") and key.endswith(">")]
    if tokens:
        lora.summary["pivotal_tuning_tokens"] = tokens

    families = set()
    zero_flags = []
    for component in ("unet", "text_encoder", "list"):
        items = pairs.get(component)
        if not items:
            continue
        shapes = [(source.info(up).shape[0], source.info(down).shape[1]) for up, down in items]
        family = next(iter(families)) if families else None
        if component == "list":
            # A flat list does not say which model it adapts: try the UNet orders, then the text encoder.
            match = cloneofsimo.match_sequence("unet", shapes, family) or cloneofsimo.match_sequence(
                "text_encoder", shapes, family)
        else:
            match = cloneofsimo.match_sequence(component, shapes, family)
        if match is None:
            raise LoraReadError(
                path,
                f"cloneofsimo LoRA with {len(items)} index-named {component} modules: no known module "
                "order matches their shapes, so the indices cannot be mapped to modules",
            )
        family, module_ids = match
        families.add(family)
        for module_id, (up_key, down_key) in zip(module_ids, items):
            up, down = source.load(up_key), source.load(down_key)
            shape = (up.shape[0], down.shape[1])
            lora.modules[module_id] = ModuleRecord(
                module_id=module_id, algorithm="lora", delta=LowRankDelta(up, down, shape),
                rank=int(down.shape[0]), scale=1.0, source_keys=(up_key, down_key),
                tensors={"up": up, "down": down},
            )
            zero_flags.append(not np.any(up))
    lora.family = families.pop() if families else "unknown"
    if zero_flags and all(zero_flags):
        lora.findings.append(Finding("all_zero", "every up factor is zero, so the LoRA has no effect"))
    _add_file_findings(lora, source)
    return lora


def _index_pairs(path, source):
    """Return ``{component: [(up key, down key), ...]}`` in index order."""
    keys = source.keys()
    if getattr(source, "is_list", False):
        if len(keys) % 2:
            raise LoraReadError(path, f"the pickle contains an odd number ({len(keys)}) of tensors, not up/down pairs")
        return {"list": [(keys[index], keys[index + 1]) for index in range(0, len(keys), 2)]}

    indexed = {}
    for key in keys:
        parts = key.split(":")
        if len(parts) != 3 or parts[2] not in ("up", "down") or not parts[1].isdigit():
            continue
        indexed.setdefault(parts[0], {}).setdefault(int(parts[1]), {})[parts[2]] = key
    pairs = {}
    for component, by_index in indexed.items():
        if sorted(by_index) != list(range(len(by_index))) or any(len(pair) != 2 for pair in by_index.values()):
            raise LoraReadError(path, f"the index-named {component} keys have gaps or unpaired up/down tensors")
        pairs[component] = [(by_index[index]["up"], by_index[index]["down"]) for index in range(len(by_index))]
    if not pairs:
        raise NotALoraError(path, _describe_non_lora(keys))
    return pairs


# ---------------------------------------------------------------- inspect


def inspect_file(path):
    """Read a file and describe it as the JSON object of ``lora-embedding inspect``.

    Never raises for a bad file: a read failure or an all-zero LoRA sets
    ``error`` to a message naming the reason.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``path``, ``family``, ``format``, ``container``, ``modules`` (adapted
        modules as stored), ``canonical_modules``, ``ranks``, ``algorithms``,
        ``metadata`` (summary), ``unmapped_keys``, ``warnings`` (``code:
        message`` strings), ``weights_hash`` and ``error`` (None or a string).
    """
    path = os.fspath(path)
    result = {
        "path": path, "family": None, "format": None, "container": None, "modules": 0,
        "canonical_modules": 0, "ranks": {}, "algorithms": {}, "metadata": {}, "unmapped_keys": [],
        "warnings": [], "weights_hash": None, "error": None,
    }
    try:
        lora = read_lora(path, allow_all_zero=True)
    except LoraReadError as exc:
        result["error"] = f"{type(exc).__name__}: {exc.reason}"
        return result

    result.update(
        family=lora.family,
        format=lora.format,
        container=lora.container,
        modules=lora.stored_modules,
        canonical_modules=len(lora.modules),
        ranks={str(rank): count for rank, count in lora.ranks().items()},
        algorithms=lora.algorithms(),
        metadata=lora.summary,
        unmapped_keys=lora.unmapped_keys,
        warnings=_warning_lines(lora.findings),
    )
    try:
        result["weights_hash"] = weights_hash(path)
    except LoraReadError as exc:
        result["error"] = f"{type(exc).__name__}: {exc.reason}"
    if not is_usable(lora):
        result["error"] = "LoraReadError: every up factor is zero, so the LoRA has no effect (an untrained checkpoint)"
    return result


def _warning_lines(findings, per_code=5):
    """Format findings as ``code: message`` lines, at most ``per_code`` per code plus a count of the rest."""
    lines = []
    seen = Counter()
    for finding in findings:
        seen[finding.code] += 1
        if seen[finding.code] <= per_code:
            lines.append(f"{finding.code}: {finding.message}")
    for code, count in seen.items():
        if count > per_code:
            lines.append(f"{code}: {count - per_code} more")
    return lines

"""Detect the base-model family of a LoRA from its module names and tensor shapes.

Each candidate family (SD1.x, SD2.x, SDXL, SDXL refiner, SD3 Medium and
Large, Flux) maps every stored module through its alias table and compares
the shape the tensors imply with the family's weight shape. The family with
the most matching modules wins; the decisive shapes are the cross-attention
key/value width (768 SD1.x, 1024 SD2.x, 2048 SDXL, 1280 refiner), the text
encoder widths and the transformer hidden size. Ties (a file that adapts
only self-attention, or only CLIP-L) go to the family the metadata declares,
else to the first in :data:`CANDIDATES`. Metadata that disagrees with the
shapes is reported; the shapes win.
"""

import numpy as np

from .canonical import Finding
from .metadata import family_hint
from .module_names import SD3_VARIANTS, alias_table, text_encoders_for

__all__ = ["CANDIDATES", "detect_family", "family_of_variant", "resolve"]

# Tie-break preference order. SD3-large is the 38-block SD3.5 Large layout.
CANDIDATES = ("SD1.x", "SDXL", "SD2.x", "Flux", "SD3", "SD3-large", "SDXL-refiner")


def family_of_variant(variant):
    """Return the family string of a candidate (``SD3-large`` -> ``SD3``)."""
    return "SD3" if variant in SD3_VARIANTS else variant


def resolve(group, variant):
    """Map a module group to ``(Target, full weight shape)`` in a family, or None."""
    if group.component == "unet":
        components = ("unet",)
    elif group.component == "auto":
        components = ("unet", "clip_l", "clip_h", "clip_g", "t5xxl")
    else:
        components = text_encoders_for(variant, group.component)
    for component in components:
        aliases, shapes = alias_table(variant, component)
        target = aliases.get(group.path)
        if target is not None:
            return target, shapes[target.module_id]
    return None


def expected_flat_shape(target, shape):
    """Return the ``(rows, in·kh·kw)`` an update of the target must have."""
    columns = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    rows = target.row_count if target.row_start is not None else shape[0]
    return rows, columns


def _score(entries, variant):
    matched = mapped = 0
    for group, implied in entries:
        resolved = resolve(group, variant)
        if resolved is None:
            continue
        mapped += 1
        if implied is not None and tuple(implied) == expected_flat_shape(*resolved):
            matched += 1
    return matched, mapped


def detect_family(entries, metadata):
    """Choose the family variant of a file.

    Parameters
    ----------
    entries : list of (ModuleGroup, tuple or None)
        Each adapted module with the ``(out, in·kh·kw)`` its tensors imply.
    metadata : dict of str to str

    Returns
    -------
    variant : str or None
        A :data:`CANDIDATES` entry, or None when no module maps anywhere.
    findings : list of Finding
    """
    scores = {variant: _score(entries, variant) for variant in CANDIDATES}
    best = max(scores.values())
    if best == (0, 0):
        return None, []

    tied = [variant for variant in CANDIDATES if scores[variant] == best]
    hint = family_hint(metadata)
    variant = next((name for name in tied if family_of_variant(name) == hint), tied[0])

    findings = []
    family = family_of_variant(variant)
    if hint is not None and hint != family:
        findings.append(Finding(
            "family_metadata_mismatch",
            f"the metadata declares {hint} but the tensor shapes match {family}; using {family}",
        ))
    return variant, findings

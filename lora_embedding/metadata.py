"""Summarize the metadata of a LoRA file (kohya ``ss_*``, ``modelspec.*``, diffusers PEFT config).

Every value in safetensors metadata is a string; JSON-valued keys
(``ss_tag_frequency``, ``ss_network_args``, ``lora_adapter_metadata``) are
parsed here, and a malformed value is skipped with a debug log rather than
failing the read.
"""

import json
import logging

__all__ = ["family_hint", "peft_alpha_config", "summarize"]

logger = logging.getLogger(__name__)

TOP_TAGS = 20


def _json_value(metadata, key, expected_type):
    text = metadata.get(key)
    if not text:
        return None
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        logger.debug("metadata key %s is not valid JSON", key)
        return None
    return value if isinstance(value, expected_type) else None


def top_tags(metadata, limit=TOP_TAGS):
    """Return ``[[tag, count], ...]`` from ``ss_tag_frequency``, merged over dataset folders, most frequent first."""
    frequency = _json_value(metadata, "ss_tag_frequency", dict) or {}
    totals = {}
    for tags in frequency.values():
        if not isinstance(tags, dict):
            continue
        for tag, count in tags.items():
            tag = str(tag).strip()
            if tag and isinstance(count, (int, float)):
                totals[tag] = totals.get(tag, 0) + int(count)
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return [[tag, count] for tag, count in ranked[:limit]]


def summarize(metadata):
    """Summarize the metadata fields the product shows.

    Parameters
    ----------
    metadata : dict of str to str

    Returns
    -------
    dict
        ``output_name``, ``base_model``, ``base_model_version``,
        ``network_module``, ``network_dim``, ``network_alpha``,
        ``network_args``, ``tags`` (``[tag, count]`` pairs, most frequent
        first), ``sshs_model_hash``, ``title``, ``trigger_phrase``,
        ``training_comment``; a field is None when the file lacks it.
    """
    return {
        "output_name": metadata.get("ss_output_name"),
        "base_model": metadata.get("ss_sd_model_name") or metadata.get("modelspec.architecture"),
        "base_model_version": metadata.get("ss_base_model_version"),
        "network_module": metadata.get("ss_network_module"),
        "network_dim": metadata.get("ss_network_dim"),
        "network_alpha": metadata.get("ss_network_alpha"),
        "network_args": _json_value(metadata, "ss_network_args", dict),
        "tags": top_tags(metadata),
        "sshs_model_hash": metadata.get("sshs_model_hash"),
        "title": metadata.get("modelspec.title"),
        "trigger_phrase": metadata.get("modelspec.trigger_phrase"),
        "training_comment": metadata.get("ss_training_comment"),
    }


def family_hint(metadata):
    """Return the family the metadata declares (``ss_base_model_version``, ``ss_v2``, modelspec), or None."""
    version = (metadata.get("ss_base_model_version") or "").lower()
    architecture = (metadata.get("modelspec.architecture") or "").lower()
    if version.startswith("sdxl") or architecture.startswith("stable-diffusion-xl"):
        return "SDXL-refiner" if "refiner" in version + architecture else "SDXL"
    if version.startswith("sd_v2") or architecture.startswith("stable-diffusion-v2"):
        return "SD2.x"
    if version.startswith("sd3") or architecture.startswith("stable-diffusion-3"):
        return "SD3"
    if version.startswith(("flux", "chroma")) or architecture.startswith(("flux", "chroma")):
        return "Flux"
    if version.startswith("sd_v1") or architecture.startswith("stable-diffusion-v1"):
        return "SD1.x"
    if metadata.get("ss_v2") == "True":
        return "SD2.x"
    if metadata.get("ss_v2") == "False" and metadata.get("ss_network_module"):
        return "SD1.x"
    return None


def peft_alpha_config(metadata):
    """Read α from diffusers' ``lora_adapter_metadata`` (PEFT ``LoraConfig`` as JSON).

    Returns
    -------
    dict of str to tuple
        Component prefix (``""`` when the fields are unprefixed, else e.g.
        ``transformer``) -> ``(lora_alpha or None, {module pattern: alpha})``.
        Empty when the file has no such metadata.
    """
    config = _json_value(metadata, "lora_adapter_metadata", dict)
    if not config:
        return {}
    result = {}
    for key, value in config.items():
        component, _, field_name = key.rpartition(".")
        alpha, pattern = result.get(component, (None, {}))
        if field_name == "lora_alpha" and isinstance(value, (int, float)):
            alpha = float(value)
        elif field_name == "alpha_pattern" and isinstance(value, dict):
            pattern = {str(name): float(number) for name, number in value.items() if isinstance(number, (int, float))}
        result[component] = (alpha, pattern)
    return {component: entry for component, entry in result.items() if entry[0] is not None or entry[1]}

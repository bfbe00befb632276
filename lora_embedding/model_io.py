"""Save and load learned models: safetensors weights plus a JSON config.

A model folder contains ``model.safetensors`` (the encoder's state dict, PCA
included, float32) and ``config.json``: the model id, the feature seed and
sizes the inputs were computed with, the architecture, the module vocabulary,
a description of the training corpus and command, and the metrics measured
after training. Loading checks that the feature code of this package computes
the inputs the model was trained on, and that every tensor has the shape the
config implies.
"""

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .encoder import EncoderConfig, LearnedModel, LoraEncoder
from .errors import ModelError
from .features import SKETCH_WIDTH, SPECTRUM_SIZE, TOKEN_SIZE
from .random_projections import FEATURE_SEED

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_NAME", "FORMAT_VERSION", "WEIGHTS_NAME", "load_model", "save_model"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


def _feature_description():
    return {
        "feature_seed": FEATURE_SEED,
        "sketch_width": SKETCH_WIDTH,
        "token_size": TOKEN_SIZE,
        "spectrum_size": SPECTRUM_SIZE,
    }


def save_model(model, directory, training=None, metrics=None):
    """Write a learned model to ``directory`` (created if missing).

    Parameters
    ----------
    model : LearnedModel
    directory : str or Path
    training : dict, optional
        The training corpus, command, seed and options.
    metrics : dict, optional
        Numbers measured after training.

    Returns
    -------
    Path
        The folder written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to(torch.float32).contiguous() for name, tensor in model.encoder.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"model_id": model.model_id, "format": "pt"})

    config = {
        "format_version": FORMAT_VERSION,
        "model_id": model.model_id,
        "features": _feature_description(),
        "encoder": model.config.to_dict(),
        "training": training if training is not None else model.info.get("training", {}),
        "metrics": metrics if metrics is not None else model.info.get("metrics", {}),
    }
    with open(directory / CONFIG_NAME, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=1, sort_keys=False)
        handle.write("\n")
    logger.info("saved model %s to %s", model.model_id, directory)
    return directory


def _read_config(path):
    if not path.is_file():
        raise ModelError(f"{path}: model config not found; a model folder needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the model config ({exc}); restore or retrain the model") from exc
    if not isinstance(config, dict) or "encoder" not in config or "model_id" not in config:
        raise ModelError(f"{path}: not a lora_embedding model config (no 'encoder' or 'model_id' field)")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: model format version {config.get('format_version')!r} is not supported "
            f"(this lora_embedding reads version {FORMAT_VERSION})"
        )
    return config


def _check_features(path, config):
    saved = config.get("features", {})
    current = _feature_description()
    for name, value in current.items():
        if saved.get(name) != value:
            raise ModelError(
                f"{path}: the model was trained on features with {name}={saved.get(name)!r} but this "
                f"lora_embedding computes {name}={value!r}; retrain the model with `lora-embedding train`"
            )


def _check_state(path, encoder, state):
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"{path}: the weights do not match the config (missing tensors {missing[:5]}, "
            f"unexpected tensors {unexpected[:5]}); the files come from different models"
        )
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ModelError(
                f"{path}: tensor {name} has shape {tuple(state[name].shape)} but the config implies "
                f"{tuple(tensor.shape)}; the files come from different models"
            )
        if not torch.isfinite(state[name]).all():
            raise ModelError(f"{path}: tensor {name} contains NaN or Inf; retrain the model")


def load_model(directory):
    """Load a model folder written by :func:`save_model`.

    Parameters
    ----------
    directory : str or Path

    Returns
    -------
    LearnedModel

    Raises
    ------
    ModelError
        When a file is missing or unreadable, the features differ from the
        ones the model was trained on, or a tensor's shape does not match.
    """
    directory = Path(directory)
    config = _read_config(directory / CONFIG_NAME)
    _check_features(directory / CONFIG_NAME, config)
    encoder_config = EncoderConfig.from_dict(config["encoder"])
    try:
        encoder = LoraEncoder(encoder_config)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelError(f"{directory / CONFIG_NAME}: invalid encoder config ({exc})") from exc

    weights_path = directory / WEIGHTS_NAME
    if not weights_path.is_file():
        raise ModelError(f"{weights_path}: model weights not found; restore the file or retrain the model")
    try:
        state = load_file(str(weights_path))
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"{weights_path}: cannot read the weights ({exc}); restore or retrain the model") from exc
    _check_state(weights_path, encoder, state)
    encoder.load_state_dict(state)

    info = {key: value for key, value in config.items() if key not in ("encoder", "model_id")}
    info["path"] = os.fspath(directory)
    return LearnedModel(encoder, config["model_id"], info)

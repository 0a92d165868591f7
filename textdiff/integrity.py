"""Checks that a saved model directory is whole before and after loading it: config.json of the right model
type, every tensor present with the config's shape (from the safetensors header), every value finite. Used for
the diffusion model and its classifiers; imports nothing else of textdiff."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import PreTrainedModel


def check_saved_model(directory: Path, model_class: type[PreTrainedModel]) -> None:
    """Check a save_pretrained directory before loading it: config.json is valid JSON of `model_class`'s model
    type and builds a valid config, and model.safetensors holds exactly the tensors that config's model has, with
    the same shapes. Raises `ValueError` naming the file and what is wrong; reads only the file's header."""
    from safetensors import safe_open

    config_file, weights = directory / "config.json", directory / "model.safetensors"
    try:
        saved_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{config_file} is not a JSON object ({error}); export the model again.") from None
    expected_type = model_class.config_class.model_type
    if saved_type != expected_type:
        raise ValueError(
            f"{config_file} describes a {saved_type!r} model, not a {expected_type!r} one; pass a directory that "
            f"textdiff saved."
        )
    config = model_class.config_class.from_pretrained(directory)  # validates its settings (ValueError)
    if not weights.is_file():  # a sharded save: transformers checks the shards
        return
    try:
        with safe_open(weights, framework="pt") as handle:
            saved = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:
        raise ValueError(
            f"{weights} is truncated or corrupted ({error}); export the model again with save_pretrained."
        ) from None
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in model_class(config).state_dict().items()}
    missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    shapes = [
        f"{k}: {saved[k]} in the file, {expected[k]} by config.json"
        for k in expected
        if saved.get(k, expected[k]) != expected[k]
    ]
    if missing or extra or shapes:
        problems = [f"missing {missing}"] * bool(missing) + [f"unexpected {extra}"] * bool(extra) + shapes[:5]
        raise ValueError(
            f"{weights} does not match {config_file}: " + "; ".join(problems) + ". The two files must come from "
            "the same save_pretrained call; export the model again."
        )


def check_finite(model: torch.nn.Module, source: str) -> None:
    """Raise `ValueError` naming the first tensor of `model` (weights and buffers) holding a NaN or infinity."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"The weights in {source} are not finite ({name} holds NaN or infinite values): the run that "
                "wrote them diverged or the file was damaged; export an earlier checkpoint or train again."
            )

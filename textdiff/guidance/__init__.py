"""Controllable generation: controls, classifiers on noisy latents, and classifier guidance (Diffusion-LM §5)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoModel

from .classifier import LatentClassifier, LatentClassifierConfig, LatentClassifierOutput
from .classifier_guidance import ClassifierGuidance
from .controls import UPOS_TO_UNIVERSAL, Control, FieldValue, Length, Mentions, PartsOfSpeech, Spans
from .tasks import CLASSIFIER_TASKS, IGNORE, TASKS, ClassifierTask, classifier_task
from .word_guidance import MODEL_SCORERS, DenoiserWordScorer

AutoConfig.register(LatentClassifierConfig.model_type, LatentClassifierConfig)
AutoModel.register(LatentClassifierConfig, LatentClassifier)

CLASSIFIERS_DIR = "classifiers"  # beside the diffusion model: <model>/classifiers/<task>/


def classifier_path(model_dir: str | Path, task: str) -> Path:
    """Where `textdiff train-classifier` saves, and `generate` finds, the `task` classifier of a model."""
    return Path(model_dir) / CLASSIFIERS_DIR / task


def load_classifiers(model_dir: str | Path, tasks: set[str] | list[str]) -> dict[str, LatentClassifier]:
    """The classifiers for `tasks` saved beside a diffusion model (safetensors only), each in eval mode."""
    classifiers = {}
    for task in sorted(tasks):
        path = classifier_path(model_dir, task)
        if not (path / "model.safetensors").is_file():
            raise ValueError(
                f"No {task!r} classifier at {path}; train one with `textdiff train-classifier --model {model_dir} "
                f"--task {task}`, or pass `classifiers={{{task!r}: ...}}` to generate."
            )
        from ..integrity import check_finite, check_saved_model

        check_saved_model(path, LatentClassifier)
        classifiers[task] = LatentClassifier.from_pretrained(path, use_safetensors=True).eval()
        check_finite(classifiers[task], str(path))
    return classifiers


__all__ = [
    "CLASSIFIERS_DIR",
    "CLASSIFIER_TASKS",
    "IGNORE",
    "MODEL_SCORERS",
    "TASKS",
    "UPOS_TO_UNIVERSAL",
    "ClassifierGuidance",
    "ClassifierTask",
    "Control",
    "DenoiserWordScorer",
    "FieldValue",
    "LatentClassifier",
    "LatentClassifierConfig",
    "LatentClassifierOutput",
    "Length",
    "Mentions",
    "PartsOfSpeech",
    "Spans",
    "classifier_path",
    "classifier_task",
    "load_classifiers",
]

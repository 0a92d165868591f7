"""textdiff: non-autoregressive text diffusion language models (Diffusion-LM and descendants).

Importing textdiff registers `TextDiffusionConfig` / `TextDiffusionModel` with transformers' `AutoConfig` and
`AutoModel`, so `AutoModel.from_pretrained(directory)` loads a saved model.
"""

from transformers import AutoConfig, AutoModel

from .configuration import TextDiffusionConfig
from .decoding_config import DecodingConfig
from .generation import GenerationOutput, generate
from .guidance import FieldValue, LatentClassifier, LatentClassifierConfig, Length, Mentions, PartsOfSpeech, Spans
from .loading import load_pretrained
from .losses import DiffusionLMLoss, LossOutput
from .modeling import DenoiserOutput, TextDiffusionModel
from .samplers import SAMPLERS, DDIMSampler, DDPMSampler, DPMSolverSampler, RenoiseSampler, Sampler, SamplerOutput
from .schedules import NoiseSchedule
from .tokenization import train_tokenizer

AutoConfig.register(TextDiffusionConfig.model_type, TextDiffusionConfig)
AutoModel.register(TextDiffusionConfig, TextDiffusionModel)

__version__ = "0.1.0"

__all__ = [
    "SAMPLERS",
    "DDIMSampler",
    "DDPMSampler",
    "DecodingConfig",
    "DPMSolverSampler",
    "RenoiseSampler",
    "DenoiserOutput",
    "DiffusionLMLoss",
    "FieldValue",
    "GenerationOutput",
    "LatentClassifier",
    "LatentClassifierConfig",
    "Length",
    "Mentions",
    "LossOutput",
    "NoiseSchedule",
    "PartsOfSpeech",
    "Sampler",
    "SamplerOutput",
    "Spans",
    "TextDiffusionConfig",
    "TextDiffusionModel",
    "generate",
    "load_pretrained",
    "train_tokenizer",
]

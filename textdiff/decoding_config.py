"""The decoding settings, with the library's one set of defaults.

`generate`, the CLI, the control evaluation and `ClassifierGuidance` all read their defaults from here. A
setting left as None in a `generate` call comes from the model's saved generation config
(`generation_config.json`, written by training) when it has one, else from these defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass
class DecodingConfig:
    """How one `generate` call decodes.

    Attributes:
        num_inference_steps: Denoising steps, respaced evenly over the T training steps.
        sampler: The reverse-process sampler's name (`textdiff.samplers.SAMPLERS`) or a `Sampler` instance.
        clamp: The clamping trick: snap x̂0 to the nearest word embedding at every step.
        x0_temperature: τ of the soft x̂0 of a model that classifies the clean word: x̂0 = softmax(logits / τ) · E.
            Below 1 it leans x̂0 toward the most likely words, which few steps need (renoise at 16 steps: teacher
            perplexity 1.9× lower at τ = 0.5; neutral at 200 steps; docs/RESULTS.md, issue 15).
        bucket_lengths: Decode a batch in groups of similar length (a model with a length prior, a request with no
            prompt, template or controls): each group only as wide as its longest window instead of the whole batch
            at the batch's longest; the texts differ from the one-group decoding of the same seed.
        guidance_scale: w, the weight of the classifiers' log-probabilities (classifier guidance).
        guidance_steps: K, Adagrad steps on the latent after each denoising step (0: no guidance).
        guidance_step_size: η, the Adagrad step size.
        fluency_weight: λ, the weight of the fluency term ‖μ − x‖²/σ.
        guidance_start: The share of the first denoising steps left unguided (0: guide from the first step, as
            the paper does). With the renoise sampler the words settle late, so guidance can start later and cost
            less (docs/RESULTS.md, issue 14).
        cfg_scale: s of classifier-free guidance for `FieldValue` controls on a conditional model (None: the
            field values go through classifier guidance).
        torch_compile: Run the denoiser's forward as compiled graphs with the weights frozen in
            (`textdiff.compilation`): one graph per shape, compiled on its first use (seconds each), then each step
            without Python's per-operation overhead — for decoding the same shapes many times (a server at batch 1).
            Needs a C++ compiler.
    """

    num_inference_steps: int = 200
    sampler: Any = "ddpm"  # str | textdiff.samplers.Sampler
    clamp: bool = True
    x0_temperature: float = 1.0
    bucket_lengths: bool = False
    guidance_scale: float = 1.0
    guidance_steps: int = 3
    guidance_step_size: float = 0.1
    fluency_weight: float = 0.01
    guidance_start: float = 0.0
    cfg_scale: float | None = None
    torch_compile: bool = False

    # The settings a model's generation config may hold.
    SAVED = ("num_inference_steps", "sampler", "clamp", "x0_temperature")

    def __post_init__(self) -> None:
        from .samplers import SAMPLERS, Sampler
        from .utils import is_integer

        for name in ("num_inference_steps", "guidance_steps"):
            if not is_integer(getattr(self, name)):
                raise ValueError(f"{name} must be int, got {getattr(self, name)!r}.")
        for name in ("clamp", "bucket_lengths", "torch_compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be bool, got {getattr(self, name)!r}.")
        for name in ("x0_temperature", "guidance_scale", "guidance_step_size", "fluency_weight", "guidance_start",
                     "cfg_scale"):  # fmt: skip
            value = getattr(self, name)
            if value is None and name == "cfg_scale":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}.")
        if not isinstance(self.sampler, (str, Sampler)):
            raise ValueError(
                f"sampler must be a name in textdiff.samplers.SAMPLERS or a Sampler instance, got {self.sampler!r}."
            )
        if isinstance(self.sampler, str) and self.sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {self.sampler!r}; choose one of {sorted(SAMPLERS)}.")
        if self.x0_temperature <= 0:
            raise ValueError(f"x0_temperature must be positive, got {self.x0_temperature}.")
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {self.num_inference_steps}.")
        check_guidance(self.guidance_scale, self.guidance_steps, self.guidance_step_size, self.fluency_weight)
        if not 0.0 <= self.guidance_start < 1.0:
            raise ValueError(f"guidance_start must be in [0, 1), got {self.guidance_start}.")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def resolve(cls, saved: Any = None, **given: Any) -> DecodingConfig:
        """The settings `given` (None: not given), then a saved generation config's, then the defaults."""
        unknown = set(given) - set(cls.fields())
        if unknown:
            raise ValueError(f"Unknown decoding setting(s) {sorted(unknown)}.")
        values = {name: getattr(saved, name, None) for name in cls.SAVED} if saved is not None else {}
        values = {k: v for k, v in values.items() if v is not None}
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)


def check_guidance(scale: float, steps: int, step_size: float, fluency_weight: float) -> None:
    """Raise `ValueError` for classifier-guidance settings out of range (w, K, η, λ)."""
    if steps < 0:
        raise ValueError(f"guidance_steps must be >= 0, got {steps}.")
    if step_size <= 0:
        raise ValueError(f"guidance_step_size must be positive, got {step_size}.")
    if fluency_weight < 0 or scale < 0:
        raise ValueError("guidance_scale and fluency_weight must be non-negative.")

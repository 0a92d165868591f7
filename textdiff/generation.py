"""The decoding loop: every position is denoised in parallel from Gaussian noise, then rounded to words.

    x_T ~ N(0, I)
    for t in sampler.timesteps:                       # T−1 … 0, respaced to num_inference_steps
        x̂0 = f(x_t, t)                                # the denoiser
        x̂0 = clamp(x̂0)   (optional)                   # Diffusion-LM's clamping trick: nearest embedding
        x_{t−1} = sampler.step(x̂0, t, x_t)
    w = round(x_0)                                    # nearest embedding per position

The sampler owns the step math, the model owns the denoiser and rounding; this loop only wires them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .modeling import TextDiffusionModel
from .samplers import SAMPLERS, Sampler
from .schedules import NoiseSchedule
from .utils import randn_like

DEFAULT_INFERENCE_STEPS = 200


@dataclass
class GenerationOutput:
    """What `generate(..., return_dict_in_generate=True)` returns.

    Attributes:
        sequences: (B, L) token ids of the decoded text, padding after the first end-of-sequence token.
        timesteps: (S,) the training-schedule timesteps visited, in decoding order.
        history: (S, B, L) the rounded x0 estimate after each of the S steps: the text as it emerges.
    """

    sequences: torch.Tensor
    timesteps: torch.Tensor
    history: torch.Tensor


def pad_after_eos(ids: torch.Tensor, eos_token_id: int | None, pad_token_id: int | None) -> torch.Tensor:
    """Replace every token after the first end-of-sequence token by padding. ids: (..., L)."""
    if eos_token_id is None or pad_token_id is None:
        return ids
    seen_eos = (ids == eos_token_id).long().cumsum(-1)  # (..., L) count of END tokens so far
    after = (seen_eos > 1) | ((seen_eos == 1) & (ids != eos_token_id))
    return ids.masked_fill(after, pad_token_id)


@torch.no_grad()
def generate(
    model: TextDiffusionModel,
    num_return_sequences: int = 1,
    max_length: int | None = None,
    num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
    sampler: str | Sampler = "ddpm",
    clamp: bool = True,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    return_dict_in_generate: bool = False,
) -> torch.Tensor | GenerationOutput:
    """Generate text by parallel denoising from pure noise.

    Args:
        model: A trained `TextDiffusionModel`.
        num_return_sequences: Number B of sequences to decode at once.
        max_length: Number L of positions to decode (at most the model's `max_position_embeddings`); the text
            ends at the first end-of-sequence token the model writes.
        num_inference_steps: Number of denoising steps, respaced evenly over the T training steps.
        sampler: Name of the reverse-process sampler ("ddpm", "ddim", "dpm-solver++"; see
            `textdiff.samplers.SAMPLERS`), or a `Sampler` instance (e.g. `DDIMSampler(schedule, eta=0.5)`).
        clamp: Apply the clamping trick (snap x̂0 to the nearest word embedding) at every step.
        generator: Source of all randomness; pass one (or `seed`) for reproducible text.
        seed: Convenience for `generator=torch.Generator().manual_seed(seed)`.
        return_dict_in_generate: Return a `GenerationOutput` with the per-step history instead of the ids.

    Returns:
        (B, L) token ids for `tokenizer.batch_decode(ids, skip_special_tokens=True)`, or a `GenerationOutput`.
    """
    config = model.config
    max_length = config.max_position_embeddings if max_length is None else max_length
    if not 1 <= max_length <= config.max_position_embeddings:
        raise ValueError(
            f"max_length must be between 1 and the model's max_position_embeddings "
            f"({config.max_position_embeddings}), got {max_length}."
        )
    if num_return_sequences < 1:
        raise ValueError(f"num_return_sequences must be at least 1, got {num_return_sequences}.")
    if isinstance(sampler, str) and sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}.")
    if generator is not None and seed is not None:
        raise ValueError("Pass either `generator` or `seed`, not both.")
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)

    if isinstance(sampler, Sampler):
        reverse = sampler
    else:
        reverse = SAMPLERS[sampler](NoiseSchedule.from_name(config.noise_schedule, config.num_diffusion_steps))
    reverse.set_timesteps(num_inference_steps)
    parameter = model.word_embeddings.weight
    shape = (num_return_sequences, max_length, config.embedding_dim)

    was_training = model.training
    model.eval()
    x = randn_like(torch.empty(shape, device=parameter.device, dtype=parameter.dtype), generator)  # x_T (B, L, d)
    self_cond = None
    history = []
    for t in reverse.timesteps.tolist():
        timesteps = torch.full((num_return_sequences,), t, device=x.device, dtype=torch.long)
        pred_x0 = model(x, timesteps, self_cond=self_cond).pred_x0  # (B, L, d)
        ids = model.round(pred_x0)  # (B, L)
        if clamp:
            pred_x0 = model.embed(ids)
        if config.self_conditioning:
            self_cond = pred_x0
        history.append(ids)
        x = reverse.step(pred_x0, t, x, generator=generator).prev_sample

    model.train(was_training)

    sequences = pad_after_eos(model.round(x), config.eos_token_id, config.pad_token_id)
    if not return_dict_in_generate:
        return sequences
    return GenerationOutput(
        sequences=sequences,
        timesteps=reverse.timesteps.clone(),
        history=pad_after_eos(torch.stack(history), config.eos_token_id, config.pad_token_id),
    )

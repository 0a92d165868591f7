"""Editing a given text by partial noising (SDEdit, Meng et al. 2022): embed the text, noise it to the level
t₀ that `strength` names, and denoise from there with any sampler and controls. What the noise at t₀ leaves
readable is kept unless the model or a control prefers otherwise; strength 0 returns the text, strength 1 is
generation from (almost) pure noise in the text's window.

    t₀ = t_min + strength · (T − 1 − t_min)        (t_min: the lowest noise level the model was trained on)

The denoising visits the sampler's respaced timesteps at or below t₀ (as diffusers' image-to-image pipelines
do: `num_inference_steps` is the count over the whole range, so a weaker edit takes fewer steps). Chosen words
can be kept fixed (`keep_mask`), as infilling keeps its known words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .decoding_config import DecodingConfig
from .generation import Denoiser, GenerationOutput, decode_plan, plan_decoding, resolve_generator
from .utils import randn_like

if TYPE_CHECKING:
    from .modeling import TextDiffusionModel


def edit(
    model: TextDiffusionModel,
    input_ids: torch.Tensor,
    strength: float,
    *,
    keep_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    return_dict_in_generate: bool = False,
    callback_on_step_end=None,
    streamer=None,
    controls=None,
    classifiers=None,
    **decoding,
) -> torch.Tensor | GenerationOutput:
    """Rewrite texts by noising them to `strength` and denoising them back.

    Args:
        model: A trained `TextDiffusionModel`.
        input_ids: (B, P) the texts' word ids as the tokenizer returns them (`tokenizer(texts, padding=True,
            return_tensors="pt")["input_ids"]`: no [START] or [END], right-padded with [PAD]). Each row is edited
            in a window of its own length (its words, framed by [START] and [END]).
        strength: In [0, 1]: how far the text is noised before it is denoised (0 returns it unchanged).
        keep_mask: (B, P) boolean, True at words to keep exactly.
        generator, seed, return_dict_in_generate, callback_on_step_end, streamer, controls, classifiers: As in
            `generate`.
        **decoding: The decoding settings of `textdiff.DecodingConfig` (num_inference_steps, sampler, clamp,
            guidance_…), defaulting as in `generate`.

    Returns:
        (B, L) token ids (L = P + 2), or a `GenerationOutput` whose history covers the steps taken.
    """
    config = model.config
    settings = DecodingConfig.resolve(getattr(model, "generation_config", None), **decoding)
    generator = resolve_generator(generator, seed)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be a number in [0, 1], got {strength!r}.")
    words = torch.as_tensor(input_ids)
    if words.dtype not in (torch.int32, torch.int64) or words.dim() != 2 or words.shape[1] == 0:
        raise ValueError(f"input_ids must be (B, P) integer word ids, got {tuple(words.shape)} {words.dtype}.")
    bos, eos, pad = config.bos_token_id, config.eos_token_id, config.pad_token_id
    if ((words == bos) | (words == eos)).any():
        raise ValueError(
            "input_ids must be the texts' word ids without [START] or [END] (edit frames them itself): "
            "tokenizer(texts, padding=True, return_tensors='pt')['input_ids']."
        )
    if ((words < 0) | (words >= config.vocab_size)).any():
        raise ValueError(f"input_ids must be word ids in [0, {config.vocab_size}).")
    # [START] w_1 … w_P [END] [PAD] …: START, kept words and the padding are known; the words and END are edited.
    framed, lengths = frame_words(words, bos, eos, pad)  # (B, L), (B,) words per row
    if (lengths == 0).any():
        raise ValueError("Every row of input_ids needs at least one word.")
    if int(lengths.max()) + 2 > config.max_position_embeddings:
        raise ValueError(
            f"A text of {int(lengths.max())} words does not fit the model's {config.max_position_embeddings} "
            "positions (with [START] and [END]); shorten it."
        )
    if keep_mask is not None and torch.as_tensor(keep_mask).shape != words.shape:
        raise ValueError(f"keep_mask must have input_ids' shape {tuple(words.shape)}.")

    batch, width = framed.shape
    positions = torch.arange(width)[None]  # (1, L)
    edited = (positions >= 1) & (positions <= (lengths + 1)[:, None])  # (B, L)
    if keep_mask is not None:
        keep = torch.zeros(batch, width, dtype=torch.bool)
        keep[:, 1 : width - 1] = torch.as_tensor(keep_mask, dtype=torch.bool)[:, : width - 2]
        edited &= ~keep
    plan = plan_decoding(
        model, settings, batch, width, framed, edited, None, controls, classifiers, generator,
        return_dict_in_generate, callback_on_step_end, streamer,
    )  # fmt: skip

    # Keep the respaced steps at or below t₀ and start from x_t₀ ~ q(x_t₀ | EMB(text)).
    low = config.min_timestep
    start = low + strength * (config.num_diffusion_steps - 1 - low)
    timesteps = plan.sampler.timesteps
    plan.sampler.timesteps = timesteps[timesteps <= start] if strength > 0 else timesteps[:0]
    if len(plan.sampler.timesteps) == 0:  # nothing to denoise: the text itself
        if streamer is not None:
            streamer.end()
        if not return_dict_in_generate:
            return framed
        empty = torch.zeros((0, batch, width))
        return GenerationOutput(framed, plan.sampler.timesteps.clone(), empty.long(), empty)
    parameter = model.word_embeddings.weight
    x0 = model.embed(framed.to(parameter.device))  # (B, L, d)
    noise = randn_like(x0, generator)
    x = plan.sampler.add_noise(x0, noise, int(plan.sampler.timesteps[0]))  # x_t₀
    return decode_plan(model, plan, x, generator, return_dict_in_generate)


def frame_words(words: torch.Tensor, bos: int, eos: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P) right-padded word ids -> ((B, L) [START] w … [END] [PAD] …, (B,) word counts), L = max count + 2."""
    lengths = (words != pad).sum(-1)
    batch, width = words.shape[0], int(lengths.max()) + 2
    framed = torch.full((batch, width), pad, dtype=torch.long)
    framed[:, 0] = bos
    framed[:, 1 : width - 1] = words[:, : width - 2]
    framed[torch.arange(batch), lengths + 1] = eos
    return framed, lengths


def confident_words(
    model: TextDiffusionModel, input_ids: torch.Tensor, threshold: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, P) True at the words the model itself gives probability ≥ threshold when it reads the text noised to its
    lowest trained level t_min, [UNK] excepted: the words an error correction keeps (`keep_mask`), re-noising only
    the others."""
    from .schedules import NoiseSchedule

    config = model.config
    framed, lengths = frame_words(torch.as_tensor(input_ids), config.bos_token_id, config.eos_token_id,
                                  config.pad_token_id)  # fmt: skip
    schedule = NoiseSchedule.from_name(config.noise_schedule, config.num_diffusion_steps)
    t = torch.full((framed.shape[0],), config.min_timestep)
    with torch.no_grad():
        x0 = model.embed(framed)
        x_t = schedule.q_sample(x0, t, randn_like(x0, generator))
        window = torch.arange(framed.shape[1])[None] <= (lengths + 1)[:, None]  # (B, L)
        _, scores = Denoiser(model, window)(x_t, config.min_timestep)  # the words' scores, as decoding rounds them
        probs = scores.float().softmax(-1).gather(-1, framed[..., None])[..., 0]  # (B, L)
    words = torch.as_tensor(input_ids)
    confident = torch.zeros(words.shape, dtype=torch.bool)
    width = min(words.shape[1], framed.shape[1] - 2)
    confident[:, :width] = probs[:, 1 : width + 1] >= threshold
    unknown = words == config.unk_token_id if getattr(config, "unk_token_id", None) is not None else False
    return confident & (words != config.pad_token_id) & ~unknown  # an [UNK] is never kept: its word is lost

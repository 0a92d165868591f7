"""Generation: every position is denoised in parallel from Gaussian noise, then rounded to words.

    x_T ~ N(0, I)
    for t in sampler.timesteps:                       # T−1 … 0, respaced to num_inference_steps
        x̂0, scores = denoiser(x_t, t)                 # the model (and classifier-free guidance)
        ŵ = round(scores); x̂0 = clamp / known(x̂0)     # step processors: rounding's hooks
        x_{t−1} = sampler.step(x̂0, t, x_t)
        x_{t−1} = guide / known(x_{t−1})              # step processors: the latent's hooks
    w = round(x_0)                                    # nearest embedding per position

The sampler owns the step math, the model owns the denoiser and rounding, and each other part of a request
(prompts and infilling, `Length`, banned words, self-conditioning, classifier guidance, the history, a callback)
is one `textdiff.processors.StepProcessor`. `plan_decoding` turns a request into the denoiser, the sampler and
the processor list once; `denoising_loop` only wires them (diffusers' pipeline loop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .compilation import MAX_UNROLLED_STEPS, CompiledForward, compiled_forward
from .decoding_config import DecodingConfig
from .guidance import (
    MODEL_SCORERS,
    ClassifierGuidance,
    Control,
    FieldValue,
    LatentClassifier,
    Length,
    load_classifiers,
)
from .processors import (
    BannedTokens,
    Callback,
    Clamping,
    ClassifierGuidanceStep,
    Estimate,
    History,
    KnownTokens,
    LoopState,
    SelfConditioning,
    StepProcessorList,
    Streaming,
)
from .samplers import SAMPLERS, Sampler
from .schedules import NoiseSchedule
from .utils import is_integer, randn_like

if TYPE_CHECKING:
    from .modeling import TextDiffusionModel

DEFAULT_INFERENCE_STEPS = DecodingConfig.num_inference_steps


@dataclass
class GenerationOutput:
    """What `generate(..., return_dict_in_generate=True)` returns.

    Attributes:
        sequences: (B, L) token ids of the decoded text, padding after the first end-of-sequence token.
        timesteps: (S,) the training-schedule timesteps visited, in decoding order.
        history: (S, B, L) the rounded x0 estimate after each of the S steps: the text as it emerges.
        confidence: (S, B, L) the rounding probability of each of those words, softmax(scores) at the chosen
            word (before clamping; 1 at known positions): how settled each position is.
    """

    sequences: torch.Tensor
    timesteps: torch.Tensor
    history: torch.Tensor
    confidence: torch.Tensor


def pad_after_eos(ids: torch.Tensor, eos_token_id: int | None, pad_token_id: int | None) -> torch.Tensor:
    """Replace every token after the first end-of-sequence token by padding. ids: (..., L)."""
    if eos_token_id is None or pad_token_id is None:
        return ids
    seen_eos = (ids == eos_token_id).long().cumsum(-1)  # (..., L) count of END tokens so far
    after = (seen_eos > 1) | ((seen_eos == 1) & (ids != eos_token_id))
    return ids.masked_fill(after, pad_token_id)


class Denoiser:
    """(x_t (B, L, d), t) -> (x̂0 (B, L, d), word scores (B, L, V)): the model's forward pass with the request's
    attention mask and self-conditioning input. The scores are the model's logits when it classifies the clean
    word (then x̂0 = softmax(logits / τ) · E, τ = `x0_temperature`), else rounding's −‖x̂0 − e_v‖²."""

    def __init__(
        self,
        model: TextDiffusionModel,
        attention_mask: torch.Tensor | None,
        x0_temperature: float = 1.0,
        torch_compile: bool = False,
    ):
        self.model, self.attention_mask, self.temperature = model, attention_mask, x0_temperature
        self.forward = compiled_forward(model) if torch_compile else model  # the model's forward, maybe compiled
        self.self_cond: torch.Tensor | None = None  # (B, L, d), set by the SelfConditioning processor

    def __call__(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        timesteps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        out = self.forward(
            x, timesteps, attention_mask=self.attention_mask, self_cond=self.self_cond, x0_temperature=self.temperature
        )
        pred_x0 = out.pred_x0
        return pred_x0, out.logits if out.logits is not None else self.model.word_scores(pred_x0)

    def unrollable(self, sampler: Sampler) -> bool:
        """Whether all of the sampler's steps can run as one compiled graph (`torch_compile`, a pure sampler, at most
        `MAX_UNROLLED_STEPS` steps)."""
        return (
            isinstance(self.forward, CompiledForward) and sampler.unrollable and self.self_cond is None
            and len(sampler.timesteps) <= MAX_UNROLLED_STEPS
        )  # fmt: skip

    def unrolled(self, sampler: Sampler, x: torch.Tensor, generator) -> Estimate:
        """The loop with nothing between its steps, as one graph: the rounding of x_0 from x_T (B, L, d). The ε of
        each step is drawn first, in the order the loop one step at a time draws them: the same text."""
        noises = tuple(randn_like(x, generator) for t in sampler.timesteps.tolist() if sampler.draws_noise(t))
        x0, scores, ids = self.forward.loop(
            sampler, x, noises, attention_mask=self.attention_mask, x0_temperature=self.temperature
        )
        return Estimate(x0=x0, raw_x0=x0, scores=scores, ids=ids)


class ClassifierFreeDenoiser(Denoiser):
    """Classifier-free guidance (Ho & Salimans 2022) on a conditional model: x̂0 = x̂0_uncond + s · (x̂0_cond −
    x̂0_uncond), both estimates from one batched pass. conditions: (B, C) multi-hot field values; scale: s."""

    def __init__(self, model, attention_mask, conditions: torch.Tensor, scale: float, x0_temperature: float = 1.0,
                 torch_compile: bool = False):  # fmt: skip
        super().__init__(model, attention_mask, x0_temperature, torch_compile)
        self.conditions, self.scale = conditions, scale

    def __call__(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        timesteps = torch.full((2 * x.shape[0],), t, device=x.device, dtype=torch.long)
        twice = lambda v: None if v is None else torch.cat([v, v])
        both = self.forward(
            torch.cat([x, x]),
            timesteps,
            attention_mask=twice(self.attention_mask),
            self_cond=twice(self.self_cond),
            conditions=torch.cat([self.conditions, torch.zeros_like(self.conditions)]),
            x0_temperature=self.temperature,
        ).pred_x0  # (2B, L, d)
        conditional, unconditional = both.chunk(2)
        pred_x0 = unconditional + self.scale * (conditional - unconditional)
        return pred_x0, self.model.word_scores(pred_x0)

    def unrollable(self, sampler: Sampler) -> bool:
        return False  # (its two passes and their mixing are not the loop `CompiledForward.loop` traces)


def denoising_loop(
    denoiser: Denoiser, sampler: Sampler, processors: StepProcessorList, x: torch.Tensor, generator
) -> Estimate:
    """Denoise x_T (B, L, d) over the sampler's timesteps; return the rounding of x_0."""
    if not processors and denoiser.unrollable(sampler):  # nothing happens between the steps: one compiled graph
        return denoiser.unrolled(sampler, x, generator)
    timesteps = sampler.timesteps.tolist()
    for step, t in enumerate(timesteps):
        state = LoopState(step, t, sampler.previous_timestep(t), len(timesteps))
        estimate = processors.round(*denoiser(x, t), state)  # x̂0 and its words, after the processors
        out = sampler.step(estimate.x0, t, x, generator=generator)
        x = processors.latents(out.prev_sample, out, state)  # x_s, after the processors
    final = LoopState(len(timesteps), -1, -1, len(timesteps), final=True)
    return processors.round(x, denoiser.model.word_scores(x), final)


@dataclass
class DecodingPlan:
    """A request, resolved once before the loop: x_T's shape, the denoiser, the sampler and the processors."""

    shape: tuple[int, int, int]
    denoiser: Denoiser
    sampler: Sampler
    processors: StepProcessorList
    history: History | None = None
    windows: torch.Tensor | None = None  # (B,) each row's window, when only a length prior sets the width


@torch.no_grad()
def generate(
    model: TextDiffusionModel,
    num_return_sequences: int = 1,
    max_length: int | None = None,
    num_inference_steps: int | None = None,
    sampler: str | Sampler | None = None,
    clamp: bool | None = None,
    x0_temperature: float | None = None,
    bucket_lengths: bool | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    return_dict_in_generate: bool = False,
    input_ids: torch.Tensor | None = None,
    infill_mask: torch.Tensor | None = None,
    max_new_tokens: int | None = None,
    callback_on_step_end: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None,
    streamer=None,
    controls: list[Control] | list[list[Control]] | None = None,
    classifiers: dict[str, LatentClassifier] | None = None,
    guidance_scale: float | None = None,
    guidance_steps: int | None = None,
    guidance_step_size: float | None = None,
    fluency_weight: float | None = None,
    guidance_start: float | None = None,
    cfg_scale: float | None = None,
    torch_compile: bool | None = None,
) -> torch.Tensor | GenerationOutput:
    """Generate text by parallel denoising from pure noise.

    Args:
        model: A trained `TextDiffusionModel`.
        num_return_sequences: Number B of sequences to decode at once.
        max_length: Number L of positions to decode (at most the model's `max_position_embeddings`); the text
            ends at the first end-of-sequence token the model writes.
        num_inference_steps, sampler, clamp, x0_temperature, bucket_lengths, guidance_scale, guidance_steps,
            guidance_step_size, fluency_weight, guidance_start, cfg_scale, torch_compile: The decoding settings
            (`textdiff.DecodingConfig`, which documents them and holds the defaults); `num_inference_steps`,
            `sampler`, `clamp` and `x0_temperature` left as None come from the model's saved generation config
            (`generation_config.json`, see `load_pretrained`) when it has one. `sampler` is a name in
            `textdiff.samplers.SAMPLERS` or a `Sampler` instance (e.g. `DDIMSampler(schedule, eta=0.5)`).
        generator: Source of all randomness; pass one (or `seed`) for reproducible text.
        seed: Convenience for `generator=torch.Generator().manual_seed(seed)`.
        return_dict_in_generate: Return a `GenerationOutput` with the per-step history instead of the ids.
        input_ids: Known tokens, (B, P) or (1, P). Alone, a prompt: positions 0 … P−1 are kept (start it with
            [START], as in training) and the rest is generated. With `infill_mask`, a full (B, L) sequence whose
            masked positions are generated and the others kept.
        infill_mask: (B, L) or (1, L) boolean, True at the positions to generate (needs `input_ids`).
        max_new_tokens: With a prompt: decode P + max_new_tokens positions (instead of `max_length`).
        callback_on_step_end: Called after every step as `callback(step, t, latents, pred_x0)` with the step's
            index, its training timestep, the new latents x_s (B, L, d) and the x̂0 it used (B, L, d).
        streamer: An object with `put(update)` and `end()` (transformers' streamer contract): `put` receives a
            `textdiff.processors.StepUpdate` (the words and their confidence) after every step, `end()` follows
            the last; an exception raised by `put` stops the decoding (e.g. a web client that disconnected).
        controls: Targets for the text (`textdiff.guidance`: `FieldValue`, `PartsOfSpeech`, `Spans`, `Length`): one
            list for every row, or one list per row (B lists). Controls of different kinds compose.
        classifiers: {task: `LatentClassifier`} for the controls; if None, those saved beside a model loaded from
            a directory (`<model>/classifiers/<task>`, written by `textdiff train-classifier`).

    Returns:
        (B, L) token ids for `tokenizer.batch_decode(ids, skip_special_tokens=True)`, or a `GenerationOutput`.
    """
    arguments = locals()
    given = {name: arguments[name] for name in DecodingConfig.fields()}  # the decoding settings among them
    settings = DecodingConfig.resolve(getattr(model, "generation_config", None), **given)
    generator = resolve_generator(generator, seed)
    plan = plan_decoding(
        model, settings, num_return_sequences, max_length, input_ids, infill_mask, max_new_tokens, controls,
        classifiers, generator, return_dict_in_generate, callback_on_step_end, streamer,
    )  # fmt: skip
    parameter = model.word_embeddings.weight
    one_batch = controls is not None or callback_on_step_end is not None or streamer is not None  # per-step views
    if settings.bucket_lengths and plan.windows is not None and not one_batch:
        groups = length_buckets(plan.windows)
        if len(groups) > 1:
            return _decode_buckets(model, settings, groups, plan.windows, generator, return_dict_in_generate)
    x = randn_like(torch.empty(plan.shape, device=parameter.device, dtype=parameter.dtype), generator)  # x_T
    return decode_plan(model, plan, x, generator, return_dict_in_generate)


# What one more group costs beyond its positions' work, in positions: a step's fixed overhead at batch 1 (≈ 2 ms on
# the dev machine's core, docs/RESULTS.md issue 15) over the cost of one position in a batch-64 step (≈ 0.02 ms).
BUCKET_OVERHEAD_POSITIONS = 96


def length_buckets(windows: torch.Tensor, overhead: int = BUCKET_OVERHEAD_POSITIONS) -> list[torch.Tensor]:
    """Rows grouped by window so that the positions decoded, Σ_g |g| · max_g, plus `overhead` per group are least
    (dynamic programming over the distinct window lengths, shortest first). windows: (B,); returns index tensors."""
    widths, counts = torch.unique(windows, return_counts=True)  # ascending
    widths, counts = widths.tolist(), counts.tolist()
    best, cut = [0.0] + [float("inf")] * len(widths), [0] * (len(widths) + 1)
    for j in range(1, len(widths) + 1):  # the last group holds widths i … j−1, decoded at widths[j − 1]
        for i in range(j):
            cost = best[i] + sum(counts[i:j]) * widths[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds, j = [], len(widths)
    while j > 0:
        bounds.append((widths[cut[j]], widths[j - 1]))
        j = cut[j]
    return [((windows >= low) & (windows <= high)).nonzero()[:, 0] for low, high in reversed(bounds)]


def _decode_buckets(model, settings: DecodingConfig, groups: list[torch.Tensor], windows: torch.Tensor, generator,
                    return_dict_in_generate: bool) -> torch.Tensor | GenerationOutput:  # fmt: skip
    """Decode each group of rows as its own batch, as wide as its longest window; reassemble the batch, padded."""
    parameter, pad = model.word_embeddings.weight, model.config.pad_token_id
    batch, width = windows.shape[0], int(windows.max())
    sequences = torch.full((batch, width), pad, dtype=torch.long, device=parameter.device)
    history = confidence = None
    for rows in groups:
        plan = plan_decoding(
            model, settings, len(rows), int(windows[rows].max()), None, None, None, None, None, generator,
            return_dict_in_generate, None, None, windows=windows[rows],
        )  # fmt: skip
        x = randn_like(torch.empty(plan.shape, device=parameter.device, dtype=parameter.dtype), generator)  # x_T
        out = decode_plan(model, plan, x, generator, return_dict_in_generate)
        ids = out.sequences if return_dict_in_generate else out
        sequences[rows.to(ids.device), : ids.shape[1]] = ids
        if return_dict_in_generate:
            if history is None:
                steps = out.history.shape[0]
                history = torch.full((steps, batch, width), pad, dtype=torch.long, device=ids.device)
                confidence = torch.ones((steps, batch, width), device=ids.device)
                timesteps = out.timesteps
            history[:, rows.to(ids.device), : ids.shape[1]] = out.history
            confidence[:, rows.to(ids.device), : ids.shape[1]] = out.confidence
    if not return_dict_in_generate:
        return sequences
    return GenerationOutput(sequences, timesteps, history, confidence)


def resolve_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    """The request's source of randomness: `generator`, or one seeded with `seed` (not both)."""
    if generator is not None and seed is not None:
        raise ValueError("Pass either `generator` or `seed`, not both.")
    if seed is not None and not (is_integer(seed) and 0 <= seed < 2**64):
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
    return torch.Generator().manual_seed(seed) if seed is not None else generator


def decode_plan(
    model: TextDiffusionModel, plan: DecodingPlan, x: torch.Tensor, generator, return_dict_in_generate: bool
) -> torch.Tensor | GenerationOutput:
    """Run a plan's loop from the latent x (B, L, d) at its sampler's first timestep; the ids, or the output."""
    was_training = model.training
    if was_training:  # (switching a model's 60 modules costs ≈ 1 ms, 5 % of an 8-step sentence at batch 1)
        model.eval()
    try:
        final = denoising_loop(plan.denoiser, plan.sampler, plan.processors, x, generator)
    finally:
        if was_training:
            model.train()
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    sequences = pad_after_eos(final.ids, eos, pad)
    if not return_dict_in_generate:
        return sequences
    return GenerationOutput(
        sequences=sequences,
        timesteps=plan.sampler.timesteps.clone(),
        history=pad_after_eos(torch.stack(plan.history.ids), eos, pad),
        confidence=torch.stack(plan.history.confidence).float(),
    )


def plan_decoding(
    model: TextDiffusionModel,
    settings: DecodingConfig,
    batch: int,
    max_length: int | None,
    input_ids: torch.Tensor | None,
    infill_mask: torch.Tensor | None,
    max_new_tokens: int | None,
    controls: list | None,
    classifiers: dict[str, LatentClassifier] | None,
    generator: torch.Generator | None,
    record_history: bool,
    callback: Callable | None,
    streamer=None,
    windows: torch.Tensor | None = None,
) -> DecodingPlan:
    """Check a request and build what its loop runs: known positions (prompt, infilling, `Length`, the windows
    of a model with a length prior), banned words, the guidance, the denoiser, the sampler, the processors."""
    config = model.config
    prompt_alone = input_ids is not None and infill_mask is None
    if max_new_tokens is not None:
        if not is_integer(max_new_tokens) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
        if not prompt_alone:
            raise ValueError("max_new_tokens counts positions after a prompt; pass input_ids (without infill_mask).")
        if max_length is not None:
            raise ValueError("Pass either `max_length` or `max_new_tokens`, not both.")
        max_length = torch.as_tensor(input_ids).shape[-1] + max_new_tokens
    if infill_mask is not None and max_length is None:
        max_length = infill_mask.shape[-1]
    max_length = config.max_position_embeddings if max_length is None else max_length
    if not is_integer(max_length) or not 1 <= max_length <= config.max_position_embeddings:
        raise ValueError(
            f"max_length must be between 1 and the model's max_position_embeddings "
            f"({config.max_position_embeddings}), got {max_length}."
        )
    if not is_integer(batch) or batch < 1:
        raise ValueError(f"num_return_sequences must be an integer of at least 1, got {batch!r}.")
    known, known_ids = _known_positions(
        input_ids, infill_mask, batch, max_length, config.vocab_size, config.eos_token_id
    )
    rows, guidance, conditions, length_known, words_only = _plan_controls(
        model, controls, classifiers, batch, max_length, settings, known is not None
    )
    if length_known is not None:
        known, known_ids = length_known
    # A model with a length prior (trained on length buckets) writes each row in its own window of ℓ positions:
    # ℓ from the controls or the prompt where they fix it, else drawn from the prior; the positions after it are
    # [PAD], known and masked out of attention, so the denoiser sees exactly the windows it was trained on.
    attention_mask, free_width = None, False
    if config.length_prior is not None:
        prompt_length = torch.as_tensor(input_ids).shape[-1] if prompt_alone else None
        infilled = None if infill_mask is None else ~(known & (known_ids == config.pad_token_id))
        if windows is None:
            windows = _draw_windows(config.length_prior, rows, prompt_length, infilled, batch, max_length, generator)
        free_width = known is None and guidance is None  # nothing else needs the full width
        if free_width:  # decode the longest window
            max_length = int(windows.max())
        attention_mask = torch.arange(max_length)[None] < windows[:, None]  # (B, L)
        outside = ~attention_mask
        known = outside if known is None else known[:, :max_length] | outside
        known_ids = torch.zeros(outside.shape, dtype=torch.long) if known_ids is None else known_ids[:, :max_length]
        known_ids = known_ids.masked_fill(outside, config.pad_token_id)

    sampler = settings.sampler
    if not isinstance(sampler, Sampler):
        sampler = SAMPLERS[sampler](NoiseSchedule.from_name(config.noise_schedule, config.num_diffusion_steps))
    sampler.set_timesteps(settings.num_inference_steps, config.min_timestep, model.time_warping)
    device = model.word_embeddings.weight.device
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None  # every row fills the decoded width (e.g. batch 1): attention needs no mask
    if known is not None and not bool(known.any()):
        known = None  # nothing is known (e.g. batch 1 of a length prior): no step processor for it
    if attention_mask is not None:
        attention_mask = attention_mask.to(device)
        if guidance is not None:  # the denoiser's own word scores (Mentions) see each row's window, as decoding does
            for task in guidance.classifiers.keys() & MODEL_SCORERS.keys():
                guidance.classifiers[task] = MODEL_SCORERS[task](model, attention_mask)
    if settings.x0_temperature != 1.0 and config.prediction_type != "logits":
        raise ValueError(
            "x0_temperature needs a model that classifies the clean word (prediction_type='logits'); this one "
            f"predicts x0 directly ({config.prediction_type!r}). Leave it at 1."
        )
    if conditions is None:
        denoiser = Denoiser(model, attention_mask, settings.x0_temperature, settings.torch_compile)
    else:
        denoiser = ClassifierFreeDenoiser(
            model, attention_mask, conditions.to(device), settings.cfg_scale, settings.x0_temperature,
            settings.torch_compile,
        )  # fmt: skip

    processors = StepProcessorList()  # in the order of their hooks: scores, then rounding, then the latent
    if words_only is not None:
        processors.append(BannedTokens(_banned_tokens(words_only, config, device)))
    if settings.clamp:
        processors.append(Clamping(model.embed))
    if guidance is not None:
        processors.append(ClassifierGuidanceStep(guidance.to(device)))
    if known is not None:
        known, known_ids = known.to(device), known_ids.to(device)
        processors.append(KnownTokens(known, known_ids, model.embed(known_ids), sampler, generator))
    if config.self_conditioning:
        processors.append(SelfConditioning(denoiser))
    history = History() if record_history else None
    if history is not None:
        processors.append(history)
    if streamer is not None:
        if not (callable(getattr(streamer, "put", None)) and callable(getattr(streamer, "end", None))):
            raise ValueError(f"streamer must have put(update) and end() methods, got {type(streamer).__name__}.")
        processors.append(Streaming(streamer))
    if callback is not None:
        processors.append(Callback(callback))
    return DecodingPlan((batch, max_length, config.embedding_dim), denoiser, sampler, processors, history,
                        windows if free_width else None)  # fmt: skip


def _plan_controls(
    model: TextDiffusionModel,
    controls: list | None,
    classifiers: dict[str, LatentClassifier] | None,
    batch: int,
    length: int,
    settings: DecodingConfig,
    has_known: bool,
):
    """Check the controls and turn them into (rows, classifier guidance, CFG conditions, Length's known
    positions and ids, the positions where only words may be written), each None where the request has none.

    rows: each row's controls (B lists); conditions: (B, C); known, ids, words_only: (B, L)."""
    config = model.config
    if settings.cfg_scale is not None and not config.condition_labels:
        raise ValueError(
            "cfg_scale needs a conditional model (trained with data.condition_column); this one is unconditional. "
            "Use classifier guidance (controls without cfg_scale) instead."
        )
    if controls is None:
        return None, None, None, None, None
    rows = guided = _rows_of_controls(controls, batch)
    conditions = None
    if settings.cfg_scale is not None:  # field values become the model's own conditions
        conditions = _condition_rows(rows, config.condition_labels)
        guided = [[c for c in row if not isinstance(c, FieldValue)] for row in rows]
    tasks = {c.task for row in guided for c in row if c.task is not None}
    trained = tasks - set(MODEL_SCORERS)  # e.g. Mentions: scored by the denoiser itself
    if classifiers is None and trained:
        if not model.name_or_path:
            raise ValueError(
                f"The controls need classifier(s) for {sorted(trained)}, and this model was not loaded from a "
                "directory that could hold them: pass classifiers={task: LatentClassifier} to generate."
            )
        classifiers = load_classifiers(model.name_or_path, trained)
    classifiers = dict(classifiers or {})
    classifiers.update({task: MODEL_SCORERS[task](model) for task in tasks & set(MODEL_SCORERS)})
    for control in {c for row in guided for c in row}:
        task_config = classifiers[control.task].config if control.task in classifiers else None
        control.check(length, task_config)
    length_known = words_only = None
    if any(isinstance(c, Length) for row in guided for c in row):
        if has_known:
            raise ValueError(
                "Length cannot be combined with input_ids or infill_mask; give the END position "
                "in the infilling request instead."
            )
        length_known = _length_positions(guided, length, config)
    words_only = _needed_words(rows, length)
    guidance = None
    if tasks:
        guidance = ClassifierGuidance.from_controls(
            guided,
            classifiers,
            length,
            guidance_scale=settings.guidance_scale,
            num_steps=settings.guidance_steps,
            step_size=settings.guidance_step_size,
            fluency_weight=settings.fluency_weight,
            skip_first_fraction=settings.guidance_start,
        )
    return rows, guidance, conditions, length_known, words_only


def _draw_windows(
    prior: list[float],
    rows: list[list[Control]] | None,
    prompt_length: int | None,
    infilled: torch.Tensor | None,
    batch: int,
    length: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(B,) window lengths ℓ: fixed by an infilling request (up to its last position that is not a known [PAD]:
    `infilled`, (B, L)), by the controls where `Control.window` says exact, else drawn from the prior over
    [minimum, length], the minimum from the prompt (its tokens and one more) or the controls."""
    minimum = torch.full((batch,), 2, dtype=torch.long)
    exact = torch.zeros(batch, dtype=torch.long)  # 0: not fixed
    if infilled is not None:
        last = torch.where(infilled, torch.arange(length), -1).amax(-1)
        exact = (last + 1).clamp(min=2)
    elif prompt_length is not None:
        minimum[:] = prompt_length + 1
    if rows is not None:
        for i, row in enumerate(rows):
            need, fixed = _row_window(row)
            if fixed:
                exact[i] = need
            minimum[i] = max(int(minimum[i]), need)
    probs = torch.tensor(prior[: length + 1], dtype=torch.float64, device=generator.device if generator else None)
    windows = exact.clone()
    for i in range(batch):
        if windows[i]:
            continue
        allowed = probs.clone()
        allowed[: int(minimum[i])] = 0.0
        if allowed.sum() <= 0:  # longer than any training sentence: the longest window allowed
            windows[i] = length
        else:
            windows[i] = torch.multinomial(allowed, 1, generator=generator).item()
    return windows


def _banned_tokens(words_only: torch.Tensor | None, config, device: torch.device) -> torch.Tensor | None:
    """(B, L, V): START / END / PAD / UNK at the `words_only` positions, which rounding must never choose."""
    if words_only is None:
        return None
    special = torch.zeros(config.vocab_size, dtype=torch.bool, device=device)
    for token in (config.bos_token_id, config.eos_token_id, config.pad_token_id, config.unk_token_id):
        if token is not None:
            special[token] = True
    return words_only.to(device)[..., None] & special


def _condition_rows(rows: list[list[Control]], labels: list[str]) -> torch.Tensor:
    """(B, C) multi-hot conditions from each row's `FieldValue` controls, over the model's condition labels."""
    conditions = torch.zeros(len(rows), len(labels))
    for i, row in enumerate(rows):
        for control in row:
            if isinstance(control, FieldValue):
                label = f"{control.field}={control.value}"
                if label not in labels:
                    fields = sorted({known.split("=", 1)[0] for known in labels})
                    raise ValueError(
                        f"The conditional model knows no {control.field!r} = {control.value!r}; its fields are "
                        f"{fields}, with the values in config.condition_labels."
                    )
                conditions[i, labels.index(label)] = 1.0
    return conditions


def _rows_of_controls(controls: list, batch: int) -> list[list[Control]]:
    """Controls for every row (a list of `Control`) or per row (B lists) as B lists."""
    if all(isinstance(c, Control) for c in controls):
        return [list(controls)] * batch
    if all(isinstance(row, (list, tuple)) and all(isinstance(c, Control) for c in row) for row in controls):
        if len(controls) != batch:
            raise ValueError(f"Got {len(controls)} lists of controls for num_return_sequences={batch} rows.")
        return [list(row) for row in controls]
    raise ValueError(
        "controls must be a list of textdiff.guidance controls (FieldValue, PartsOfSpeech, Spans, Length), or one "
        "such list per returned sequence."
    )


def _row_window(row: list[Control]) -> tuple[int, bool]:
    """(ℓ, exact): the window a row's controls ask for (`Control.window`): the one a control fixes (the last, if
    several do), else the largest minimum, at least 2 ([START] [END])."""
    windows = [control.window() for control in row]
    fixed = [width for width, exact in windows if exact]
    return (fixed[-1], True) if fixed else (max([width for width, _ in windows] + [2]), False)


def _needed_words(rows: list[list[Control]], length: int) -> torch.Tensor | None:
    """(B, L) bool: the positions 1 … ℓ − 2 before the [END] a row's controls need at the earliest (ℓ from
    `Control.window`: a `Length`'s words, a span's last word, a mention's words), where rounding may write only
    words: an [END] there would end the text before its controls can be met. A row with an exact window (a
    `Length`, a POS sequence) ends there, whatever its other controls ask. None if no row needs a word."""
    need = torch.tensor([_row_window(row)[0] for row in rows])  # (B,)
    if int(need.max()) <= 2:
        return None
    position = torch.arange(length)[None]  # (1, L)
    return (position >= 1) & (position <= need[:, None] - 2)


def _length_positions(rows: list[list[Control]], length: int, config) -> tuple[torch.Tensor, torch.Tensor]:
    """(known (B, L), ids (B, L)) fixing START, END and PAD for the rows with a `Length` control."""
    known = torch.zeros(len(rows), length, dtype=torch.bool)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        lengths = [c for c in row if isinstance(c, Length)]
        if len(lengths) > 1:
            raise ValueError(f"Row {i} has {len(lengths)} Length controls; give one.")
        if lengths:
            ids[i], known[i] = lengths[0].known_tokens(
                length, config.bos_token_id, config.eos_token_id, config.pad_token_id
            )
    return known, ids


def _known_positions(
    input_ids: torch.Tensor | None,
    infill_mask: torch.Tensor | None,
    batch: int,
    length: int,
    vocab_size: int,
    eos_token_id: int | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(known (B, L) bool, ids (B, L)) from a prompt or an infilling request; (None, None) for neither."""
    if input_ids is None:
        if infill_mask is not None:
            raise ValueError("infill_mask needs input_ids holding the tokens to keep.")
        return None, None
    input_ids = torch.as_tensor(input_ids, dtype=torch.long)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2 or input_ids.shape[0] not in (1, batch):
        raise ValueError(
            f"input_ids must have shape (1, P) or (num_return_sequences={batch}, P), got {tuple(input_ids.shape)}."
        )
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ValueError(f"input_ids holds ids outside the vocabulary [0, {vocab_size}); use the model's tokenizer.")
    input_ids = input_ids.expand(batch, -1)
    if infill_mask is None:
        prompt_length = input_ids.shape[1]
        if eos_token_id is not None and bool((input_ids[:, :-1] == eos_token_id).any()):
            raise ValueError(
                "The prompt holds the end-of-sequence token before its last position: the text would end there "
                "and the rest of the prompt be lost. A prompt is [START] and the words to continue."
            )
        if prompt_length > length:
            raise ValueError(
                f"The prompt has {prompt_length} tokens but only {length} positions are decoded; shorten the "
                "prompt or raise max_length (at most the model's max_position_embeddings)."
            )
        ids = torch.zeros(batch, length, dtype=torch.long)
        ids[:, :prompt_length] = input_ids
        known = torch.zeros(batch, length, dtype=torch.bool)
        known[:, :prompt_length] = True
        return known, ids
    infill_mask = torch.as_tensor(infill_mask, dtype=torch.bool)
    if infill_mask.dim() == 1:
        infill_mask = infill_mask[None]
    if infill_mask.shape[-1] != input_ids.shape[-1] or infill_mask.shape[-1] != length:
        raise ValueError(
            f"infill_mask {tuple(infill_mask.shape)} and input_ids {tuple(input_ids.shape)} must cover the same "
            f"{length} positions."
        )
    if infill_mask.shape[0] not in (1, batch):
        raise ValueError(f"infill_mask must have 1 or {batch} rows, got {infill_mask.shape[0]}.")
    return ~infill_mask.expand(batch, -1), input_ids.clone()

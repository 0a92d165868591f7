"""The decoding loop: every position is denoised in parallel from Gaussian noise, then rounded to words.

    x_T ~ N(0, I)
    for t in sampler.timesteps:                       # T−1 … 0, respaced to num_inference_steps
        x̂0 = f(x_t, t)                                # the denoiser
        x̂0 = clamp(x̂0)   (optional)                   # Diffusion-LM's clamping trick: nearest embedding
        x_{t−1} = sampler.step(x̂0, t, x_t)
    w = round(x_0)                                    # nearest embedding per position

The sampler owns the step math, the model owns the denoiser and rounding; this loop only wires them.

Prompts and infilling keep known tokens fixed: at every step their x̂0 is their embedding, and after every
step their latent is replaced by a fresh sample of q(x_s | EMB(w)) at the new timestep (Diffusion-LM's infilling;
RePaint without resampling), so the unknown positions are denoised in context and the known ones come out
unchanged.

Controls (`textdiff.guidance`) steer the loop in two ways: `Length` fixes END and PAD as known tokens, and the
others add classifier guidance, a few gradient steps on each step's sample x_{t−1} (`ClassifierGuidance`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .guidance import ClassifierGuidance, Control, FieldValue, LatentClassifier, Length, load_classifiers
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
        confidence: (S, B, L) the rounding probability of each of those words, softmax(−‖x̂0 − e_v‖²) at the
            chosen word v (before clamping): how settled each position is.
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


@torch.no_grad()
def generate(
    model: TextDiffusionModel,
    num_return_sequences: int = 1,
    max_length: int | None = None,
    num_inference_steps: int | None = None,
    sampler: str | Sampler | None = None,
    clamp: bool | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    return_dict_in_generate: bool = False,
    input_ids: torch.Tensor | None = None,
    infill_mask: torch.Tensor | None = None,
    max_new_tokens: int | None = None,
    callback_on_step_end: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None,
    controls: list[Control] | list[list[Control]] | None = None,
    classifiers: dict[str, LatentClassifier] | None = None,
    guidance_scale: float = 1.0,
    guidance_steps: int = 3,
    guidance_step_size: float = 0.1,
    fluency_weight: float = 0.01,
    cfg_scale: float | None = None,
) -> torch.Tensor | GenerationOutput:
    """Generate text by parallel denoising from pure noise.

    Args:
        model: A trained `TextDiffusionModel`.
        num_return_sequences: Number B of sequences to decode at once.
        max_length: Number L of positions to decode (at most the model's `max_position_embeddings`); the text
            ends at the first end-of-sequence token the model writes.
        num_inference_steps: Number of denoising steps, respaced evenly over the T training steps.
            `num_inference_steps`, `sampler` and `clamp` left as None come from the model's saved generation config
            (`generation_config.json`, see `load_pretrained`), else 200, "ddpm" and True.
        sampler: Name of the reverse-process sampler ("ddpm", "ddim", "dpm-solver++"; see
            `textdiff.samplers.SAMPLERS`), or a `Sampler` instance (e.g. `DDIMSampler(schedule, eta=0.5)`).
        clamp: Apply the clamping trick (snap x̂0 to the nearest word embedding) at every step.
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
        controls: Targets for the text (`textdiff.guidance`: `FieldValue`, `PartsOfSpeech`, `Spans`, `Length`): one
            list for every row, or one list per row (B lists). Controls of different kinds compose.
        classifiers: {task: `LatentClassifier`} for the controls; by default those saved beside the model
            (`<model>/classifiers/<task>`, written by `textdiff train-classifier`).
        guidance_scale: Weight w of the classifiers' log-probabilities in the guidance objective.
        guidance_steps: K, gradient (Adagrad) steps on the latent after each denoising step (0: no guidance).
        guidance_step_size: η, the Adagrad step size.
        fluency_weight: λ, the weight of the fluency term ‖μ − x‖²/σ that keeps x likely under the step.
        cfg_scale: Classifier-free guidance (Ho & Salimans 2022) for the `FieldValue` controls, on a conditional
            model (trained with `data.condition_column`): x̂0 = x̂0_uncond + s · (x̂0_cond − x̂0_uncond) with s =
            cfg_scale (1: the plain conditional model). None: field values go through classifier guidance.

    Returns:
        (B, L) token ids for `tokenizer.batch_decode(ids, skip_special_tokens=True)`, or a `GenerationOutput`.
    """
    config = model.config
    saved = getattr(model, "generation_config", None)
    num_inference_steps = _default(num_inference_steps, saved, "num_inference_steps", DEFAULT_INFERENCE_STEPS)
    sampler = _default(sampler, saved, "sampler", "ddpm")
    clamp = _default(clamp, saved, "clamp", True)
    if input_ids is not None and infill_mask is None and max_new_tokens is not None:
        if max_length is not None:
            raise ValueError("Pass either `max_length` or `max_new_tokens`, not both.")
        max_length = input_ids.shape[-1] + max_new_tokens
    if infill_mask is not None and max_length is None:
        max_length = infill_mask.shape[-1]
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
    known, known_ids = _known_positions(input_ids, infill_mask, num_return_sequences, max_length, config.vocab_size)
    plan = _plan_controls(model, controls, classifiers, num_return_sequences, max_length, cfg_scale, known is not None)
    if plan.known is not None:
        known, known_ids = plan.known, plan.known_ids
    guidance = None
    if plan.targets:
        guidance = ClassifierGuidance(
            classifiers=plan.classifiers,
            targets=plan.targets,
            guidance_scale=guidance_scale,
            num_steps=guidance_steps,
            step_size=guidance_step_size,
            fluency_weight=fluency_weight,
        )
    conditions = plan.conditions
    # A model with a length prior (trained on length buckets) writes each row in its own window of ℓ positions:
    # ℓ from the controls or the prompt where they fix it, else drawn from the prior; the positions after it are
    # [PAD], known and masked out of attention, so the denoiser sees exactly the windows it was trained on.
    attention_mask = None
    if config.length_prior is not None:
        prompt_length = None if input_ids is None or infill_mask is not None else torch.as_tensor(input_ids).shape[-1]
        infilled = None if infill_mask is None else ~(known & (known_ids == config.pad_token_id))
        windows = _draw_windows(
            config.length_prior, plan.rows, prompt_length, infilled, num_return_sequences, max_length, generator
        )  # (B,)
        if known is None and not plan.targets:  # nothing else needs the full width: decode the longest window only
            max_length = int(windows.max())
        attention_mask = torch.arange(max_length)[None] < windows[:, None]  # (B, L)
        outside = ~attention_mask
        if known is None:
            known, known_ids = outside, torch.zeros(outside.shape, dtype=torch.long)
        else:
            known = known[:, :max_length] | outside
        known_ids = known_ids[:, :max_length].masked_fill(outside, config.pad_token_id)

    if isinstance(sampler, Sampler):
        reverse = sampler
    else:
        reverse = SAMPLERS[sampler](NoiseSchedule.from_name(config.noise_schedule, config.num_diffusion_steps))
    reverse.set_timesteps(num_inference_steps, config.min_timestep, model.time_warping)
    parameter = model.word_embeddings.weight
    shape = (num_return_sequences, max_length, config.embedding_dim)

    was_training = model.training
    model.eval()
    x = randn_like(torch.empty(shape, device=parameter.device, dtype=parameter.dtype), generator)  # x_T (B, L, d)
    if conditions is not None:
        conditions = conditions.to(x.device, x.dtype)
    if attention_mask is not None:
        attention_mask = attention_mask.to(x.device)
    if known is not None:
        known, known_ids = known.to(x.device), known_ids.to(x.device)
        known_x0 = model.embed(known_ids)  # (B, L, d)
        known = known[..., None]  # (B, L, 1)
    banned = _banned_tokens(plan.words_only, config, x.device)  # (B, L, V) or None, fixed for the whole decode
    if guidance is not None:
        guidance.to(x.device)
    self_cond = None
    history, confidence = [], []
    for step, t in enumerate(reverse.timesteps.tolist()):
        timesteps = torch.full((num_return_sequences,), t, device=x.device, dtype=torch.long)
        scores = None  # (B, L, V) the words' scores at each position: the model's logits if it classifies
        if conditions is None:
            out = model(x, timesteps, attention_mask=attention_mask, self_cond=self_cond)
            pred_x0, scores = out.pred_x0, out.logits  # (B, L, d), (B, L, V) or None
        else:  # one batched pass for the conditional and the unconditional estimate
            both = model(
                torch.cat([x, x]),
                torch.cat([timesteps, timesteps]),
                attention_mask=None if attention_mask is None else torch.cat([attention_mask, attention_mask]),
                self_cond=None if self_cond is None else torch.cat([self_cond, self_cond]),
                conditions=torch.cat([conditions, torch.zeros_like(conditions)]),
            ).pred_x0  # (2B, L, d)
            conditional, unconditional = both.chunk(2)
            pred_x0 = unconditional + cfg_scale * (conditional - unconditional)
        if scores is None:  # rounding to the nearest embedding: scores are negative squared distances
            scores = -model.nearest_token_distances(pred_x0)  # (B, L, V)
        if banned is not None:
            scores = scores.masked_fill(banned, float("-inf"))
        ids = scores.argmax(-1)  # (B, L)
        # The rounding probability softmax(scores) of the chosen word, only when the history is returned.
        step_confidence = (
            scores.float().softmax(-1).amax(-1).to(x.dtype)
            if return_dict_in_generate
            else torch.ones_like(ids, dtype=x.dtype)
        )
        # Self-conditioning sees the raw estimate, as in training (its no-grad pass is never clamped).
        raw_x0 = pred_x0
        if clamp:
            pred_x0 = model.embed(ids)
        if known is not None:
            pred_x0 = torch.where(known, known_x0, pred_x0)
            ids = torch.where(known[..., 0], known_ids, ids)
            step_confidence = torch.where(known[..., 0], torch.ones_like(step_confidence), step_confidence)
        if config.self_conditioning:
            self_cond = raw_x0 if known is None else torch.where(known, known_x0, raw_x0)
        history.append(ids)
        confidence.append(step_confidence)
        out = reverse.step(pred_x0, t, x, generator=generator)
        x = out.prev_sample
        prev = reverse.previous_timestep(t)
        if guidance is not None and guidance.active(step, len(reverse.timesteps)):
            x = guidance(x, out.mean, out.std, prev)
        if known is not None:
            fixed = known_x0 if prev < 0 else reverse.add_noise(known_x0, randn_like(known_x0, generator), prev)
            x = torch.where(known, fixed, x)
        if callback_on_step_end is not None:
            callback_on_step_end(step, t, x, pred_x0)

    model.train(was_training)

    distances = model.nearest_token_distances(x)  # (B, L, V)
    if banned is not None:
        distances = distances.masked_fill(banned, float("inf"))
    final = distances.argmin(-1)  # (B, L) rounding
    if known is not None:
        final = torch.where(known[..., 0], known_ids, final)
    sequences = pad_after_eos(final, config.eos_token_id, config.pad_token_id)
    if not return_dict_in_generate:
        return sequences
    return GenerationOutput(
        sequences=sequences,
        timesteps=reverse.timesteps.clone(),
        history=pad_after_eos(torch.stack(history), config.eos_token_id, config.pad_token_id),
        confidence=torch.stack(confidence).float(),
    )


@dataclass
class _ControlPlan:
    """What a request's controls change in the decoding loop.

    Attributes:
        known / known_ids: (B, L) positions fixed by `Length` controls and their tokens, or None.
        words_only: (B, L) free positions of the rows with a `Length`, where only words may be written, or None.
        classifiers / targets: The classifiers and batched targets of classifier guidance (empty: none).
        conditions: (B, C) conditions of classifier-free guidance, or None.
        rows: Each row's controls (B lists), or None without controls.
    """

    known: torch.Tensor | None = None
    known_ids: torch.Tensor | None = None
    words_only: torch.Tensor | None = None
    classifiers: dict[str, LatentClassifier] = field(default_factory=dict)
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    conditions: torch.Tensor | None = None
    rows: list[list[Control]] | None = None


def _plan_controls(
    model: TextDiffusionModel,
    controls: list | None,
    classifiers: dict[str, LatentClassifier] | None,
    batch: int,
    length: int,
    cfg_scale: float | None,
    has_known: bool,
) -> _ControlPlan:
    """Check the controls and turn them into known tokens, guidance targets and conditions."""
    config = model.config
    if cfg_scale is not None and not config.condition_labels:
        raise ValueError(
            "cfg_scale needs a conditional model (trained with data.condition_column); this one is unconditional. "
            "Use classifier guidance (controls without cfg_scale) instead."
        )
    plan = _ControlPlan()
    if controls is None:
        return plan
    rows = plan.rows = _rows_of_controls(controls, batch)
    if cfg_scale is not None:  # field values become the model's own conditions
        plan.conditions = _condition_rows(rows, config.condition_labels)
        rows = [[c for c in row if not isinstance(c, FieldValue)] for row in rows]
    tasks = {c.task for row in rows for c in row if c.task is not None}
    if classifiers is None and tasks:
        classifiers = load_classifiers(model.name_or_path, tasks)
    plan.classifiers = classifiers or {}
    for control in {c for row in rows for c in row}:
        task_config = plan.classifiers[control.task].config if control.task in plan.classifiers else None
        control.check(length, task_config)
    if any(isinstance(c, Length) for row in rows for c in row):
        if has_known:
            raise ValueError(
                "Length cannot be combined with input_ids or infill_mask; give the END position "
                "in the infilling request instead."
            )
        plan.known, plan.known_ids = _length_positions(rows, length, config)
        plan.words_only = ~plan.known & plan.known.any(-1, keepdim=True)
    if tasks:
        plan.targets = ClassifierGuidance.build_targets(rows, plan.classifiers, length)
    return plan


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
            for control in row:
                need, fixed = control.window()
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
                label = f"{control.key}={control.value}"
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


def _default(value, saved, name: str, fallback):
    """The argument if given, else the saved generation config's value, else the library default."""
    if value is not None:
        return value
    saved_value = getattr(saved, name, None) if saved is not None else None
    return fallback if saved_value is None else saved_value

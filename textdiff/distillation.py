"""Few-step students: a many-step decoder distilled into a K-step one (issue 15).

Sequence-level knowledge distillation (Kim & Rush 2016, the recipe behind non-autoregressive translation since
Gu et al. 2018): the student learns from the teacher's own decoded texts instead of the corpus. A teacher sample is
one sentence whose words already agree with each other, so the student, decoding every position in parallel in a
few steps, has fewer competing sentences to blend into one ("The is is a …"). The teacher decodes with its saved
generation config (e.g. 200 predict-and-renoise steps); the student is the same network, started from the
teacher's weights, and decodes with K steps of the same sampler (`RenoiseSampler`) at an x̂0 temperature τ.

Two things fit the objective to those K steps:

1. t only at the K timesteps t_1 > … > t_K the student's decoder visits (spread evenly over the batch).
2. The student's own inputs (as SMART does for mask-predict, Ghazvininejad et al. 2020): when decoding, the input at
   t_k is not a noised clean sentence but the renoised prediction of the step before,
   x_{t_k} = √ᾱ_{t_k} · x̂0(x_{t_{k−1}}) + √(1 − ᾱ_{t_k}) · ε. For a share `rollout_prob` of the batch the objective
   builds exactly that input — x_{t_{k−1}} ~ q(· | y), x̂0 from the student itself without gradients (at τ), renoised
   to t_k — and keeps the teacher's text y as the target, so the student learns to repair its previous step.

    y ~ teacher;  k ~ U{1, …, K};  L = CE(f(x_{t_k}, t_k), y)

Notation: alpha_bar -> ᾱ; the teacher corpus is JSON lines {"text": ...} with a manifest beside it saying what made it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .losses import LossOutput, embedding_step
from .samplers import RenoiseSampler
from .schedules import NoiseSchedule
from .utils import randn_like

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .modeling import TextDiffusionModel


def student_timesteps(schedule: NoiseSchedule, num_steps: int, min_timestep: int = 0) -> torch.Tensor:
    """(K,) the training timesteps a K-step decoder visits, descending (the sampler's respacing)."""
    sampler = RenoiseSampler(schedule)
    sampler.set_timesteps(num_steps, min_timestep)
    return sampler.timesteps.clone()


class FewStepDistillationLoss:
    """Cross-entropy of the teacher's words at the K timesteps of the student's decoder, from the inputs it meets.

    Args:
        schedule: The forward process the teacher was trained on.
        timesteps: (K,) the student's decoding timesteps, descending (`student_timesteps`).
        rollout_prob: Share of each batch whose input is the renoised prediction of the step before (0: all
            inputs are q(x_t | y); the first timestep, with no step before it, always is).
        x0_temperature: τ of the student's x̂0 = softmax(logits / τ) · E in those predictions (its decoding τ).
    """

    def __init__(
        self, schedule: NoiseSchedule, timesteps: torch.Tensor, rollout_prob: float = 0.5, x0_temperature: float = 1.0
    ) -> None:
        if timesteps.ndim != 1 or len(timesteps) == 0 or bool((timesteps[1:] >= timesteps[:-1]).any()):
            raise ValueError("timesteps must be a non-empty descending 1-D tensor (see student_timesteps).")
        if not 0.0 <= rollout_prob <= 1.0:
            raise ValueError(f"rollout_prob must be in [0, 1], got {rollout_prob}.")
        if x0_temperature <= 0:
            raise ValueError(f"x0_temperature must be positive, got {x0_temperature}.")
        self.schedule, self.timesteps = schedule, timesteps.long()
        self.rollout_prob, self.x0_temperature = rollout_prob, x0_temperature

    def __call__(
        self, model: TextDiffusionModel, input_ids: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> LossOutput:
        """The objective on a batch of the teacher's texts, (B, L) token ids (a DeepSpeed engine may wrap the model)."""
        core = getattr(model, "module", model)
        if core.config.prediction_type != "logits":
            raise ValueError("Distillation needs a model that classifies the clean word (prediction_type='logits').")
        batch, device = input_ids.shape[0], input_ids.device
        if self.schedule.betas.device != device:
            self.schedule = self.schedule.to(device)
        schedule, draw_device = self.schedule, generator.device if generator is not None else device
        timesteps = self.timesteps.to(device)

        # 1. k spread evenly over the batch (a random offset), t = t_k and the step before it, t_{k−1}.
        offset = torch.randint(len(timesteps), (1,), generator=generator, device=draw_device).to(device)
        k = (torch.arange(batch, device=device) + offset) % len(timesteps)  # (B,)
        t, t_before = timesteps[k], timesteps[(k - 1).clamp(min=0)]

        # 2. x0 ~ q_φ(x0 | y) and x_{t_k} ~ q(x_{t_k} | x0).
        x0 = embedding_step(schedule, core.embed(input_ids), generator)  # (B, L, d)
        x_t = schedule.q_sample(x0, t, randn_like(x0, generator))

        # 3. For the rollout share: the renoised prediction from x_{t_{k−1}} ~ q(· | x0), as the decoder makes it.
        rollout = torch.rand(batch, generator=generator, device=draw_device).to(device) < self.rollout_prob
        rollout &= k > 0
        if bool(rollout.any()):
            with torch.no_grad():
                x_before = schedule.q_sample(x0, t_before, randn_like(x0, generator))
                pred_x0 = model(x_before, t_before, x0_temperature=self.x0_temperature).pred_x0  # (B, L, d)
                alpha_bar = schedule.gather(schedule.alphas_cumprod, t, x0)  # (B, 1, 1)
                renoised = alpha_bar.sqrt() * pred_x0.to(x0.dtype) + (1 - alpha_bar).sqrt() * randn_like(x0, generator)
            x_t = torch.where(rollout[:, None, None], renoised, x_t)

        # 4. The student's classification of the teacher's words.
        logits = model(x_t, t).logits.float()  # (B, L, V)
        rounding = F.cross_entropy(logits.transpose(1, 2), input_ids)
        zero = rounding.new_zeros(())
        return LossOutput(loss=rounding, mse=zero, rounding=rounding, prior=zero)


@dataclass
class TeacherCorpus:
    """What made a teacher corpus (its manifest): a corpus is reused only when all of it matches."""

    teacher_weights_sha256: str
    num_samples: int
    seed: int
    num_inference_steps: int
    sampler: str
    clamp: bool
    x0_temperature: float


def write_teacher_corpus(
    teacher: TextDiffusionModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    num_samples: int,
    seed: int,
    batch_size: int = 512,
    progress=None,
) -> bool:
    """Decode `num_samples` texts with the teacher's own decoding settings (its generation config) and write them
    to `directory`/train.jsonl as JSON lines {"text": ...} (a corpus for `load_corpus`), with manifest.json beside
    it. Batches of `batch_size` rows are decoded in length buckets, batch i from seed `seed + i`. Nothing
    half-written is left: the file appears only when complete. Returns False (and writes nothing) when the corpus
    there was made by the same teacher and settings. `progress`: an optional callable(done, total)."""
    from .decoding_config import DecodingConfig

    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be positive, got {num_samples} and {batch_size}.")
    settings = DecodingConfig.resolve(getattr(teacher, "generation_config", None))
    sampler = settings.sampler if isinstance(settings.sampler, str) else type(settings.sampler).__name__
    manifest = TeacherCorpus(
        teacher_weights_sha256=weights_digest(teacher),
        num_samples=num_samples,
        seed=seed,
        num_inference_steps=settings.num_inference_steps,
        sampler=sampler,
        clamp=settings.clamp,
        x0_temperature=settings.x0_temperature,
    )
    path, manifest_path = directory / "train.jsonl", directory / "manifest.json"
    if path.is_file() and manifest_path.is_file():
        try:
            if json.loads(manifest_path.read_text(encoding="utf-8")) == asdict(manifest):
                return False
        except json.JSONDecodeError:
            pass
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / ".train.jsonl.tmp"  # not a split file until complete
    with temporary.open("w", encoding="utf-8") as handle:
        for index, start in enumerate(range(0, num_samples, batch_size)):
            rows = min(batch_size, num_samples - start)
            ids = teacher.generate(num_return_sequences=rows, bucket_lengths=True, seed=seed + index)
            for text in tokenizer.batch_decode(ids, skip_special_tokens=True):
                handle.write(json.dumps({"text": text}) + "\n")
            if progress is not None:
                progress(start + rows, num_samples)
    os.replace(temporary, path)
    manifest_path.write_text(json.dumps(asdict(manifest), indent=1) + "\n", encoding="utf-8")
    return True


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers, by name (which teacher made a corpus)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()


"""Classifier guidance on the latents (Diffusion-LM §5.2, eq. 3 and App. B).

After each reverse step x_t → x_s, the step's sample is refined by K gradient steps (Adagrad, step size η) on

    −Σ_c w · log p_c(target_c | x_s, s)  +  λ · ‖μ − x_s‖² / σ

where p_c are classifiers trained on noisy latents, or the denoiser's own word distribution for `Mentions`
(`word_guidance.DenoiserWordScorer`); their log-probabilities add, so controls compose. w is the
guidance scale and the second term is the fluency regulariser: μ and σ are the mean and standard deviation of the
sampler's Gaussian step p(x_s | x_t) (σ = 1 when the step is deterministic, as in the reference code). Guidance
only touches the sampler's output, so it works unchanged with every sampler. As in the paper it is skipped on
the last steps (the final 5 % by default), where the latent is already settled on words.

Notation: x -> x_s (the latent being refined), mean -> μ, std -> σ, fluency_weight -> λ, step_size -> η,
num_steps -> K, guidance_scale -> w.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..decoding_config import DecodingConfig, check_guidance
from .classifier import LatentClassifier
from .controls import Control


@dataclass
class ClassifierGuidance:
    """Steer decoding towards per-row control targets with classifiers on noisy latents.

    Args:
        classifiers: {task: classifier} for every task the controls need.
        targets: {task: batched target} (see `LatentClassifier.log_prob`), built by `build_targets`; or build
            both from the controls with `from_controls`.
        guidance_scale: w, the weight of the classifiers' log-probabilities.
        num_steps: K, Adagrad steps per denoising step (3 in the paper).
        step_size: η, the Adagrad learning rate (0.1 in the paper).
        fluency_weight: λ (the paper: semantic 0.01, POS 1e-4, spans 0.1).
        skip_first_fraction: Share of the first denoising steps left unguided (`DecodingConfig.guidance_start`).
        skip_last_fraction: Share of the final denoising steps left unguided (the paper: t < 10 of 200).
    The defaults of w, K, η and λ are `textdiff.DecodingConfig`'s.
    """

    classifiers: dict[str, LatentClassifier]
    targets: dict[str, torch.Tensor]
    guidance_scale: float = DecodingConfig.guidance_scale
    num_steps: int = DecodingConfig.guidance_steps
    step_size: float = DecodingConfig.guidance_step_size
    fluency_weight: float = DecodingConfig.fluency_weight
    skip_first_fraction: float = DecodingConfig.guidance_start
    skip_last_fraction: float = 0.05

    def __post_init__(self) -> None:
        check_guidance(self.guidance_scale, self.num_steps, self.step_size, self.fluency_weight)
        for name in ("skip_first_fraction", "skip_last_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
        missing = sorted(set(self.targets) - set(self.classifiers))
        if missing:
            raise ValueError(
                f"No classifier for the controls of task(s) {missing}; train one with "
                "`textdiff train-classifier --task ...`."
            )
        for classifier in self.classifiers.values():
            classifier.eval().requires_grad_(False)

    @classmethod
    def from_controls(
        cls, controls: list[list[Control]], classifiers: dict[str, LatentClassifier], length: int, **settings
    ) -> ClassifierGuidance:
        """Guidance towards each row's controls (B lists) over `length` positions, with the classifiers their
        tasks need (a missing one is an error naming how to train it); `settings` as the constructor's."""
        targets = cls.build_targets(controls, classifiers, length)
        return cls(classifiers={task: classifiers[task] for task in targets}, targets=targets, **settings)

    @staticmethod
    def build_targets(
        controls: list[list[Control]], classifiers: dict[str, LatentClassifier], length: int
    ) -> dict[str, torch.Tensor]:
        """Stack each row's controls into one batched target per task; rows without that task's control get IGNORE.

        Args:
            controls: One list of controls per row (B lists).
            classifiers: {task: classifier}.
            length: L, the number of decoded positions.
        """
        rows_by_task: dict[str, list[torch.Tensor | None]] = {}
        for row, row_controls in enumerate(controls):
            for control in row_controls:
                if control.task is None:
                    continue
                if control.task not in classifiers:
                    raise ValueError(
                        f"{type(control).__name__} needs a {control.task!r} classifier, and none was found; train "
                        f"one with `textdiff train-classifier --task {control.task}` or pass `classifiers=`."
                    )
                slots = rows_by_task.setdefault(control.task, [None] * len(controls))
                row_target = control.target(length, classifiers[control.task].config)
                if slots[row] is not None:
                    row_target = classifiers[control.task].task.merge(slots[row], row_target, control)
                slots[row] = row_target
        return {task: classifiers[task].task.stack(rows) for task, rows in rows_by_task.items()}

    def active(self, step_index: int, num_inference_steps: int) -> bool:
        """Whether denoising step `step_index` (0-based) is guided: all but the first skip_first_fraction and the
        final skip_last_fraction."""
        first = round(self.skip_first_fraction * num_inference_steps)
        last = num_inference_steps - round(self.skip_last_fraction * num_inference_steps)
        return self.num_steps > 0 and first <= step_index < last

    def to(self, device: torch.device) -> ClassifierGuidance:
        """Move the targets to the latents' device (once per decode, not at every step)."""
        self.targets = {task: target.to(device) for task, target in self.targets.items()}
        return self

    def _log_prob(self, x: torch.Tensor, timestep: int) -> torch.Tensor:
        """Σ_c log p_c(target_c | x) per row, (B,): the controls' log-probabilities add."""
        timesteps = torch.full((x.shape[0],), timestep, device=x.device, dtype=torch.long)
        return sum(self.classifiers[task].log_prob(x, timesteps, target) for task, target in self.targets.items())

    def __call__(self, x: torch.Tensor, mean: torch.Tensor, std: float, timestep: int) -> torch.Tensor:
        """Refine the step's sample x_s (B, L, d) at timestep s (−1 = clean) and return the new (B, L, d) latent."""
        scale = std if std > 0 else 1.0
        latent = x.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adagrad([latent], lr=self.step_size)
        with torch.enable_grad():
            for _ in range(self.num_steps):
                # 1. log p(c_1, c_2 | x_s) = Σ_c log p_c(c | x_s).
                log_prob = self._log_prob(latent, timestep)
                # 2. The fluency term: λ ‖μ − x_s‖² / σ keeps x_s likely under the denoising step.
                fluency = ((mean - latent) ** 2).sum(dim=(1, 2)) / scale  # (B,)
                loss = (-self.guidance_scale * log_prob + self.fluency_weight * fluency).sum()
                # Only the latent's gradient: a scorer that runs the denoiser leaves its weights' .grad alone.
                (latent.grad,) = torch.autograd.grad(loss, [latent])
                optimizer.step()
        return latent.detach()

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, timestep: int) -> torch.Tensor:
        """Σ_c log p_c(target_c | x) per row, (B,): how well the latent meets its controls (for tests and logs)."""
        return self._log_prob(x, timestep)

"""The training objectives of the denoiser (`TextDiffusionConfig.prediction_type`).

"x0", Diffusion-LM's end-to-end objective (Li et al. 2022, eq. 2 and App. A; `training_losses_e2e`). With w the
token ids, EMB the learned embeddings and f the x0-predicting denoiser:

    x0  = EMB(w) + √(1 − ᾱ_0) · ε₀                  (the embedding step q_φ(x0 | w))
    x_t = √ᾱ_t · x0 + √(1 − ᾱ_t) · ε,   t ~ U{t_min, …, T−1}
    L   = ‖f(x_t, t) − x0‖²        (at t = 0 the target is EMB(w) itself)
        + CE(x0 · Eᵀ, w)           (rounding, L_round)
        + ‖√ᾱ_{T−1} · x0‖²         (prior term: q(x_T | x0) should be N(0, I))

Squared errors are averaged over positions and embedding dimensions, the cross-entropy over positions, as in
the reference code. All three terms reach the embeddings, which is what keeps them from collapsing.

"logits", x0 by classification (CDCD, Dieleman et al. 2022; Plaid, Gulrajani & Hashimoto 2023): the denoiser
scores every word at every position and x̂0 = softmax(logits) · E, so the objective is the cross-entropy of the
clean words, L = CE(f(x_t, t), w) (+ an optional weight on ‖x̂0 − x0‖²); the embeddings should then have a fixed
norm (`embedding_scale`), which is what keeps them from collapsing.

Either way t may be drawn evenly spread over the batch (t_i from the i-th of B equal strata of [t_min, T)), which
lowers the variance of the batch's loss at no cost (CDCD, Plaid), and never below the model's `min_timestep`. For
a model with time warping (`config.time_warping`), t = F⁻¹(u) with F fitted to the cross-entropy of the training
batches so far (`textdiff.time_warping`; the loss updates the fit on every training batch, not in eval mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .modeling import TextDiffusionModel
from .schedules import NoiseSchedule
from .utils import randn_like


@dataclass
class LossOutput:
    """The objective and its three terms, each a scalar averaged over the batch."""

    loss: torch.Tensor
    mse: torch.Tensor
    rounding: torch.Tensor
    prior: torch.Tensor


class DiffusionLMLoss:
    """The end-to-end objective of Diffusion-LM, optionally with self-conditioning (Chen et al. 2022).

    Args:
        schedule: The forward process the model is trained on.
        self_conditioning_prob: Share of batches on which the denoiser first predicts x0 without gradients and
            then sees that estimate as its self-conditioning input (0 disables; Chen et al. use 0.5).
        condition_dropout: For a conditional model (classifier-free guidance, Ho & Salimans 2022): share of
            sequences whose conditions are all dropped, so that the same network learns the unconditional model.
        condition_keep: Share of the other sequences' conditions kept, each independently, so that the model also
            learns from partial conditions (one field value at a time, as controls ask).
        stratified_timesteps: Draw the batch's t evenly spread over [min_timestep, T) instead of independently.
        mse_weight: Weight of ‖x̂0 − x0‖² for a model that classifies (prediction_type "logits"; 0: cross-entropy
            only). A model that regresses x0 always has weight 1, as in the paper.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        self_conditioning_prob: float = 0.0,
        condition_dropout: float = 0.1,
        condition_keep: float = 0.5,
        stratified_timesteps: bool = False,
        mse_weight: float = 0.0,
    ) -> None:
        for name, value in [
            ("self_conditioning_prob", self_conditioning_prob),
            ("condition_dropout", condition_dropout),
            ("condition_keep", condition_keep),
        ]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        self.schedule = schedule
        self.self_conditioning_prob = self_conditioning_prob
        self.condition_dropout = condition_dropout
        self.condition_keep = condition_keep
        self.stratified_timesteps = stratified_timesteps
        if mse_weight < 0:
            raise ValueError(f"mse_weight must be non-negative, got {mse_weight}.")
        self.mse_weight = mse_weight

    def __call__(
        self,
        model: TextDiffusionModel,
        input_ids: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        conditions: torch.Tensor | None = None,
    ) -> LossOutput:
        """Compute the objective on a batch of token ids (B, L).

        Args:
            model: The denoiser (a `TextDiffusionModel`, or a DeepSpeed engine wrapping one).
            input_ids: (B, L) token ids; padding tokens are modelled like words, as in the paper.
            attention_mask: (B, L) optional mask passed to the denoiser.
            generator: Source of t and ε; the global RNG when None.
            conditions: (B, C) multi-hot conditions of a conditional model; dropped and thinned as configured.
        """
        core = getattr(model, "module", model)
        batch = input_ids.shape[0]
        device = input_ids.device
        if self.schedule.betas.device != device:  # once: the tables then stay where the batches are
            self.schedule = self.schedule.to(device)
        schedule = self.schedule

        # 1. x0 ~ q_φ(x0 | w): the embedding plus the t = 0 noise.
        x0_mean = core.embed(input_ids)  # (B, L, d)
        x0 = embedding_step(schedule, x0_mean, generator)

        # 2. x_t ~ q(x_t | x0) at t ~ U{t_min, …, T−1}, independently or evenly spread over the batch; or, for a
        # model with time warping, t = F⁻¹(u) from the warping's fit (CDCD).
        u = torch.rand(batch, generator=generator, device=_device(generator, device))
        if self.stratified_timesteps:
            u = (torch.arange(batch, device=u.device) + u) / batch
        warping = core.time_warping
        if warping is not None:
            t = warping.sample(u)
        else:
            t_min = core.config.min_timestep
            t = (t_min + (u * (schedule.num_steps - t_min)).long()).clamp(max=schedule.num_steps - 1)
        t = t.to(device, non_blocking=True)
        x_t = schedule.q_sample(x0, t, randn_like(x0, generator))

        # 3. Conditions for classifier-free guidance: some kept, some sequences unconditional.
        if conditions is not None:
            draw_device = _device(generator, device)
            keep = torch.rand(conditions.shape, generator=generator, device=draw_device) < self.condition_keep
            dropped = torch.rand(batch, generator=generator, device=draw_device) < self.condition_dropout
            conditions = conditions * (keep & ~dropped[:, None]).to(device, conditions.dtype)  # (B, C)

        # 4. f(x_t, t), with a no-grad first pass feeding self-conditioning on a share of the batches.
        self_cond = None
        if core.config.self_conditioning:
            use = torch.rand((), generator=generator, device=_device(generator, device)) < self.self_conditioning_prob
            if use:
                with torch.no_grad():
                    self_cond = model(x_t, t, attention_mask=attention_mask, conditions=conditions).pred_x0.detach()
        out = model(x_t, t, attention_mask=attention_mask, self_cond=self_cond, conditions=conditions)

        # 5. The terms, in fp32 whatever precision the network runs in. "rounding" is the cross-entropy of the
        # words: through the rounding head x0 · Eᵀ (x0), or of the denoiser's own classification (logits).
        classifies = out.logits is not None
        logits = (out.logits if classifies else core.logits(x0)).float()  # (B, L, V)
        pred_x0, x0, x0_mean = out.pred_x0.float(), x0.float(), x0_mean.float()
        mse = ((pred_x0 - x0) ** 2).mean(dim=(1, 2))  # (B,)
        mse_t0 = ((pred_x0 - x0_mean) ** 2).mean(dim=(1, 2))
        mse = torch.where(t == 0, mse_t0, mse)
        rounding = F.cross_entropy(logits.transpose(1, 2), input_ids, reduction="none").mean(dim=1)  # (B,)
        if warping is not None and core.training:  # the fit follows the training batches only
            warping.update(t, rounding)
        last = torch.full((batch,), schedule.num_steps - 1, dtype=torch.long, device=device)
        prior = ((schedule.gather(schedule.alphas_cumprod.sqrt(), last, x0) * x0) ** 2).mean(dim=(1, 2))
        loss = rounding + self.mse_weight * mse if classifies else mse + rounding + prior
        return LossOutput(loss=loss.mean(), mse=mse.mean(), rounding=rounding.mean(), prior=prior.mean())


def embedding_step(schedule: NoiseSchedule, x0_mean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """x0 ~ q_φ(x0 | w) = N(EMB(w), (1 − ᾱ_0) I): the embeddings x0_mean (B, L, d) plus the t = 0 noise."""
    zeros = torch.zeros(x0_mean.shape[0], dtype=torch.long, device=x0_mean.device)
    std0 = schedule.gather((1.0 - schedule.alphas_cumprod).sqrt(), zeros, x0_mean)  # (B, 1, 1)
    return x0_mean + std0 * randn_like(x0_mean, generator)


def _device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback

"""Guidance through the denoiser's own word distribution: a "these words appear" control with no classifier to train.

A model that predicts x0 by classification gives, at every position i, p_θ(w_i | x_t) = softmax(logits_i(x_t, t));
a model that regresses x0 gives rounding's softmax(−‖x̂0_i − e_w‖²). The score of "the words v_1 … v_m appear,
in order and contiguously" is the probability of that event were the positions independent given x_t, summed over
the start positions a where the words can stand (after [START] at position 0 and before the row's [END]):

    log p(c | x_t)  ≈  log Σ_{1 ≤ a ≤ ℓ−1−m} Π_j p_θ(w_{a+j} = v_j | x_t)     (a log-sum-exp of summed log-probs)

where ℓ is the row's window (a length prior's: its [END] is at ℓ − 1 at the latest, [PAD] after it) or the decoded
width. The denoiser scores the latent as the decoding denoiser does: attending only inside each row's window.

Its gradient with respect to x_t flows back through the denoiser, as diffusion posterior sampling guides through
x̂0(x_t) (Chung et al. 2023). `DenoiserWordScorer` has the classifier interface `ClassifierGuidance` calls, so a
`Mentions` control composes with the trained classifiers' controls (parts of speech, spans) in one decode.

Targets: (B, W) word ids, padded with IGNORE (a row of IGNORE: no such control in that row, score 0).
"""

from __future__ import annotations

import torch

from .tasks import IGNORE


class MentionsTask:
    """How `Mentions` targets batch: each row's ids, padded with IGNORE to the longest."""

    name = "mentions"

    def stack(self, rows: list[torch.Tensor | None]) -> torch.Tensor:
        width = max(len(r) for r in rows if r is not None)
        out = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for i, row in enumerate(rows):
            if row is not None:
                out[i, : len(row)] = row
        return out

    def merge(self, first: torch.Tensor, second: torch.Tensor, control) -> torch.Tensor:
        raise ValueError("Two Mentions controls for the same row conflict; give one per row.")


class DenoiserWordScorer:
    """log p(the target words appear | x_t) under the denoiser's own per-position word distribution.

    Args:
        model: The `TextDiffusionModel` being decoded (its weights are only read: guidance differentiates the
            latent, never the parameters).
        attention_mask: (B, L) True inside each row's window (a model with a length prior decodes each row in its
            own window, [PAD] after it), or None when every row may use all L positions.
    """

    task = MentionsTask()
    config = None  # no trained classifier, so no classifier config

    def __init__(self, model, attention_mask: torch.Tensor | None = None) -> None:
        self.model = model
        self.attention_mask = attention_mask

    def eval(self) -> DenoiserWordScorer:
        return self  # the denoiser is already in eval mode while it decodes

    def requires_grad_(self, requires_grad: bool = True) -> DenoiserWordScorer:
        return self  # leave the user's model as it is

    def word_log_probs(self, x_t: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """(B, L, d), (B,) -> (B, L, V) log p_θ(w_i = v | x_t)."""
        output = self.model(x_t, timesteps.clamp(min=0), attention_mask=self.attention_mask)
        scores = output.logits if output.logits is not None else self.model.word_scores(output.pred_x0)
        return scores.float().log_softmax(-1)

    def log_prob(self, x_t: torch.Tensor, timesteps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,) log Σ_a Π_j p(w_{a+j} = v_j | x_t) for each row's words v (B, W), 0 for a row without any; the
        words stand between [START] (position 0) and the row's last [END] position (its window's last, else L − 1)."""
        log_probs = self.word_log_probs(x_t, timesteps)  # (B, L, V)
        batch, length, _ = log_probs.shape
        width = target.shape[1]
        if width > length:
            raise ValueError(f"A Mentions target of {width} words does not fit in {length} positions.")
        present = target != IGNORE  # (B, W)
        # picked[b, i, j] = log p(w_i = v_j) at every position i for every target word j.
        picked = log_probs.gather(-1, target.clamp(min=0)[:, None, :].expand(batch, length, width))  # (B, L, W)
        # run[b, a] = Σ_j log p(w_{a+j} = v_j), the words at positions a … a+W_b−1 (padding words count 0; past the
        # last position a run cannot start).
        picked = torch.cat([picked, picked.new_zeros(batch, width - 1, width)], 1)  # (B, L + W − 1, W)
        run = sum(picked[:, j : j + length, j] * present[:, j : j + 1] for j in range(width))  # (B, L)
        if self.attention_mask is None:
            end = torch.full((batch, 1), length - 1, device=run.device)  # (B, 1) the latest [END] position
        else:
            end = self.attention_mask.sum(-1, keepdim=True) - 1
        start = torch.arange(length, device=run.device)[None]  # (1, L)
        fits = (start >= 1) & (start + present.sum(-1, keepdim=True) <= end)  # (B, L) a word run a … a+W_b−1
        run = run.masked_fill(~fits, float("-inf"))
        return torch.where(present.any(-1), run.logsumexp(-1), torch.zeros_like(run[:, 0]))


# Controls scored by the decoded model itself, by task: `generate` builds these instead of loading a classifier.
MODEL_SCORERS = {MentionsTask.name: DenoiserWordScorer}

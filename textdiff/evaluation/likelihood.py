"""An upper bound on the negative log-likelihood of text under a Diffusion-LM (the variational bound of Ho et al.
2020 / Kingma et al. 2021 over the model's discrete diffusion steps, with Diffusion-LM's rounding decoder).

The generative model being bounded is exactly what `generate(clamp=False)` samples from, run over all T steps:
z_{T−1} ~ N(0, I); z_{t−1} ~ p(z_{t−1} | z_t) = N(μ̃(z_t, f(z_t, t)), σ̃_t² I); w ~ softmax(z_0 · Eᵀ) per position.
With e = EMB(w) and q(z_t | e) = N(√ᾱ_t e, (1 − ᾱ_t) I):

    −log p(w) ≤ E_q[−log p(w | z_0)]                                   (reconstruction: the rounding CE)
              + Σ_{t=1}^{T−1} E_q[KL(q(z_{t−1} | z_t, e) ‖ p(z_{t−1} | z_t))]   (diffusion terms)
              + KL(q(z_{T−1} | e) ‖ N(0, I))                           (prior term, closed form)

Both Gaussians of a diffusion term share the variance σ̃_t², so KL_t = c_t² ‖e − x̂0‖² / (2 σ̃_t²), with c_t the
posterior mean's coefficient on x0. The sum over t is estimated by stratified Monte Carlo: K timesteps per
batch, one from each of K equal strata of {1, …, T−1}, weighted by (T − 1)/K; ε is drawn once per term.

The chain may also be cut at a step k > 0: generate down to z_k, then decode w ~ softmax(f(z_k, k) · Eᵀ) with the
denoiser's own x0 estimate. For every k this is a valid bound (reconstruction at k, diffusion terms t > k,
prior), and it avoids the smallest t, whose KL weights c_t²/(2σ̃_t²) are huge and make the k = 0 bound loose.
`decoder_steps` lists the k to evaluate; the report gives each, and the smallest (chosen on the same sentences,
so slightly optimistic) as the headline figure.

A model with a length prior (trained on length buckets) first draws its window ℓ ~ p(ℓ) and then denoises ℓ
positions only: its bound adds −log p(ℓ) (the "length" term) and sums the other terms over the ℓ positions of
[START] … [END], the rest masked out of attention as in generation.

Units: the bound for a whole sequence (padding positions included: the model must generate them) divided by
its real tokens (words + [END]), in nats per token; exp of that is a perplexity upper bound. The error bar is
the standard error over sentences of that per-sentence quantity (it includes the Monte-Carlo noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from textdiff import NoiseSchedule, TextDiffusionModel


@dataclass
class LikelihoodBound:
    """NLL upper bound on held-out text.

    Attributes:
        nats_per_token: Mean over sentences of the bound per real token.
        stderr: Standard error of that mean over sentences.
        perplexity_bound: exp(nats_per_token).
        reconstruction / diffusion / prior: the three terms, nats per token (means).
        length: −log p(ℓ) of the window, nats per token (a model with a length prior; else 0).
        decoder_step: The k of the headline figure.
        by_decoder_step: {k: (nats_per_token, stderr)} for every k evaluated.
        num_sentences: Sentences evaluated.
    """

    nats_per_token: float
    stderr: float
    perplexity_bound: float
    reconstruction: float
    diffusion: float
    prior: float
    length: float
    decoder_step: int
    by_decoder_step: dict[int, tuple[float, float]]
    num_sentences: int


@torch.no_grad()
def sequence_bound(
    model: TextDiffusionModel,
    input_ids: torch.Tensor,
    *,
    num_timesteps: int = 100,
    decoder_steps: tuple[int, ...] = (0,),
    generator: torch.Generator | None = None,
) -> dict[int, dict[str, torch.Tensor]]:
    """The three terms of the bound for each sequence of a batch, in nats per sequence, for each cut k.

    Args:
        model: The diffusion model (eval mode).
        input_ids: (B, L) framed ids ([START] … [END] [PAD] …).
        num_timesteps: K, the Monte-Carlo strata over t ∈ {1, …, T−1}.
        decoder_steps: The steps k at which the chain is decoded to words (0: the rounding head on z_0).
        generator: Source of t offsets and ε.

    Returns:
        {k: {"reconstruction": (B,), "diffusion": (B,), "prior": (B,), "length": (B,)}}.
    """
    config = model.config
    schedule = NoiseSchedule.from_name(config.noise_schedule, config.num_diffusion_steps)
    T = schedule.num_steps
    alpha_bar = schedule.alphas_cumprod
    e = model.embed(input_ids)  # (B, L, d)
    batch = e.shape[0]
    # The positions the model generates: all of them, or with a length prior the window [START] … [END].
    attention_mask, inside = None, torch.ones(input_ids.shape, dtype=e.dtype, device=e.device)  # (B, L)
    length_nll = torch.zeros(batch, dtype=e.dtype, device=e.device)
    if config.length_prior is not None:
        windows = (input_ids != config.pad_token_id).sum(1)  # (B,)
        attention_mask = torch.arange(input_ids.shape[1], device=e.device)[None] < windows[:, None]
        inside = attention_mask.to(e.dtype)
        prior_probs = torch.tensor(config.length_prior, dtype=torch.float64, device=e.device)
        length_nll = -prior_probs[windows].clamp(min=1e-12).log().to(e.dtype)

    def noise() -> torch.Tensor:
        return torch.randn(e.shape, generator=generator).to(e)

    # Reconstruction: −log p(w | z_k), z_k ~ q(z_k | e); at k = 0 the rounding head reads z_0 itself, at k > 0
    # it reads the denoiser's estimate f(z_k, k); a model that classifies decodes with its own logits at every k.
    reconstruction = {}
    for k in decoder_steps:
        if not 0 <= k < T - 1:
            raise ValueError(f"decoder step {k} must be in [0, {T - 2}].")
        k_batch = torch.full((batch,), k, dtype=torch.long, device=e.device)
        z_k = schedule.q_sample(e, k_batch, noise())
        if config.prediction_type == "logits":  # the denoiser's own word distribution is the decoder
            logits = model(z_k, k_batch, attention_mask=attention_mask).logits
        else:
            logits = model.logits(z_k if k == 0 else model(z_k, k_batch, attention_mask=attention_mask).pred_x0)
        nll = F.cross_entropy(logits.transpose(1, 2), input_ids, reduction="none")  # (B, L)
        reconstruction[k] = (nll * inside).sum(1)

    # Prior: KL(N(√ᾱ e, (1 − ᾱ) I) ‖ N(0, I)) at the last step, per dimension ½(ᾱ e² + (1 − ᾱ) − 1 − log(1 − ᾱ)).
    a_last = alpha_bar[-1].item()
    prior = (0.5 * (a_last * e.pow(2) - a_last - math.log1p(-a_last)) * inside[..., None]).sum(dim=(1, 2))

    # Diffusion terms by stratified Monte Carlo over t ∈ {1, …, T−1}.
    num_timesteps = min(num_timesteps, T - 1)
    edges = torch.linspace(1, T, num_timesteps + 1)
    offsets = torch.rand(num_timesteps, generator=generator)
    timesteps = (edges[:-1] + offsets * (edges[1:] - edges[:-1])).floor().long().clamp(1, T - 1)
    diffusion = {k: torch.zeros(batch, dtype=e.dtype, device=e.device) for k in decoder_steps}
    for t in timesteps.tolist():
        a_t, a_prev = alpha_bar[t].item(), alpha_bar[t - 1].item()
        beta = 1.0 - a_t / a_prev
        coef_x0 = math.sqrt(a_prev) * beta / (1.0 - a_t)
        variance = beta * (1.0 - a_prev) / (1.0 - a_t)
        t_batch = torch.full((batch,), t, dtype=torch.long, device=e.device)
        z_t = schedule.q_sample(e, t_batch, noise())
        pred_x0 = model(z_t, t_batch, attention_mask=attention_mask).pred_x0
        kl = coef_x0**2 * ((e - pred_x0).pow(2) * inside[..., None]).sum(dim=(1, 2)) / (2.0 * variance)
        for k in decoder_steps:
            if t > k:
                diffusion[k] += kl * (T - 1) / num_timesteps
    return {
        k: {"reconstruction": reconstruction[k], "diffusion": diffusion[k], "prior": prior, "length": length_nll}
        for k in decoder_steps
    }


def likelihood_bound(
    model: TextDiffusionModel,
    input_ids: torch.Tensor,
    *,
    pad_token_id: int,
    bos_token_id: int,
    batch_size: int = 64,
    num_timesteps: int = 100,
    decoder_steps: tuple[int, ...] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> LikelihoodBound:
    """The NLL bound, in nats per real token, over framed held-out sequences (N, L).

    `decoder_steps` defaults to the cuts k = T · (0, 1/80, 1/40, 1/20, 1/10, 3/20, 1/5, 3/10, 2/5)
    (0, 25, 50, 100, 200, 300, 400, 600, 800 for T = 2000).
    """
    from tqdm.auto import tqdm

    if decoder_steps is None:
        T = model.config.num_diffusion_steps
        decoder_steps = tuple(
            sorted({round(T * f) for f in (0, 1 / 80, 1 / 40, 1 / 20, 1 / 10, 3 / 20, 1 / 5, 3 / 10, 2 / 5)})
        )
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    per_sentence: dict[int, dict[str, list[torch.Tensor]]] = {
        k: {"reconstruction": [], "diffusion": [], "prior": [], "length": []} for k in decoder_steps
    }
    device = model.word_embeddings.weight.device
    for batch in tqdm(input_ids.split(batch_size), desc="NLL bound", disable=not progress):
        batch = batch.to(device)
        parts = sequence_bound(
            model, batch, num_timesteps=num_timesteps, decoder_steps=decoder_steps, generator=generator
        )
        tokens = ((batch != pad_token_id) & (batch != bos_token_id)).sum(1).clamp(min=1).float().cpu()
        for k, terms in parts.items():  # per real token: words + [END]
            for name, value in terms.items():
                per_sentence[k][name].append(value.float().cpu() / tokens)

    def summary(k: int) -> tuple[float, float]:
        values = sum(torch.cat(per_sentence[k][name]) for name in ("reconstruction", "diffusion", "prior", "length"))
        stderr = (values.std(unbiased=True) / math.sqrt(len(values))).item() if len(values) > 1 else float("nan")
        return values.mean().item(), stderr

    by_step = {k: summary(k) for k in decoder_steps}
    best = min(by_step, key=lambda k: by_step[k][0])
    mean, stderr = by_step[best]
    return LikelihoodBound(
        nats_per_token=mean,
        stderr=stderr,
        perplexity_bound=math.exp(mean),
        reconstruction=torch.cat(per_sentence[best]["reconstruction"]).mean().item(),
        diffusion=torch.cat(per_sentence[best]["diffusion"]).mean().item(),
        prior=torch.cat(per_sentence[best]["prior"]).mean().item(),
        length=torch.cat(per_sentence[best]["length"]).mean().item(),
        decoder_step=best,
        by_decoder_step=by_step,
        num_sentences=len(input_ids),
    )

"""The Diffusion-LM denoiser (Li et al. 2022, §4 and App. A) as a Hugging Face `PreTrainedModel`.

Words live as learned d-dimensional embeddings e(w). The denoiser f(x_t, t) predicts the clean latent x0:

    x_t (B, L, d) → up-projection (Linear → tanh → Linear) → + learned positions + timestep embedding
    → transformer encoder (bidirectional) → down-projection (Linear → tanh → Linear) → x̂0 (B, L, d)

Rounding maps a latent back to words through the same embedding matrix E (V, d): the nearest embedding in L2,
and, for the training loss, logits x · Eᵀ. The model knows nothing of noise schedules or samplers: the losses
(`textdiff.losses`) and samplers (`textdiff.samplers`) take it as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, PreTrainedModel
from transformers import initialization as init

from .configuration import TextDiffusionConfig
from .layers import TransformerBlock, sinusoidal_embedding
from .time_warping import TimeWarping

if TYPE_CHECKING:
    from .generation import GenerationOutput


@dataclass
class DenoiserOutput:
    """What the denoiser returns.

    Attributes:
        pred_x0: (B, L, d) the predicted clean latent x̂0 = f(x_t, t).
        logits: (B, L, V) scores of each position's clean word when the model classifies (prediction_type
            "logits"; then pred_x0 = softmax(logits) · E), else None.
    """

    pred_x0: torch.Tensor
    logits: torch.Tensor | None = None


class TiedRounding(nn.Module):
    """Rounding logits x · Eᵀ through the model's own embedding matrix E (no parameters of its own).

    A module (rather than a method) so that DeepSpeed ZeRO-3, which gathers a partitioned parameter only around
    the forward of a module that uses it, can be told about E with `register_external_parameter`.
    """

    def __init__(self, model: TextDiffusionModel) -> None:
        super().__init__()
        self._model = [model]  # a plain list: E stays registered once, under word_embeddings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d) -> (B, L, V)."""
        return x @ self._model[0].embedding_table().transpose(0, 1)


class TextDiffusionPreTrainedModel(PreTrainedModel):
    config_class = TextDiffusionConfig
    base_model_prefix = "textdiff"
    main_input_name = "x_t"
    _no_split_modules = ["TransformerBlock"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) for linear layers and positions; the word embeddings get N(0, 1) as in
        the paper (`embedding_init_std`), so that words start far apart relative to the noise."""
        if module is getattr(self, "word_embeddings", None):
            init.normal_(module.weight, mean=0.0, std=self.config.embedding_init_std)
        elif module is getattr(self, "condition_embed", None):  # starts as the unconditional model
            init.zeros_(module.weight)
        else:
            super()._init_weights(module)


class TextDiffusionModel(TextDiffusionPreTrainedModel):
    """Diffusion-LM: embeddings, the x0-predicting denoiser, and rounding through the embedding matrix."""

    def __init__(self, config: TextDiffusionConfig) -> None:
        super().__init__(config)
        hidden, dim = config.hidden_size, config.embedding_dim
        self.word_embeddings = nn.Embedding(config.vocab_size, dim)
        self.rounding = TiedRounding(self)
        in_dim = 2 * dim if config.self_conditioning else dim
        self.input_up_proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden))
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.time_embed = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.SiLU(), nn.Linear(4 * hidden, hidden))
        # A conditional model adds Σ of its conditions' embeddings, like the timestep embedding (zeros: no condition).
        self.condition_embed = (
            nn.Linear(len(config.condition_labels), hidden, bias=False) if config.condition_labels else None
        )
        self.input_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.blocks = nn.ModuleList([TransformerBlock(config) for _ in range(config.num_hidden_layers)])
        self.output_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        if config.prediction_type == "logits":  # classify each position's clean word (CDCD, Plaid)
            self.output_logits = nn.Linear(hidden, config.vocab_size)
        else:  # regress the clean latent (Diffusion-LM)
            self.output_down_proj = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        # What training learned about where the noise levels are informative (CDCD): fitted by the loss, used by
        # the loss to draw t and by `generate` to choose its timesteps.
        self.time_warping = (
            TimeWarping(config.num_diffusion_steps, config.min_timestep) if config.time_warping else None
        )
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> TextDiffusionModel:
        """`PreTrainedModel.from_pretrained` (and so `AutoModel.from_pretrained`), plus the decoding defaults saved
        beside the weights (generation_config.json: sampler, steps, clamping, x̂0 temperature) as
        `generation_config`, which `generate` reads: a few-step student decodes with its own steps untold."""
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        hub = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder") if k in kwargs}
        try:
            model.generation_config = GenerationConfig.from_pretrained(pretrained_model_name_or_path, **hub)
        except OSError:  # no saved decoding defaults: generate uses the library's
            pass
        return model

    # --- words <-> latents -------------------------------------------------------------------------------------

    def _scaled(self, rows: torch.Tensor) -> torch.Tensor:
        """Embedding rows (..., d), each renormalised to `embedding_scale` when the config sets one."""
        if self.config.embedding_scale is None:
            return rows
        return self.config.embedding_scale * F.normalize(rows, dim=-1)

    def embedding_table(self) -> torch.Tensor:
        """E (V, d): the word embeddings as the model uses them (`_scaled`). Outside autograd (decoding) it is
        computed once per version of the weights, not at every step (in a compiled graph, frozen weights fold it
        into a constant instead)."""
        weight = self.word_embeddings.weight
        if (torch.is_grad_enabled() and weight.requires_grad) or torch.compiler.is_compiling():
            return self._scaled(weight)
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        cached = getattr(self, "_table_cache", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = self._table_cache = (key, self._scaled(weight).detach())
        return cached[1]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """EMB(w): (B, L) token ids -> (B, L, d) latents."""
        return self._scaled(self.word_embeddings(input_ids))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Rounding logits x · Eᵀ: (B, L, d) -> (B, L, V). Trained with cross-entropy (the paper's L_round)."""
        return self.rounding(x)

    def nearest_token_distances(self, x: torch.Tensor) -> torch.Tensor:
        """Squared L2 distances ‖x − e_v‖² to every embedding: (B, L, d) -> (B, L, V)."""
        emb = self.embedding_table()  # (V, d)
        return (x * x).sum(-1, keepdim=True) - 2 * x @ emb.T + (emb * emb).sum(-1)

    def word_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Rounding scores −‖x − e_v‖² of every word at every position: (B, L, d) -> (B, L, V); the nearest word
        scores highest (softmax of them is rounding's probability)."""
        return -self.nearest_token_distances(x)

    def round(self, x: torch.Tensor) -> torch.Tensor:
        """Rounding: each latent to its nearest word, (B, L, d) -> (B, L) ids."""
        return self.word_scores(x).max(-1).indices  # argmax, faster on CPU (textdiff/processors.py)

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        """The clamping trick: replace each latent by its nearest embedding, (B, L, d) -> (B, L, d)."""
        return self.embed(self.round(x))

    # --- the denoiser ------------------------------------------------------------------------------------------

    def forward(
        self,
        x_t: torch.Tensor,
        timesteps: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        self_cond: torch.Tensor | None = None,
        conditions: torch.Tensor | None = None,
        x0_temperature: float = 1.0,
    ) -> DenoiserOutput:
        """Predict x0 from a noisy latent.

        Args:
            x_t: (B, L, d) noisy latents.
            timesteps: (B,) diffusion steps t in [0, T) of the training schedule.
            attention_mask: (B, L), 1 for positions to attend to, 0 for positions to ignore; None attends all.
            self_cond: (B, L, d) previous estimate of x0 for self-conditioning; zeros when None. Ignored unless
                the config enables self-conditioning.
            conditions: (B, C) multi-hot over `config.condition_labels` (a conditional model only); None or a zero
                row is the unconditional model.
            x0_temperature: τ of a model that classifies the clean word: pred_x0 = softmax(logits / τ) · E (the
                decoding setting `DecodingConfig.x0_temperature`; 1 in training).

        Returns:
            `DenoiserOutput` with pred_x0 of shape (B, L, d).
        """
        batch, length, dim = x_t.shape
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"Sequence length {length} exceeds the model's max_position_embeddings "
                f"({self.config.max_position_embeddings}); decode at most that many positions."
            )
        noisy = x_t  # (B, L, d), before the self-conditioning input is joined to it
        if self.config.self_conditioning:
            if self_cond is None:
                self_cond = torch.zeros_like(x_t)
            x_t = torch.cat([x_t, self_cond], dim=-1)  # (B, L, 2d)
        positions = torch.arange(length, device=x_t.device)
        time = self.time_embed(sinusoidal_embedding(timesteps, self.config.hidden_size).to(x_t.dtype))  # (B, H)
        if conditions is not None:
            if self.condition_embed is None:
                raise ValueError("This model was trained without conditions; pass conditions=None.")
            time = time + self.condition_embed(conditions.to(time.dtype))  # (B, H)
        hidden = self.input_up_proj(x_t) + self.position_embeddings(positions)[None] + time[:, None]  # (B, L, H)
        hidden = self.dropout(self.input_norm(hidden))
        mask = None
        if attention_mask is not None:
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L)
        for block in self.blocks:
            hidden = block(hidden, mask)
        hidden = self.output_norm(hidden)
        if self.config.prediction_type == "x0":
            return DenoiserOutput(pred_x0=self.output_down_proj(hidden))
        logits = self.output_logits(hidden)  # (B, L, V)
        if self.config.output_prior:
            logits = logits + self.output_prior_logits(noisy, timesteps).to(logits.dtype)
        scaled = logits.float() * (1.0 / x0_temperature) if x0_temperature != 1.0 else logits.float()  # logits / τ
        probs = scaled.softmax(-1)  # (B, L, V)
        pred_x0 = probs.to(hidden.dtype) @ self.embedding_table().to(hidden.dtype)  # (B, L, d)
        return DenoiserOutput(pred_x0=pred_x0, logits=logits)

    def output_prior_logits(self, x_t: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """log N(x_t; √ᾱ_t e_w, (1 − ᾱ_t) I) up to a constant in w: (√ᾱ_t x_t·e_w − ᾱ_t ‖e_w‖² / 2) / (1 − ᾱ_t).

        x_t: (B, L, d), timesteps: (B,) -> (B, L, V), in fp32.
        """
        if getattr(self, "_alpha_bar", None) is None or self._alpha_bar.device != x_t.device:
            from .schedules import NoiseSchedule  # a plain attribute, not a buffer: rebuilt, never saved

            schedule = NoiseSchedule.from_name(self.config.noise_schedule, self.config.num_diffusion_steps)
            self._alpha_bar = schedule.alphas_cumprod.float().to(x_t.device)
        alpha_bar = self._alpha_bar[timesteps][:, None, None]  # (B, 1, 1)
        table = self.embedding_table().float()  # (V, d)
        scores = alpha_bar.sqrt() * (x_t.float() @ table.T) - 0.5 * alpha_bar * (table * table).sum(-1)
        return scores / (1.0 - alpha_bar)

    def generate(self, *args, **kwargs) -> torch.Tensor | GenerationOutput:
        """Decode text from noise in parallel; see `textdiff.generation.generate` for the arguments."""
        from .generation import generate

        return generate(self, *args, **kwargs)

    def edit(self, *args, **kwargs) -> torch.Tensor | GenerationOutput:
        """Rewrite given texts by partial noising and denoising (SDEdit); see `textdiff.editing.edit`."""
        from .editing import edit

        return edit(self, *args, **kwargs)

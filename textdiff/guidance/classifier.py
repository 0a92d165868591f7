"""Classifiers on noisy latents, p(c | x_t) (Diffusion-LM §5.2): what classifier guidance differentiates.

Each classifier reads the latents the diffusion runs on (the frozen model's word-embedding space), at any noise
level, and predicts one kind of control (a `ClassifierTask` of `textdiff.guidance.tasks`, which owns the head):

    x_t (B, L, d), t → up-projection + learned positions + timestep embedding → small transformer → h (B, L, H)
      field_value: per position, scores for every (field, value or absent); pooled over positions by
                   log-mean-exp ("some word mentions it"), then one softmax per field   (semantic content)
      pos:         per position, a softmax over the universal tags ∪ {START, END, PAD}   (parts of speech)
      spans:       per queried span (i, j), a softmax over constituent labels ∪ {NONE}   (syntax spans)

Timesteps are those of the diffusion model's training schedule, t ∈ [0, T), plus t = −1 for the clean latent
x0 = EMB(w) (as in the paper, which trains on t ~ U{−1 … T}). `log_prob(x_t, t, target)` returns, per row, the
summed log-probability of a batched target (entries equal to IGNORE are skipped), which is what guidance raises.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from ..layers import TransformerBlock, sinusoidal_embedding
from .tasks import IGNORE, TASKS, classifier_task


class LatentClassifierConfig(PretrainedConfig):
    """Settings of `LatentClassifier`.

    Args:
        task: A name in `textdiff.guidance.tasks.CLASSIFIER_TASKS`: "field_value", "pos" or "spans".
        labels: The classes of a "pos" or "spans" classifier (for "spans", labels[0] is the non-constituent).
        fields: For "field_value": {field: [values]}, e.g. {"food": ["English", "Italian", ...]}.
        embedding_dim: Width d of the diffusion model's latents.
        hidden_size / num_hidden_layers / num_attention_heads / intermediate_size: The transformer's shape.
        max_position_embeddings: Longest latent sequence (the diffusion model's).
        num_diffusion_steps: T of the diffusion model's training schedule.
        hidden_dropout_prob / attention_dropout_prob / layer_norm_eps / initializer_range: As in
            `TextDiffusionConfig`.
    """

    model_type = "textdiff-latent-classifier"

    def __init__(
        self,
        task: str = "pos",
        labels: list[str] | None = None,
        fields: dict[str, list[str]] | None = None,
        embedding_dim: int = 16,
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int | None = None,
        max_position_embeddings: int = 64,
        num_diffusion_steps: int = 2000,
        hidden_dropout_prob: float = 0.1,
        attention_dropout_prob: float = 0.1,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        **kwargs,
    ) -> None:
        self.task = task
        self.labels = list(labels or [])
        self.fields = {name: list(values) for name, values in (fields or {}).items()}
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size if intermediate_size is not None else 4 * hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.num_diffusion_steps = num_diffusion_steps
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_dropout_prob = attention_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        super().__init__(**kwargs)
        self.validate_settings()

    def validate_settings(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"LatentClassifierConfig.task must be one of {TASKS}, got {self.task!r}.")
        classifier_task(self.task).check(self)
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"LatentClassifierConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )

    @property
    def num_outputs(self) -> int:
        """Width of the output layer: one logit per label, or per (field, value or absent)."""
        return classifier_task(self.task).num_outputs(self)


@dataclass
class LatentClassifierOutput:
    """Attributes:
    logits: "pos": (B, L, C); "spans": (B, S, C) for the S queried spans; "field_value": (B, Σ_f (|values_f| + 1)),
        the fields' blocks in `config.fields` order, each starting with "absent".
    """

    logits: torch.Tensor


class LatentClassifier(PreTrainedModel):
    """A transformer classifier p(c | x_t, t) on noisy latents; its head is its task's (`config.task`)."""

    config_class = LatentClassifierConfig
    base_model_prefix = "classifier"
    main_input_name = "x_t"

    def __init__(self, config: LatentClassifierConfig) -> None:
        super().__init__(config)
        hidden = config.hidden_size
        self.input_up_proj = nn.Sequential(
            nn.Linear(config.embedding_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden)
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.time_embed = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.input_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.blocks = nn.ModuleList([TransformerBlock(config) for _ in range(config.num_hidden_layers)])
        self.output_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.task = classifier_task(config.task)
        head_input = self.task.head_inputs * hidden  # spans: [h_i; h_j; h_i ⊙ h_j]
        self.head = nn.Sequential(nn.Linear(head_input, hidden), nn.GELU(), nn.Linear(hidden, config.num_outputs))
        self.post_init()

    def encode(self, x_t: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """(B, L, d) latents at timesteps (B,) in [−1, T) -> (B, L, H) features."""
        length = x_t.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"Sequence length {length} exceeds the classifier's max_position_embeddings "
                f"({self.config.max_position_embeddings})."
            )
        time = self.time_embed(sinusoidal_embedding(timesteps + 1, self.config.hidden_size))  # (B, H); clean = 0
        positions = torch.arange(length, device=x_t.device)
        hidden = self.input_up_proj(x_t) + self.position_embeddings(positions)[None] + time[:, None]
        hidden = self.dropout(self.input_norm(hidden))
        for block in self.blocks:
            hidden = block(hidden, None)
        return self.output_norm(hidden)  # (B, L, H)

    def forward(
        self, x_t: torch.Tensor, timesteps: torch.Tensor, spans: torch.Tensor | None = None
    ) -> LatentClassifierOutput:
        """Logits of the task's classes.

        Args:
            x_t: (B, L, d) latents.
            timesteps: (B,) timesteps in [−1, T); −1 is the clean latent.
            spans: "spans" task only: (B, S, 2) start and end positions (inclusive) of the spans to label.
        """
        hidden = self.encode(x_t, timesteps)  # (B, L, H)
        return LatentClassifierOutput(logits=self.task.logits(self.head, hidden, spans))

    def logits_and_labels(
        self, x_t: torch.Tensor, timesteps: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's logits (..., C) aligned with the labels (...) of a batched target (see `log_prob`)."""
        return self.task.logits_and_labels(self, x_t, timesteps, target)

    def log_prob(self, x_t: torch.Tensor, timesteps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Σ log p(target | x_t) per row, skipping IGNORE entries: the quantity classifier guidance raises.

        Args:
            x_t: (B, L, d); timesteps: (B,).
            target: "pos": (B, L) label ids; "field_value": (B, F) value index per field (0 = absent, i + 1 =
                values[i]); "spans": (B, S, 3) rows (start, end, label).

        Returns:
            (B,) log-probabilities.
        """
        logits, labels = self.logits_and_labels(x_t, timesteps, target)
        keep = labels != IGNORE
        picked = logits.log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        return (picked * keep).sum(-1)

    def loss(self, x_t: torch.Tensor, timesteps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per counted target entry (for training)."""
        count = self.task.labels(target).ne(IGNORE).sum().clamp(min=1)
        return -self.log_prob(x_t, timesteps, target).sum() / count

"""Configuration of a Diffusion-LM text diffusion model (Li et al. 2022, "Diffusion-LM Improves
Controllable Text Generation").

The config holds everything needed to rebuild the denoiser *and* to decode with it: the architecture and
the forward-process (noise schedule) settings. Run-level settings (data, optimiser, DeepSpeed) live in the
YAML run config (`textdiff.training.config`), never here.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from .schedules import SCHEDULES

PREDICTION_TYPES = ("x0", "logits")


class TextDiffusionConfig(PretrainedConfig):
    """Settings of `TextDiffusionModel`.

    Args:
        vocab_size: Number of rows of the embedding (= rounding) matrix, special tokens included.
        embedding_dim: Width d of the continuous word embeddings the diffusion runs on (16 for E2E in the paper).
        hidden_size: Width of the transformer encoder (768 in the paper).
        num_hidden_layers: Number of transformer blocks (12 in the paper).
        num_attention_heads: Attention heads per block; must divide `hidden_size`.
        intermediate_size: Width of the feed-forward layer of each block (4 * hidden_size if None).
        max_position_embeddings: Longest sequence the model can denoise (learned positions).
        hidden_dropout_prob: Dropout on the embeddings, attention output and feed-forward output.
        attention_dropout_prob: Dropout on attention weights.
        layer_norm_eps: Epsilon of every LayerNorm.
        initializer_range: Std of the normal initialisation of linear and embedding weights.
        embedding_init_std: Std of the normal initialisation of the word embeddings (the paper: 1.0).
        noise_schedule: "sqrt" (the paper's), "cosine" or "linear"; see `textdiff.schedules`.
        num_diffusion_steps: Number T of forward-process steps the model is trained on (2000 in the paper).
        prediction_type: What the denoiser outputs. "x0": the clean latent itself, regressed with an MSE
            (Diffusion-LM). "logits": scores over the vocabulary for each position's clean word, trained with
            cross-entropy; the x0 estimate is their softmax-weighted average of the embeddings, x̂0 = softmax(logits)·E
            ("score interpolation", Dieleman et al. 2022, CDCD; Plaid), and rounding is their argmax.
        embedding_scale: None: free embeddings (the paper's; its loss keeps them from collapsing). A number s: every
            row of E is renormalised to norm s in every forward, so the embeddings cannot shrink or collapse however
            they are trained (CDCD, Plaid: unit norm; √d keeps the paper's N(0, 1) scale).
        min_timestep: The smallest diffusion step the model is trained on and decoded from (0: all). Below it a
            latent already rounds to its own word, so training there is wasted (DINOISER's noise floor).
        self_conditioning: Whether the denoiser takes its previous x0 estimate as an extra input
            (Chen et al. 2022). Only the input layer changes; without it the extra input is ignored.
        output_prior: For a model that classifies: add to its logits the log-likelihood of x_t under each word,
            log N(x_t; √ᾱ_t e_w, (1 − ᾱ_t) I) = (√ᾱ_t x_t·e_w − ᾱ_t ‖e_w‖² / 2) / (1 − ᾱ_t) + const, so that the
            network learns only what the context adds to what the noisy latent already says (Plaid's output prior).
        time_warping: Whether training draws t from a CDF fitted to the denoiser's cross-entropy over noise levels,
            and decoding walks the same warped timesteps (CDCD's time warping; `textdiff.time_warping`). The fit
            is part of the model's state (buffers of `model.time_warping`).
        length_prior: For a model trained on length buckets (`data.bucket_by_length`): p(ℓ) for ℓ = 0 …
            max_position_embeddings, the probability that a sentence fills a window of ℓ positions ([START] … [END]).
            Such a model never sees long runs of padding; generation draws each row's ℓ from this prior and
            denoises only those positions (the rest masked out of attention and kept as [PAD]). None: every
            sequence is `max_position_embeddings` long, padding included, as in the paper.
        condition_labels: The condition vocabulary of a conditional model for classifier-free guidance (Ho &
            Salimans 2022), e.g. ["food=Italian", "area=riverside", ...]; the denoiser then also takes a (B, C)
            multi-hot `conditions` input (all zeros: unconditional). None: an unconditional model.
        pad_token_id / bos_token_id / eos_token_id: Ids of the special tokens of the tokenizer saved beside
            the model (the START / END / PAD tokens of the paper).
        unk_token_id: Id of the unknown-word token (never written where a word is required, e.g. under `Length`).
    """

    model_type = "textdiff"

    def __init__(
        self,
        vocab_size: int = 821,
        embedding_dim: int = 16,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int | None = None,
        max_position_embeddings: int = 64,
        hidden_dropout_prob: float = 0.1,
        attention_dropout_prob: float = 0.1,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        embedding_init_std: float = 1.0,
        noise_schedule: str = "sqrt",
        num_diffusion_steps: int = 2000,
        self_conditioning: bool = False,
        prediction_type: str = "x0",
        embedding_scale: float | None = None,
        min_timestep: int = 0,
        output_prior: bool = False,
        time_warping: bool = False,
        length_prior: list[float] | None = None,
        condition_labels: list[str] | None = None,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = 1,
        eos_token_id: int | None = 2,
        unk_token_id: int | None = None,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size if intermediate_size is not None else 4 * hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_dropout_prob = attention_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.embedding_init_std = embedding_init_std
        self.noise_schedule = noise_schedule
        self.num_diffusion_steps = num_diffusion_steps
        self.self_conditioning = self_conditioning
        self.prediction_type = prediction_type
        self.embedding_scale = embedding_scale
        self.min_timestep = min_timestep
        self.output_prior = output_prior
        self.time_warping = time_warping
        self.length_prior = [float(p) for p in length_prior] if length_prior is not None else None
        self.condition_labels = list(condition_labels) if condition_labels else None
        self.unk_token_id = unk_token_id
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)
        self.validate_settings()

    def validate_settings(self) -> None:
        """Raise `ValueError` naming the first setting that cannot build a model."""
        positive = {
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "num_diffusion_steps": self.num_diffusion_steps,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"TextDiffusionConfig.{name} must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"TextDiffusionConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads}); pick a head count that divides it."
            )
        for name in ("hidden_dropout_prob", "attention_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"TextDiffusionConfig.{name} must be in [0, 1), got {value!r}.")
        if self.condition_labels is not None and len(set(self.condition_labels)) != len(self.condition_labels):
            raise ValueError("TextDiffusionConfig.condition_labels must not repeat a label.")
        if self.noise_schedule not in SCHEDULES:
            raise ValueError(
                f"TextDiffusionConfig.noise_schedule must be one of {SCHEDULES}, got {self.noise_schedule!r}."
            )
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"TextDiffusionConfig.prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}."
            )
        if self.embedding_scale is not None and not self.embedding_scale > 0:
            raise ValueError(
                f"TextDiffusionConfig.embedding_scale must be positive or None, got {self.embedding_scale!r}."
            )
        if not isinstance(self.min_timestep, int) or not 0 <= self.min_timestep < self.num_diffusion_steps:
            raise ValueError(
                f"TextDiffusionConfig.min_timestep must be an integer in [0, num_diffusion_steps="
                f"{self.num_diffusion_steps}), got {self.min_timestep!r}."
            )
        if self.time_warping and self.prediction_type != "logits":
            raise ValueError(
                "TextDiffusionConfig.time_warping fits the denoiser's cross-entropy of the clean words over noise "
                "levels, which only a classifying denoiser has; set prediction_type='logits' or time_warping=False."
            )
        if self.output_prior and self.prediction_type != "logits":
            raise ValueError(
                "TextDiffusionConfig.output_prior adds to the logits of a classifying denoiser; set "
                "prediction_type='logits' or output_prior=False."
            )
        if self.length_prior is not None:
            prior = self.length_prior
            if len(prior) != self.max_position_embeddings + 1 or min(prior) < 0 or abs(sum(prior) - 1.0) > 1e-4:
                raise ValueError(
                    f"TextDiffusionConfig.length_prior must be {self.max_position_embeddings + 1} non-negative "
                    f"probabilities summing to 1 (p(ℓ) for ℓ = 0 … max_position_embeddings), got {len(prior)} values "
                    f"summing to {sum(prior):.4f}."
                )
            if sum(prior[:2]) > 0:
                raise ValueError(
                    "TextDiffusionConfig.length_prior must give ℓ < 2 no mass: [START] and [END] need two."
                )
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"TextDiffusionConfig.{name}={value} is outside the vocabulary (size {self.vocab_size}); "
                    "the tokenizer and the model config disagree."
                )

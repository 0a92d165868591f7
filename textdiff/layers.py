"""The transformer layers the denoiser and the latent classifiers share: timestep features, bidirectional
self-attention, the pre-LayerNorm block. They read the widths from any config with hidden_size,
num_attention_heads, intermediate_size, layer_norm_eps and the dropout probabilities."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig


def sinusoidal_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoidal features of integer timesteps.

    Args:
        timesteps: (B,) timesteps (integers, float values allowed).
        dim: Feature width.

    Returns:
        (B, dim) features [cos(t·ω_k), sin(t·ω_k)], ω_k = max_period^(−k / (dim/2)).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]  # (B, half)
    features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        features = F.pad(features, (0, 1))
    return features


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention on PyTorch's fused scaled-dot-product kernel."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_dropout_prob

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """hidden: (B, L, H); attention_mask: (B, 1, 1, L) boolean, True = attend, or None."""
        batch, length, width = hidden.shape
        q, k, v = self.qkv(hidden).split(width, dim=-1)  # 3 × (B, L, H)
        q, k, v = (x.view(batch, length, self.num_heads, -1).transpose(1, 2) for x in (q, k, v))  # (B, h, L, H/h)
        dropout = self.attention_dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=dropout)
        return self.out(attended.transpose(1, 2).reshape(batch, length, width))  # (B, L, H)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = SelfAttention(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            nn.GELU(),
            nn.Linear(config.intermediate_size, config.hidden_size),
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        hidden = hidden + self.dropout(self.attention(self.attention_norm(hidden), attention_mask))
        return hidden + self.dropout(self.mlp(self.mlp_norm(hidden)))

"""Temporal transformer head: frame features -> per-frame phase logits."""

import math

import torch
from torch import nn

from .normalize import FeatureNorm


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    """Fixed sinusoidal position codes, (length, dim)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return codes


class TemporalTransformer(nn.Module):
    """ViT-style encoder over a video's frame features.

    Frames attend to every other frame of the same video, so a frame's logits
    depend on where it sits in the procedure, not only on how it looks.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        input_dropout: float = 0.3,
        attention_dropout: float = 0.0,
    ):
        super().__init__()
        self.norm = FeatureNorm(in_dim)
        self.input_dropout = nn.Dropout(input_dropout)
        self.proj = nn.Linear(in_dim, hidden_dim)
        layer = nn.TransformerEncoderLayer(
            hidden_dim,
            num_heads,
            dim_feedforward=2 * hidden_dim,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        # Dropout on the (T x T) attention maps costs more than the rest of a
        # training step on long videos (random masks for T^2 entries, and no
        # fused attention kernel); it is off unless asked for.
        layer.self_attn.dropout = attention_dropout
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.out = nn.Linear(hidden_dim, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        # x: (B, T, D); mask: (B, T) True where a frame exists (padding False)
        return self.body(self.input_dropout(self.norm(x)), mask)

    def body(self, h: torch.Tensor, mask: torch.Tensor | None = None):
        """Everything after the feature normalisation: (B, T, D) -> (B, T, C)."""
        h = self.proj(h)  # (B, T, H)
        # absolute frame order is what lets the model notice phases out of order
        h = h + sinusoidal_positions(h.shape[1], h.shape[2], h.device)[None]
        padding = None if mask is None else ~mask
        h = self.encoder(h, src_key_padding_mask=padding)  # (B, T, H)
        return self.out(h)  # (B, T, C)

"""Multi-stage temporal convolutional network (MS-TCN style) head."""

import torch
from torch import nn
from torch.nn import functional as F

from .normalize import FeatureNorm


class _DilatedResidual(nn.Module):
    def __init__(self, dilation: int, channels: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask):
        # x: (B, H, T); mask: (B, 1, T)
        out = self.dropout(self.mix(F.relu(self.conv(x))))
        return (x + out) * mask


class _Stage(nn.Module):
    def __init__(self, num_layers, channels, in_dim, num_classes, dropout):
        super().__init__()
        self.inp = nn.Conv1d(in_dim, channels, 1)
        self.layers = nn.ModuleList(_DilatedResidual(2**i, channels, dropout) for i in range(num_layers))
        self.out = nn.Conv1d(channels, num_classes, 1)

    def forward(self, x, mask):
        h = self.inp(x) * mask
        for layer in self.layers:
            h = layer(h, mask)
        return self.out(h) * mask


class MultiStageTCN(nn.Module):
    """Stages of dilated temporal convolutions; each refines the previous.

    Only the last stage's logits are returned; training on all stages is a
    refinement left to the loss when needed.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden_dim: int = 64,
        num_stages: int = 2,
        num_layers: int = 6,
        dropout: float = 0.3,
        input_dropout: float = 0.3,
    ):
        super().__init__()
        self.norm = FeatureNorm(in_dim)
        self.input_dropout = nn.Dropout(input_dropout)
        self.stages = nn.ModuleList(
            [_Stage(num_layers, hidden_dim, in_dim, num_classes, dropout)]
            + [_Stage(num_layers, hidden_dim, num_classes, num_classes, dropout) for _ in range(num_stages - 1)]
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        # x: (B, T, D); mask: (B, T)
        return self.body(self.input_dropout(self.norm(x)), mask)

    def body(self, h: torch.Tensor, mask: torch.Tensor | None = None):
        """Everything after the feature normalisation: (B, T, D) -> (B, T, C)."""
        if mask is None:
            mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        m = mask[:, None, :].to(h.dtype)  # (B, 1, T)
        h = h.transpose(1, 2)  # (B, D, T)
        logits = self.stages[0](h, m)
        for stage in self.stages[1:]:
            logits = stage(F.softmax(logits, dim=1) * m, m)
        return logits.transpose(1, 2)  # (B, T, C)

"""Frame-wise MLP head: no temporal context (the ablation baseline)."""

import torch
from torch import nn

from .normalize import FeatureNorm


class FrameMLP(nn.Module):
    """Classifies each frame from its own features only."""

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden_dim: int = 64,
        dropout: float = 0.1,
        input_dropout: float = 0.3,
    ):
        super().__init__()
        self.norm = FeatureNorm(in_dim)
        self.net = nn.Sequential(
            nn.Dropout(input_dropout),
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        # x: (B, T, D) -> (B, T, C)
        return self.body(self.net[0](self.norm(x)), mask)

    def body(self, h: torch.Tensor, mask: torch.Tensor | None = None):
        """Everything after the feature normalisation and input dropout."""
        return self.net[1:](h)

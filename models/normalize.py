"""Feature standardisation stored inside a head's state dict."""

import torch
from torch import nn


class FeatureNorm(nn.Module):
    """Standardises features with statistics fixed at training time.

    The statistics are buffers, so a checkpoint carries them and a replay on
    new videos normalises exactly as training did.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        # features: (N, D) pooled over all training frames
        self.mean.copy_(features.mean(0))
        if len(features) > 1:  # the std of one frame is undefined (NaN)
            self.std.copy_(features.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

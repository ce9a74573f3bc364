"""Losses for training temporal heads."""

import torch
from torch.nn import functional as F

IGNORE_INDEX = -100


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over frames whose target is not ``IGNORE_INDEX``.

    Args:
        logits: (B, T, C)
        targets: (B, T) class indices; padding and unlabelled frames carry
            ``IGNORE_INDEX``
    """
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def per_frame_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every frame against its given label, (..., T)."""
    log_probs = F.log_softmax(logits, dim=-1)
    return -log_probs.gather(-1, targets[..., None]).squeeze(-1)

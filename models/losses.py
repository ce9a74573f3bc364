"""Losses for training temporal heads."""

import numpy as np
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


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each frame times its weight, over the sum of weights.

    Args:
        logits: (B, T, C)
        targets: (B, T) class indices (any valid index where the weight is 0)
        weights: (B, T) float, 0 for padding
    """
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).clamp_min(0), reduction="none")
    w = weights.reshape(-1).to(ce.dtype)
    return (ce * w).sum() / w.sum().clamp_min(1e-8)


def mgw_weights(positions, labelled, sigma: float):
    """Maximum-Gaussian weights of frames at ``positions`` (T,) given the
    ``labelled`` mask (T,): 1 on labelled frames, else the largest
    ``exp(-d^2 / (2 sigma^2))`` over the labelled frames at distance ``d``.

    ``sigma = 0`` gives 0 to every unlabelled frame (masking); ``sigma = inf``
    gives 1 (training on nearest-label interpolation).
    """

    positions = np.asarray(positions, dtype=np.float64)
    labelled = np.asarray(labelled, dtype=bool)
    if sigma == float("inf"):
        return np.ones(len(positions))
    known = positions[labelled]
    if sigma <= 0 or known.size == 0:
        return labelled.astype(np.float64)
    right = np.clip(np.searchsorted(known, positions), 0, known.size - 1)
    left = np.clip(right - 1, 0, known.size - 1)
    distance = np.minimum(np.abs(positions - known[left]), np.abs(known[right] - positions))
    return np.exp(-(distance**2) / (2.0 * sigma**2))

"""Per-frame scores from loss trajectories. Higher always means more suspect.

``csl`` is the Cumulative Sample Loss: the mean of a frame's loss over every
checkpoint. The other scores are its peers, computed from the same replay.
"""

import numpy as np

from .replay import Trajectory


def csl(trajectory: Trajectory) -> np.ndarray:
    """Cumulative Sample Loss: mean cross-entropy over checkpoints, (T,)."""
    return trajectory.loss.mean(axis=1)


def last_loss(trajectory: Trajectory) -> np.ndarray:
    """Loss under the last checkpoint only, (T,)."""
    return trajectory.loss[:, -1]


def negative_aum(trajectory: Trajectory) -> np.ndarray:
    """Minus the Area Under the Margin (given logit minus the largest other
    logit, averaged over checkpoints), (T,)."""
    return -trajectory.margin.mean(axis=1)


SCORES = {
    "csl": csl,
    "last_loss": last_loss,
    "aum": negative_aum,
}


def compute_scores(trajectory: Trajectory, names) -> dict:
    """``{name: (T,) scores}`` for each name in ``names`` (see :data:`SCORES`)."""
    unknown = sorted(set(names) - set(SCORES))
    if unknown:
        raise ValueError(f"unknown score(s) {unknown}; choose from {sorted(SCORES)}")
    return {name: SCORES[name](trajectory).astype(np.float32) for name in names}

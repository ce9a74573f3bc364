"""Per-frame scores from loss trajectories. Higher always means more suspect.

``csl`` is the Cumulative Sample Loss: the mean of a frame's loss over every
checkpoint. The others are its peers, computed from the same replay so that
they can be compared on equal terms:

==========================  ====================================================
``csl``                     mean cross-entropy over checkpoints
``last_loss``               cross-entropy under the last checkpoint only
``csl_smooth``              CSL averaged over a centred window of frames
``csl_window_max``          CSL maximum over a centred window of frames
``aum``                     minus the Area Under the Margin (Pleiss et al.):
                            given logit minus the largest other, averaged
``cartography_confidence``  1 - mean probability of the given label over
                            checkpoints (Swayamdipta et al.'s confidence)
``cartography_variability`` minus the standard deviation of that probability:
                            frames the models get consistently wrong (the
                            hard-to-learn region) vary little
``forgetting``              forgetting events: correct -> incorrect flips over
                            checkpoints; never-learnt frames count E + 1
``self_confidence``         1 - cleanlab's self-confidence of the given label
                            under the last (out-of-fold) checkpoint
==========================  ====================================================

``mistakenness`` (fiftyone-brain) needs a FiftyOne collection and lives in
:mod:`fiftyone_csl.plugin.peers`.
"""

import numpy as np

from .replay import Trajectory

WINDOW = 9


def _window(values: np.ndarray, window: int, reduce) -> np.ndarray:
    # centred window, truncated at the ends of the video
    half = max(int(window), 1) // 2
    T = len(values)
    if T == 0 or half == 0:
        return values.copy()
    padded = np.pad(values.astype(np.float64), half, mode="edge")
    stacked = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return reduce(stacked, axis=1)[:T]


def csl(trajectory: Trajectory, labels=None) -> np.ndarray:
    """Cumulative Sample Loss: mean cross-entropy over checkpoints, (T,)."""
    return trajectory.loss.mean(axis=1)


def last_loss(trajectory: Trajectory, labels=None) -> np.ndarray:
    return trajectory.loss[:, -1]


def csl_smooth(trajectory: Trajectory, labels=None, window: int = WINDOW) -> np.ndarray:
    return _window(csl(trajectory), window, np.mean)


def csl_window_max(trajectory: Trajectory, labels=None, window: int = WINDOW) -> np.ndarray:
    return _window(csl(trajectory), window, np.max)


def negative_aum(trajectory: Trajectory, labels=None) -> np.ndarray:
    return -trajectory.margin.mean(axis=1)


def cartography_confidence(trajectory: Trajectory, labels=None) -> np.ndarray:
    return 1.0 - np.exp(-trajectory.loss).mean(axis=1)


def cartography_variability(trajectory: Trajectory, labels=None) -> np.ndarray:
    return -np.exp(-trajectory.loss).std(axis=1)


def forgetting_events(trajectory: Trajectory, labels=None) -> np.ndarray:
    correct = trajectory.margin > 0  # (T, E): given label is the argmax
    flips = (correct[:, :-1] & ~correct[:, 1:]).sum(axis=1).astype(np.float64)
    never = ~correct.any(axis=1)
    flips[never] = correct.shape[1] + 1
    return flips


def self_confidence(trajectory: Trajectory, labels) -> np.ndarray:
    """1 - cleanlab's per-frame self-confidence (frames as tokens)."""
    token_scores = cleanlab_video_scores(trajectory, labels)[1]
    return 1.0 - token_scores


def cleanlab_video_scores(trajectory: Trajectory, labels):
    """cleanlab's token-classification scores with the video as the sentence:
    ``(softmin-pooled video quality, per-frame self-confidence (T,))``."""
    from cleanlab.token_classification.rank import get_label_quality_scores  # lazy: only the softmin peer score uses it

    probs = np.clip(trajectory.final_probs.astype(np.float64), 1e-12, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    video, frames = get_label_quality_scores(
        [np.asarray(labels, dtype=int)],
        [probs],
        token_score_method="self_confidence",
        sentence_score_method="softmin",
    )
    return float(video[0]), np.asarray(frames[0], dtype=np.float64)


SCORES = {
    "csl": csl,
    "last_loss": last_loss,
    "csl_smooth": csl_smooth,
    "csl_window_max": csl_window_max,
    "aum": negative_aum,
    "cartography_confidence": cartography_confidence,
    "cartography_variability": cartography_variability,
    "forgetting": forgetting_events,
    "self_confidence": self_confidence,
}
ALL_PEERS = [name for name in SCORES if name != "csl"]


def compute_scores(trajectory: Trajectory, names, labels=None) -> dict:
    """``{name: (T,) scores}`` for each name in ``names`` (see :data:`SCORES`).

    Args:
        trajectory: one video's replay
        names: score names
        labels: (T,) given class indices (``self_confidence`` needs them)
    """
    unknown = sorted(set(names) - set(SCORES))
    if unknown:
        raise ValueError(f"unknown score(s) {unknown}; choose from {sorted(SCORES)}")
    if len(trajectory.loss) == 0:  # a video with no labelled frame (sparse labels)
        return {name: np.zeros(0, dtype=np.float32) for name in names}
    return {name: np.asarray(SCORES[name](trajectory, labels), dtype=np.float32) for name in names}

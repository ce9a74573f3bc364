"""The procedure a dataset's labels follow, learned from the labels
themselves, and the most likely label sequence of a video under it.

A :class:`ProcedureCounts` holds what the given labels of a set of videos
say about the procedure: how videos start and end, which phase follows
which, and how long each phase lasts (in scored frames). Nothing assumes a
fixed chain: phases that are skipped, repeated or come in any order are just
counts, and with actions in no fixed order the transitions are flat and the
model only smooths. Each video is decoded with the counts of the *other*
videos (:meth:`ProcedureCounts.without`), so its own errors do not teach
the model that they are normal.

:func:`decode` runs a hidden Markov model over the phases: its emission is
the models' out-of-fold class probability of each frame divided by the
class's frame share (a hybrid HMM), its transitions the procedure's, with a
phase's chance to continue set by its mean duration. It returns the Viterbi
sequence and, by forward-backward, each frame's posterior over the classes.
"""

from dataclasses import dataclass

import numpy as np

EPS = 1e-4
"""Floor of a class probability in the emission (a model that is sure is
sometimes wrong)."""

SMOOTHING = 0.5
"""Pseudo-count added to every start, end and transition count."""

SHARE_FLOOR = 0.1
"""Least frame share of a class in the emission, as a fraction of ``1 / C``."""


def label_runs(labels) -> list:
    """``[[class, length], ...]``: the run-length code of a label sequence."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    bounds = np.concatenate([[0], change, [len(labels)]])
    return [[int(labels[a]), int(b - a)] for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass
class ProcedureCounts:
    """Counts over the given labels of some videos (see the module docstring)."""

    start: np.ndarray  # (C,) videos that start with each class
    end: np.ndarray  # (C,) videos that end with each class
    transitions: np.ndarray  # (C, C) changes of label from row to column
    frames: np.ndarray  # (C,) frames of each class
    runs: np.ndarray  # (C,) runs of each class

    @classmethod
    def empty(cls, num_classes: int) -> "ProcedureCounts":
        c = num_classes
        return cls(np.zeros(c), np.zeros(c), np.zeros((c, c)), np.zeros(c), np.zeros(c))

    @classmethod
    def of_runs(cls, runs_per_video, num_classes: int) -> "ProcedureCounts":
        """Counts of videos given as :func:`label_runs` codes."""
        counts = cls.empty(num_classes)
        for runs in runs_per_video:
            counts.add(runs)
        return counts

    def add(self, runs, sign: float = 1.0) -> None:
        if not runs:
            return
        self.start[runs[0][0]] += sign
        self.end[runs[-1][0]] += sign
        for (a, _), (b, _) in zip(runs[:-1], runs[1:]):
            self.transitions[a, b] += sign
        for c, n in runs:
            self.frames[c] += sign * n
            self.runs[c] += sign

    def without(self, runs) -> "ProcedureCounts":
        """These counts less one video's (leave-one-out)."""
        out = ProcedureCounts(
            self.start.copy(), self.end.copy(), self.transitions.copy(), self.frames.copy(), self.runs.copy()
        )
        out.add(runs, -1.0)
        for array in (out.start, out.end, out.transitions, out.frames, out.runs):
            np.clip(array, 0, None, out=array)
        return out

    def model(self) -> "ProcedureModel":
        """The HMM these counts give (smoothed; every transition stays possible)."""
        c = len(self.start)
        all_frames, all_runs = self.frames.sum(), self.runs.sum()
        overall = all_frames / all_runs if all_runs > 0 else 10.0
        duration = (self.frames + overall) / (self.runs + 1.0)  # shrunk toward the overall mean run length
        stay = 1.0 - 1.0 / np.maximum(duration, 1.5)
        moves = self.transitions.copy()
        np.fill_diagonal(moves, 0.0)
        moves = moves + SMOOTHING * (1 - np.eye(c))
        moves = moves / moves.sum(1, keepdims=True) * (1 - stay)[:, None]
        trans = moves + np.diag(stay)
        # a class rare in the other videos' labels (or absent: seen in this video only) is not made
        # likely by dividing by its tiny share: shares are floored at SHARE_FLOOR / C
        share = np.maximum((self.frames + 1.0) / (all_frames + c), SHARE_FLOOR / c)
        return ProcedureModel(
            log_start=np.log((self.start + SMOOTHING) / (self.start.sum() + SMOOTHING * c)),
            log_end=np.log((self.end + SMOOTHING) / (self.end.sum() + SMOOTHING * c)),
            log_trans=np.log(trans),
            log_share=np.log(share),
        )


@dataclass
class ProcedureModel:
    log_start: np.ndarray  # (C,)
    log_end: np.ndarray  # (C,)
    log_trans: np.ndarray  # (C, C)
    log_share: np.ndarray  # (C,) log frame share of each class

    def emission(self, probs: np.ndarray) -> np.ndarray:
        """(T, C) log emission of the models' class probabilities."""
        return np.log(np.clip(probs, EPS, 1.0)) - self.log_share

    def path_score(self, emission: np.ndarray, labels: np.ndarray, lo: int, hi: int) -> float:
        """Log score of ``labels[lo:hi]`` under the model: emissions, the
        transitions inside and into it, and start / end where it touches them."""
        t = np.arange(lo, hi)
        score = float(emission[t, labels[lo:hi]].sum())
        score += float(self.log_trans[labels[lo : hi - 1], labels[lo + 1 : hi]].sum())
        if lo == 0:
            score += float(self.log_start[labels[0]])
        if hi == len(labels):
            score += float(self.log_end[labels[-1]])
        return score


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def decode(probs: np.ndarray, model: ProcedureModel) -> tuple:
    """``(decoded, posterior, emission)`` of one video: the Viterbi class
    sequence (T,), the forward-backward posterior of every class on every
    frame (T, C), and the log emission (T, C) both used."""
    emission = model.emission(np.asarray(probs, dtype=np.float64))
    n, c = emission.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, c)), emission
    A = model.log_trans
    # Viterbi
    delta = model.log_start + emission[0]
    back = np.zeros((n, c), dtype=np.int64)
    for t in range(1, n):
        step = delta[:, None] + A
        back[t] = step.argmax(0)
        delta = step[back[t], np.arange(c)] + emission[t]
    delta = delta + model.log_end
    decoded = np.zeros(n, dtype=np.int64)
    decoded[-1] = int(delta.argmax())
    for t in range(n - 1, 0, -1):
        decoded[t - 1] = back[t, decoded[t]]
    # forward-backward
    alpha = np.zeros((n, c))
    alpha[0] = model.log_start + emission[0]
    for t in range(1, n):
        alpha[t] = _logsumexp(alpha[t - 1][:, None] + A, 0) + emission[t]
    beta = np.zeros((n, c))
    beta[-1] = model.log_end
    for t in range(n - 2, -1, -1):
        beta[t] = _logsumexp(A + (emission[t + 1] + beta[t + 1])[None, :], 1)
    joint = alpha + beta
    posterior = np.exp(joint - _logsumexp(joint, 1)[:, None])
    return decoded, posterior, emission

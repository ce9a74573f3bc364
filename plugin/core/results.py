"""Results of an audit: per-video scores, predictions and suspect segments."""

from dataclasses import dataclass

import numpy as np

from .replay import Trajectory, load_trajectory


@dataclass
class Predictions:
    """The last checkpoint's class and its probability on every sampled frame
    of a video (kept for videos with sparse labels)."""

    frame_numbers: np.ndarray
    labels: np.ndarray  # class indices
    confidence: np.ndarray
    labelled: np.ndarray  # bool: the frame carries a given label


@dataclass
class VideoScores:
    """One video's results, on its scored (sampled) frames: with sparse
    labels, those that carry a label; ``predictions`` covers every sampled
    frame.

    The loss trajectory (frames x checkpoints) is read from the run directory
    when asked for, so results over many videos hold only per-frame scores.
    """

    sample_id: str
    frame_numbers: np.ndarray
    labels: np.ndarray
    scores: dict
    segments: list
    trajectory_path: str | None = None
    _trajectory: Trajectory | None = None
    error_kind: np.ndarray | None = None
    predictions: Predictions | None = None
    decoded: np.ndarray | None = None  # the decoder's class of every scored frame
    wrong_prob: np.ndarray | None = None  # the posterior probability that a frame's given label is wrong
    decoded_confidence: np.ndarray | None = None  # the posterior probability of the decoded class

    @property
    def trajectory(self) -> Trajectory:
        if self._trajectory is not None:
            return self._trajectory
        return load_trajectory(self.trajectory_path)


class CSLResults:
    """Results of a CSL run.

    Attributes:
        run_key: the run key (= ``csl_field``)
        run_dir: the folder of the run's current version (checkpoints,
            trajectories, manifest)
        classes: the class list, in the order of the models' outputs
        threshold: the flagging threshold on CSL
        videos: ``{sample_id: VideoScores}``
        warnings: what the run could not score reliably (e.g. classes seen in
            too few videos to be scored out of fold)
        simulation: with ``simulation=True``, the simulation's report: the
            chosen threshold, ``estimated_precision`` of the flags, the
            estimated number of errors, and per threshold tried the recall of
            injected errors and the number of suspect segments; else None
        second_round: whether a second round of training ran and why
            (:mod:`~fiftyone_csl.plugin.core.rounds`: ``ran``, ``reason``,
            ``fit``, ``masked_frames``), or None
    """

    def __init__(self, run_key, run_dir, classes, threshold, videos, warnings=()):
        self.run_key = run_key
        self.run_dir = run_dir
        self.classes = classes
        self.threshold = threshold
        self.videos = videos
        self.warnings = list(warnings)
        self.simulation = None
        self.second_round = None

    def __repr__(self):
        frames = sum(len(v.frame_numbers) for v in self.videos.values())
        return (
            f"<CSLResults '{self.run_key}': {len(self.videos)} videos, {frames} scored "
            f"frames, {len(self.segments())} suspect segments, threshold={self.threshold:.3f}>"
        )

    def segments(self) -> list:
        """All suspect segments, strongest first (the decoder's evidence,
        then mean CSL)."""
        out = [s for v in self.videos.values() for s in v.segments]
        return sorted(out, key=lambda s: (-(s.evidence if s.evidence is not None else 0.0), -s.mean_score))

    def top_segments(self, k: int = 10) -> list:
        return self.segments()[:k]

    def frame_scores(self, name: str = "csl"):
        """``(sample_ids, frame_numbers, scores)``, flat over every scored frame."""
        ids, numbers, values = [], [], []
        for v in self.videos.values():
            ids.extend([v.sample_id] * len(v.frame_numbers))
            numbers.append(v.frame_numbers)
            values.append(v.scores[name])
        return np.asarray(ids), np.concatenate(numbers), np.concatenate(values)

    def loss_trajectory(self, sample_id: str) -> np.ndarray:
        """(T, E) loss of every scored frame of a video under every checkpoint."""
        return self.videos[sample_id].trajectory.loss

"""The audit over plain sequences, with no FiftyOne: folds, checkpointed
training, replay, scores and suspect segments.

:func:`compute_csl_arrays` is the public face; the FiftyOne steps
(:mod:`fiftyone_csl.plugin.steps`) run the same functions on sequences read
from a dataset.
"""

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from . import flags as fcflags
from . import scores as fcscores
from . import sequences as fcseq
from . import train as fctrain
from .options import check_choice, check_simulation, check_threshold, make_train_config
from .record import Manifest
from .replay import PRECISIONS, Replayer, Trajectory, autocast_context, load_trajectory
from .utils import CSLError, StagedProgress, atomic_save_npz, resolve_device

logger = logging.getLogger(__name__)

UNSEEN_CLASS = "unseen_class"
ERROR_PROB = "error_prob"
"""The score the simulation's detector writes (``frames.<key>_error_prob``)."""


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
    """

    def __init__(self, run_key, run_dir, classes, threshold, videos, warnings=()):
        self.run_key = run_key
        self.run_dir = run_dir
        self.classes = classes
        self.threshold = threshold
        self.videos = videos
        self.warnings = list(warnings)
        self.simulation = None

    def __repr__(self):
        frames = sum(len(v.frame_numbers) for v in self.videos.values())
        return (
            f"<CSLResults '{self.run_key}': {len(self.videos)} videos, {frames} scored "
            f"frames, {len(self.segments())} suspect segments, threshold={self.threshold:.3f}>"
        )

    def segments(self) -> list:
        """All suspect segments, highest mean CSL first."""
        out = [s for v in self.videos.values() for s in v.segments]
        return sorted(out, key=lambda s: -s.mean_score)

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


def check_peer_scores(peer_scores, fiftyone: bool = True) -> list:
    """The peer score names without ``"csl"``; unknown names raise."""
    if isinstance(peer_scores, str) or not isinstance(peer_scores, (list, tuple)):
        raise CSLError(f"peer_scores must be a list of names; got {peer_scores!r}")
    known = set(fcscores.SCORES) | ({"mistakenness"} if fiftyone else set())
    unknown = sorted(set(peer_scores) - known - {"csl"})
    if unknown:
        extra = "" if fiftyone else " ('mistakenness' needs a FiftyOne collection)"
        raise CSLError(f"unknown peer score(s) {unknown}; choose from {sorted(known)}{extra}")
    return [p for p in dict.fromkeys(peer_scores) if p != "csl"]


def check_folds(sequences: list, fold_members: list, config, classes: list) -> tuple:
    """Checks that every fold can train, before any training.

    Raises :class:`CSLError` if a fold's training part has fewer than 2
    frames or 2 classes. Returns ``(fold_classes, warnings)``: the class
    indices each fold trains on, and a warning for every class some fold
    never sees (its frames in that fold's videos cannot be scored out of
    fold and are marked ``unseen_class`` instead of flagged as errors).
    """
    by_id = {s.sample_id: s for s in sequences}
    fold_classes, warnings = [], []
    for k in range(len(fold_members)):
        train_ids = fctrain.training_ids(fold_members, k, config.cross_fit)
        frames = sum(len(fcseq.given_labels(by_id[i])) for i in train_ids)
        seen = sorted({int(c) for i in train_ids for c in np.unique(fcseq.given_labels(by_id[i]))})
        if frames < 2 or len(seen) < 2:
            raise CSLError(
                f"fold {k} would train on {frames} frame(s) of {len(seen)} class(es) (videos {train_ids}); "
                "each fold needs at least 2 frames of 2 classes: use fewer folds, more videos, or cross_fit=False"
            )
        fold_classes.append(seen)
        scored = {int(c) for i in fold_members[k] for c in np.unique(fcseq.given_labels(by_id[i]))}
        for c in sorted(scored - set(seen)):
            warnings.append(
                f"class '{classes[c]}' appears only in videos of fold {k}: its frames there cannot be scored "
                "out of fold and are marked 'unseen_class' (label more videos with it, or use cross_fit=False)"
            )
    for w in warnings:
        logger.warning(w)
    return fold_classes, warnings


def train_into(run_dir, manifest: Manifest, sequences, config, progress, device, save_progress=False) -> Manifest:
    """Trains every fold of ``manifest`` into ``run_dir``, resuming the
    checkpoints it already lists; with ``save_progress`` the manifest is
    saved after every epoch, so a killed call can resume."""
    by_id = {s.sample_id: s for s in sequences}
    on_epoch = (lambda: manifest.save(run_dir)) if save_progress else None
    with progress.stage("train", config.epochs * len(manifest.folds), "epochs") as stage:
        for k in range(len(manifest.folds)):
            train_set = [by_id[i] for i in fctrain.training_ids(manifest.folds, k, config.cross_fit)]
            fctrain.train_fold(
                train_set, manifest.in_dim, len(manifest.classes), config, run_dir, k, manifest, device, stage, on_epoch
            )
    manifest.checkpoint_bytes_per_epoch = manifest.checkpoint_bytes(run_dir)
    return manifest


def replay_and_score(run_dir, manifest: Manifest, sequences, device, precision, progress, threshold, peer_scores):
    """Replays the videos one at a time and scores each as it comes.

    Each video in a fold is replayed by that fold's checkpoints (all of them
    in one stacked pass); a video in no fold (new since training) by every
    fold's, averaged. Each trajectory goes to ``run_dir`` as soon as it
    exists and is recorded in ``manifest``; the returned results read
    trajectories back from disk, so memory holds one video's at a time.

    Returns ``{sample_id: VideoScores}`` in the order of ``sequences``.
    """
    route = manifest.fold_router()
    # one fold after another, then new videos: each fold's stack loads once
    ordered = sorted(sequences, key=lambda s: (len(route(s.sample_id)), route(s.sample_id)))
    replayer = Replayer(run_dir, manifest, device, precision)
    os.makedirs(os.path.join(run_dir, "trajectories"), exist_ok=True)
    videos = {}
    with progress.stage("replay", sum(len(s) for s in sequences), "frames") as stage:
        for s in ordered:
            folds = route(s.sample_id)
            replayer.keep_only(folds)
            trajectory = replayer.trajectory(s, folds)
            path = save_trajectory(run_dir, manifest, s, trajectory)
            videos[s.sample_id] = score_video(
                s.sample_id, s.frame_numbers, s.labels, trajectory, manifest, folds, threshold, peer_scores, path,
                s.labelled,
            )  # fmt: skip
            stage.update(len(s))
    return {s.sample_id: videos[s.sample_id] for s in sequences}


def save_trajectory(run_dir, manifest: Manifest, sequence, trajectory) -> str:
    relpath = f"trajectories/{sequence.sample_id}.npz"
    path = os.path.join(run_dir, relpath)
    atomic_save_npz(
        path,
        frame_numbers=sequence.frame_numbers,
        labels=sequence.labels,
        loss=trajectory.loss,
        margin=trajectory.margin,
        final_probs=trajectory.final_probs,
        mean_probs=trajectory.mean_probs,
        **({} if sequence.labelled is None else {"labelled": np.asarray(sequence.labelled, dtype=bool)}),
    )
    manifest.record_file(run_dir, relpath)
    manifest.trajectories[sequence.sample_id] = relpath
    return path


def score_video(
    sample_id, frame_numbers, labels, trajectory, manifest, folds, threshold, peer_scores, path=None, labelled=None
):  # fmt: skip
    """Scores and suspect segments of one video; keeps the trajectory in
    memory only when it has no file ``path``.

    With ``labelled`` (sparse labels: True where a frame carries a label),
    only those frames are scored and flagged (a loss against no given label
    says nothing), and ``predictions`` keeps the class of every frame.

    A segment whose given label the scoring checkpoints (those of ``folds``)
    never trained on is typed ``unseen_class``: its high loss says nothing
    about the label."""
    predictions = None
    if labelled is not None:
        labelled = np.asarray(labelled, dtype=bool)
        probs = trajectory.final_probs
        predictions = Predictions(frame_numbers, probs.argmax(1), probs.max(1).astype(np.float32), labelled)
        index = np.flatnonzero(labelled)
        frame_numbers, labels, trajectory = frame_numbers[index], labels[index], trajectory.take(index)
    names = ["csl", *[p for p in peer_scores if p in fcscores.SCORES]]
    scores = fcscores.compute_scores(trajectory, names, labels)
    bad = [n for n, v in scores.items() if not np.isfinite(v).all()]
    if bad:
        raise CSLError(f"scores {bad} of {sample_id} are not finite; nothing was written")
    segments = flag_video(sample_id, frame_numbers, labels, scores["csl"], trajectory.mean_probs, manifest, folds,
                          threshold)  # fmt: skip
    return VideoScores(
        sample_id, frame_numbers, labels, scores, segments, path, None if path else trajectory, None, predictions
    )


def flag_video(sample_id, frame_numbers, labels, csl, mean_probs, manifest, folds, threshold) -> list:
    """Suspect segments of one video at ``threshold``; a segment whose given
    label the scoring checkpoints (those of ``folds``) never trained on is
    typed ``unseen_class``."""
    segments = fcflags.suspect_segments(sample_id, frame_numbers, labels, csl, mean_probs, manifest.classes, threshold)
    unseen = {manifest.classes[c] for c in manifest.unseen_classes(folds)}
    for segment in segments:
        if segment.given_label in unseen:
            segment.error_type = UNSEEN_CLASS
    return segments


def score_file(sample_id, path, manifest: Manifest, folds, threshold, peer_scores) -> VideoScores:
    """:func:`score_video` of a (verified) trajectory file."""
    with np.load(path) as data:
        frame_numbers, labels = data["frame_numbers"], data["labels"]
        labelled = data["labelled"] if "labelled" in data.files else None
    trajectory = load_trajectory(path, labelled_only=False)
    return score_video(
        sample_id, frame_numbers, labels, trajectory, manifest, folds, threshold, peer_scores, path, labelled
    )


def score_from_files(run_dir, manifest: Manifest, sample_ids, threshold, peer_scores) -> dict:
    """``{sample_id: VideoScores}`` of ``sample_ids`` from a run version's
    trajectory files (each verified against the manifest)."""
    route = manifest.fold_router()
    videos = {}
    for sid in sample_ids:
        relpath = manifest.trajectories.get(sid)
        if relpath is None:
            continue
        path = manifest.verified_path(run_dir, relpath)
        videos[sid] = score_file(sid, path, manifest, route(sid), threshold, peer_scores)
        learned = load_error_prob(run_dir, manifest, sid)
        if learned is not None:
            videos[sid].scores[ERROR_PROB], videos[sid].error_kind = learned
    return videos


def simulate_and_flag(run_dir, manifest: Manifest, sequences, config, device, precision, progress, videos,
                      threshold, target_precision) -> tuple:  # fmt: skip
    """Runs the simulation beside a run (:mod:`~fiftyone_csl.plugin.simulation`)
    and flags the run again with its threshold (``threshold`` None: the one
    aimed at ``target_precision``). Returns ``(videos, simulation)``; each
    video's scores gain ``"error_prob"``, its segments follow the threshold."""
    from .simulation import run_simulation

    sim = run_simulation(
        os.path.join(run_dir, "simulation"), manifest, sequences, config, device, precision, progress, videos,
        threshold, target_precision,
    )  # fmt: skip
    route = manifest.fold_router()
    for sid, v in videos.items():  # the scores stand; only the flags follow the new threshold
        v.segments = flag_video(sid, v.frame_numbers, v.labels, v.scores["csl"], v.trajectory.mean_probs, manifest,
                                route(sid), sim.report["threshold"])  # fmt: skip
        v.scores[ERROR_PROB], v.error_kind = sim.error_prob[sid], sim.error_kind[sid]
    return videos, sim


def save_error_probs(run_dir, manifest: Manifest, videos: dict, sim) -> None:
    """Stores each video's error probability and kind beside its trajectory
    (``error_probs/<sample_id>.npz``, listed and hashed in the manifest) and
    the simulation's report in the manifest."""
    from .simulation import KINDS

    os.makedirs(os.path.join(run_dir, "error_probs"), exist_ok=True)
    for sid, prob in sim.error_prob.items():
        relpath = f"error_probs/{sid}.npz"
        kind = np.asarray([KINDS.index(k) if k in KINDS else -1 for k in sim.error_kind[sid]], dtype=np.int8)
        atomic_save_npz(os.path.join(run_dir, relpath), error_prob=prob, error_kind=kind)
        manifest.record_file(run_dir, relpath)
        manifest.error_probs[sid] = relpath
    manifest.simulation = sim.report


def load_error_prob(run_dir, manifest: Manifest, sample_id):
    """``(error_prob, error_kind)`` of a video from a run version, or None."""
    from .simulation import KINDS

    relpath = manifest.error_probs.get(sample_id)
    if relpath is None:
        return None
    with np.load(manifest.verified_path(run_dir, relpath)) as data:
        kinds = np.array([KINDS[k] if k >= 0 else "" for k in data["error_kind"]], dtype=object)
        return data["error_prob"], kinds


def compute_csl_arrays(
    features: list,
    labels: list,
    classes: list | None = None,
    names: list | None = None,
    *,
    threshold="auto",
    peer_scores: list | tuple = (),
    device: str = "auto",
    precision: str = "auto",
    simulation: bool = False,
    target_precision: float = 0.85,
    run_dir: str | None = None,
    progress=None,
    **train_kwargs,
) -> CSLResults:
    """CSL on plain sequences, beneath the FiftyOne layer.

    The same training, replay, scores and flags as
    :func:`fiftyone_csl.compute_csl`, for non-video data or precomputed
    features.

    Args:
        features: one (T_i, D) float array per sequence
        labels: one (T_i,) array of class indices per sequence (-1: unlabelled)
        classes (None): class names; default ``["0", "1", ...]``
        names (None): sequence names (the keys of ``results.videos``)
        run_dir (None): a new or empty folder for the checkpoints; default a
            temporary folder that is removed afterwards
        simulation (False), target_precision (0.85): as in
            :func:`fiftyone_csl.compute_csl`
        others: as in :func:`fiftyone_csl.compute_csl` (``model``, ``epochs``,
            ``folds``, ``cross_fit``, ``seed`` and the other training settings)

    Returns:
        a :class:`CSLResults`
    """
    peer_scores = check_peer_scores(peer_scores, fiftyone=False)
    config = make_train_config("compute_csl_arrays", **train_kwargs)
    check_choice("precision", precision, PRECISIONS)
    check_simulation(simulation, target_precision)
    threshold = check_threshold(threshold)
    sequences = fcseq.sequences_from_arrays(features, labels, names)
    if not sequences:
        raise CSLError("no sequences given")
    if len({s.sample_id for s in sequences}) != len(sequences):
        raise CSLError("names must be unique")
    dims = {s.features.shape[1] for s in sequences}
    if len(dims) != 1:
        raise CSLError(f"features of inconsistent dimension: {sorted(dims)}")
    for s in sequences:
        if not np.isfinite(s.features).all():
            raise CSLError(f"features of {s.sample_id} contain NaN or infinite values")
    num_classes = int(max(int(s.labels.max()) for s in sequences)) + 1
    classes = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
    if len(classes) < max(num_classes, 2):
        raise CSLError(f"need at least 2 classes and one name per class index; got {classes}")
    if run_dir is not None and os.path.isdir(run_dir) and os.listdir(run_dir):
        raise CSLError(f"run_dir {run_dir} is not empty; give a new or empty folder")
    fold_members = fctrain.assign_folds([s.sample_id for s in sequences], config.folds, config.seed, config.cross_fit)
    fold_classes, warnings = check_folds(sequences, fold_members, config, classes)
    threshold_value = fcflags.resolve_threshold(threshold, len(classes))
    torch_device = resolve_device(device)
    autocast_context(torch_device, precision)  # an impossible precision fails before any work
    manifest = Manifest(None, None, None, classes, dims.pop(), {}, config.to_dict(), fold_members, fold_classes)
    weights = {"train": 4, "replay": 1.5}
    if simulation:
        weights.update({"simulation train": 4, "simulation replay": 1.5})
    progress = StagedProgress(progress, weights)
    owned = run_dir is None
    run_dir = run_dir or tempfile.mkdtemp(prefix="fcsl-arrays-")
    os.makedirs(run_dir, exist_ok=True)
    try:
        train_into(run_dir, manifest, sequences, config, progress, torch_device)
        videos = replay_and_score(
            run_dir, manifest, sequences, torch_device, precision, progress, threshold_value, peer_scores
        )
        if simulation:
            videos, sim = simulate_and_flag(
                run_dir, manifest, sequences, config, torch_device, precision, progress, videos,
                None if threshold == "auto" else threshold_value, target_precision,
            )  # fmt: skip
            threshold_value, manifest.simulation = sim.report["threshold"], sim.report
        if owned:  # the trajectories go with the folder: keep them in memory
            for v in videos.values():
                v._trajectory, v.trajectory_path = v.trajectory, None
        else:
            manifest.save(run_dir)
    finally:
        if owned:
            shutil.rmtree(run_dir, ignore_errors=True)
    results = CSLResults("arrays", None if owned else run_dir, classes, threshold_value, videos, warnings)
    results.simulation = manifest.simulation
    return results

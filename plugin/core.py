"""The audit pipeline: labels -> features -> checkpoints -> replay -> scores
-> flags -> FiftyOne fields, views and a registered run.

The steps are public on their own (:func:`compute_features`,
:func:`train_checkpoints`, :func:`replay_checkpoints`, :func:`flag_errors`)
and together (:func:`compute_csl`). Everything that can be wrong with the
input is checked before the first write, and checkpoints are trained in a
staging directory, so a failed call leaves the dataset and any earlier run as
they were.
"""

import os
import shutil
import time
from dataclasses import dataclass

import numpy as np

from . import features as fcf
from . import fields as fcfields
from . import flags as fcflags
from . import peers as fcpeers
from . import runs as fcruns
from . import scores as fcscores
from . import sequences as fcseq
from . import train as fctrain
from . import views as fcviews
from .replay import Replayer, Trajectory, autocast_context, load_trajectory
from .utils import CSLError, StagedProgress, atomic_save_npz, resolve_device

METHOD = "fiftyone-csl"
PROGRESS_WEIGHTS = {"features": 4, "train": 4, "replay": 1.5, "write": 0.5}


@dataclass
class VideoScores:
    """One video's results, on its scored (sampled) frames.

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

    @property
    def trajectory(self) -> Trajectory:
        if self._trajectory is not None:
            return self._trajectory
        return load_trajectory(self.trajectory_path)


class CSLResults:
    """Results of a CSL run.

    Attributes:
        run_key: the run key (= ``csl_field``)
        run_dir: the directory of checkpoints, trajectories and manifest
        classes: the class list, in the order of the models' outputs
        threshold: the flagging threshold on CSL
        videos: ``{sample_id: VideoScores}``
    """

    def __init__(self, run_key, run_dir, classes, threshold, videos):
        self.run_key = run_key
        self.run_dir = run_dir
        self.classes = classes
        self.threshold = threshold
        self.videos = videos

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


# --- checks -----------------------------------------------------------------


def _check_options(
    stride=1, epochs=1, peer_scores=(), backbone=None, embeddings_field=None, model=None, precision="auto"
):
    from ..models import HEADS
    from .replay import PRECISIONS

    if precision not in PRECISIONS:
        raise CSLError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    known = set(fcscores.SCORES) | {"mistakenness"}
    unknown = sorted(set(peer_scores) - known)
    if unknown:
        raise CSLError(f"unknown peer score(s) {unknown}; choose from {sorted(known)}")
    if int(stride) < 1:
        raise CSLError(f"stride must be >= 1; got {stride}")
    if int(epochs) < 1:
        raise CSLError(f"epochs must be >= 1; got {epochs}")
    if embeddings_field is None and backbone is not None and backbone not in fcf.BACKBONES:
        raise CSLError(f"unknown backbone '{backbone}'; choose one of {sorted(fcf.BACKBONES)}")
    if model is not None and model not in HEADS:
        raise CSLError(f"unknown model '{model}'; choose one of {sorted(HEADS)}")


def _validate_key(dataset, run_key, peer_scores, overwrite):
    if not isinstance(run_key, str) or not run_key.isidentifier():
        raise CSLError(f"csl_field must be a valid identifier (letters, digits, _); got {run_key!r}")
    if dataset.has_run(run_key):
        info = dataset.get_run_info(run_key)
        if getattr(info.config, "method", None) != METHOD:
            raise CSLError(f"run key '{run_key}' belongs to another kind of run; choose another csl_field")
        if not overwrite:
            raise CSLError(
                f"a CSL run '{run_key}' already exists; pass overwrite=True to replace it or choose another csl_field"
            )
        return
    clashes = fcfields.existing_outputs(dataset, run_key, peer_scores)
    clashes += [f"saved view {v}" for v in fcviews.existing_views(dataset, run_key)]
    if clashes and not overwrite:
        raise CSLError(
            f"csl_field '{run_key}' would write into existing {clashes}; choose another "
            "csl_field or pass overwrite=True to replace them"
        )


# --- preparation: labels and features ----------------------------------------


@dataclass
class _Prepared:
    classes: list
    full_sequences: list  # every labelled frame
    sequences: list  # the scored frames (stride grid), features attached later
    in_dim: int
    feature_spec: dict
    feature_stats: dict | None = None


def _feature_spec(embeddings_field, backbone, backbone_weights, stride):
    return {
        "embeddings_field": embeddings_field,
        "backbone": None if embeddings_field else backbone,
        "backbone_weights": None if embeddings_field else backbone_weights,
        "stride": int(stride),
    }


def _prepare(samples, label_field, classes, feature_spec) -> _Prepared:
    raw = fcseq.read_raw_labels(samples, label_field)
    classes = fcseq.resolve_classes(raw, classes)
    full = fcseq.build_sequences(raw, classes)
    sequences = [fcseq.subsample(s, feature_spec["stride"]) for s in full]
    if feature_spec["embeddings_field"] is not None:
        in_dim = fcf.read_embeddings(samples, feature_spec["embeddings_field"], sequences)
    else:
        fcf.check_video_files(sequences)
        in_dim = fcf.BACKBONES[feature_spec["backbone"]].dim
    return _Prepared(classes, full, sequences, in_dim, feature_spec)


def _attach_features(prepared, device, cache_dir, progress):
    spec = prepared.feature_spec
    if spec["embeddings_field"] is not None:
        with progress.stage("features", 1, "fields"):
            return
    stats = fcf.FeatureStats()
    with progress.stage("features", len(prepared.sequences), "videos") as stage:
        fcf.attach_backbone_features(
            prepared.sequences,
            spec["backbone"],
            spec["stride"],
            device,
            cache_dir or fcruns.default_cache_dir(),
            spec["backbone_weights"],
            progress_stage=stage,
            stats=stats,
        )
    prepared.feature_stats = stats.as_dict()


# --- training and replay into a run directory ---------------------------------


def _train_into(run_dir, prepared, config, fold_members, label_field, device, progress) -> dict:
    manifest = {
        "method": METHOD,
        "config": config.to_dict(),
        "classes": prepared.classes,
        "in_dim": prepared.in_dim,
        "label_field": label_field,
        "features": prepared.feature_spec,
        "folds": fold_members,
        "checkpoints": [],
        "trajectories": {},
        "files": {},
    }
    by_id = {s.sample_id: s for s in prepared.sequences}
    with progress.stage("train", config.epochs * len(fold_members), "epochs") as stage:
        for k in range(len(fold_members)):
            train_set = [by_id[i] for i in fctrain.training_ids(fold_members, k, config.cross_fit)]
            manifest["checkpoints"].append(
                fctrain.train_fold(
                    train_set, prepared.in_dim, len(prepared.classes), config, run_dir, k, manifest, device, stage
                )
            )
    manifest["checkpoint_bytes_per_epoch"] = fcruns.checkpoint_bytes_per_epoch(run_dir, manifest)
    manifest["feature_stats"] = prepared.feature_stats
    fcruns.write_manifest(run_dir, manifest)
    return manifest


def _replay_and_score(run_dir, manifest, sequences, device, precision, progress, threshold, peer_scores, save=True):
    """Replays the videos one at a time and scores each as it comes.

    Each video in a fold is replayed by that fold's checkpoints (all of them
    in one stacked pass); a video in no fold (new since training) by every
    fold's, averaged over folds. With ``save``, each trajectory goes to the
    run directory as soon as it exists and is recorded in ``manifest`` (the
    caller writes the manifest); the returned results then read trajectories
    back from disk, so memory holds one video's trajectory at a time.

    Returns ``{sample_id: VideoScores}`` in the order of ``sequences``.
    """
    route = fcruns.fold_router(manifest)
    # one fold after another, then new videos: each fold's stack loads once
    ordered = sorted(sequences, key=lambda s: (len(route(s.sample_id)), route(s.sample_id)))
    replayer = Replayer(run_dir, manifest, device, precision)
    if save:
        os.makedirs(os.path.join(run_dir, "trajectories"), exist_ok=True)
    videos = {}
    with progress.stage("replay", sum(len(s) for s in sequences), "frames") as stage:
        for s in ordered:
            folds = route(s.sample_id)
            replayer.keep_only(folds)
            trajectory = replayer.trajectory(s, folds)
            path = _save_trajectory(run_dir, manifest, s, trajectory) if save else None
            videos[s.sample_id] = _score_video(
                s.sample_id, s.frame_numbers, s.labels, trajectory, manifest["classes"], threshold, peer_scores, path
            )
            stage.update(len(s))
    return {s.sample_id: videos[s.sample_id] for s in sequences}


def _save_trajectory(run_dir, manifest, sequence, trajectory) -> str:
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
    )
    fcruns.record_file(run_dir, manifest, relpath)
    manifest["trajectories"][sequence.sample_id] = relpath
    return path


def _score_video(sample_id, frame_numbers, labels, trajectory, classes, threshold, peer_scores, path=None):
    """Scores and suspect segments of one video; keeps the trajectory in
    memory only when it has no file ``path``."""
    names = ["csl", *[p for p in peer_scores if p in fcscores.SCORES]]
    scores = fcscores.compute_scores(trajectory, names, labels)
    segments = fcflags.suspect_segments(
        sample_id, frame_numbers, labels, scores["csl"], trajectory.mean_probs, classes, threshold
    )
    return VideoScores(sample_id, frame_numbers, labels, scores, segments, path, None if path else trajectory)


# --- write-back -------------------------------------------------------------------


def _add_mistakenness(samples, run_key, label_field, videos, classes, peer_scores):
    """fiftyone-brain writes its own field; its values join the results."""
    if "mistakenness" not in peer_scores:
        return
    values = fcpeers.brain_mistakenness(samples, run_key, label_field, videos, classes)
    for sid, video in videos.items():
        video.scores["mistakenness"] = values[sid]


def _write_scores(dataset, run_key, full_sequences, videos, peer_scores):
    full_by_id = {s.sample_id: s for s in full_sequences}
    for name in ["csl", *[p for p in peer_scores if p != "mistakenness"]]:
        field = fcfields.score_field(run_key, name)
        per_sample = {}
        for sid, v in videos.items():
            labelled = full_by_id[sid].frame_numbers
            per_sample[sid] = (labelled, fcfields.spread_to_labelled_frames(v.frame_numbers, v.scores[name], labelled))
        fcfields.write_frame_scores(dataset, field, per_sample)
        if name == "csl":
            fcfields.write_sample_values(
                dataset, f"{run_key}_max", {sid: float(vals.max()) for sid, (_, vals) in per_sample.items()}
            )
            fcfields.write_sample_values(
                dataset, f"{run_key}_mean", {sid: float(vals.mean()) for sid, (_, vals) in per_sample.items()}
            )
    _write_flags(dataset, run_key, videos)


def _write_flags(dataset, run_key, videos):
    fcfields.write_sample_values(
        dataset,
        f"{run_key}_errors",
        {sid: fcfields.suspect_detections(v.segments) for sid, v in videos.items()},
    )


def _move_trajectory_paths(videos, staging, final_dir):
    for v in videos.values():
        if v.trajectory_path is not None:
            v.trajectory_path = os.path.join(os.path.abspath(final_dir), os.path.relpath(v.trajectory_path, staging))


def _register(samples, run_key, run_dir, label_field, prepared, config, threshold, peer_scores, state):
    run_config = samples.init_run(
        method=METHOD,
        state=state,
        label_field=label_field,
        csl_field=run_key,
        run_dir=os.path.abspath(run_dir),
        classes=prepared.classes,
        threshold=threshold,
        peer_scores=list(peer_scores),
        fields=fcfields.output_fields(run_key, peer_scores),
        views=fcviews.view_names(run_key),
        features=prepared.feature_spec,
        train=config.to_dict(),
    )
    samples.register_run(run_key, run_config, overwrite=True)


def _save_summary(samples, run_key, videos=None, evaluation=None):
    """Stores the run's counts (from ``videos``) and last evaluation; what is
    not given is kept from the stored summary."""
    dataset = samples._dataset
    try:
        previous = dataset.load_run_results(run_key)
    except Exception:  # a new run has no results yet
        previous = None
    if videos is None:
        counts = {k: getattr(previous, k, None) for k in ("num_videos", "num_scored_frames", "num_segments")}
    else:
        counts = dict(
            num_videos=len(videos),
            num_scored_frames=int(sum(len(v.frame_numbers) for v in videos.values())),
            num_segments=int(sum(len(v.segments) for v in videos.values())),
        )
    if evaluation is None:
        evaluation = getattr(previous, "evaluation", None)
    dataset.save_run_results(
        run_key, dataset.init_run_results(run_key, evaluation=evaluation, **counts), overwrite=True
    )


def run_summary(samples, csl_field: str = "csl") -> dict:
    """The stored summary of a run: counts, the last evaluation, checkpoint
    bytes per epoch and the feature extraction rates (frames per second of
    decoding and of the backbone)."""
    config = get_run_config(samples, csl_field)
    results = samples._dataset.load_run_results(csl_field)
    if results is None:
        return {}
    keys = ("num_videos", "num_scored_frames", "num_segments", "evaluation")
    summary = {k: getattr(results, k, None) for k in keys}
    manifest = fcruns.read_manifest(config.run_dir)
    summary["checkpoint_bytes_per_epoch"] = manifest.get("checkpoint_bytes_per_epoch")
    summary["feature_stats"] = manifest.get("feature_stats")
    return summary


def _clear_previous(dataset, run_key, peer_scores, final_dir):
    if dataset.has_run(run_key):
        delete_csl_run(dataset, run_key)
    else:
        fcpeers.delete_brain_outputs(dataset, run_key)
        fcfields.delete_outputs(dataset, fcfields.existing_outputs(dataset, run_key, peer_scores))
        fcviews.delete_views(dataset, run_key)
    if os.path.exists(final_dir):
        fcruns.remove_run_dir(final_dir)
    os.makedirs(os.path.dirname(final_dir), exist_ok=True)


def _staging_dir(final_dir):
    staging = f"{final_dir}.staging-{os.getpid()}"
    if os.path.exists(staging):
        shutil.rmtree(staging)
    os.makedirs(staging)
    return staging


def _begin(
    samples, label_field, csl_field, embeddings_field, classes, backbone, backbone_weights, model, epochs, folds,
    cross_fit, stride, device, seed, overwrite, peer_scores, train_kwargs,
):  # fmt: skip
    """Every check a training call makes before its first write: options,
    run key, labels, features and folds. Returns the config, the device,
    the prepared sequences and the fold membership."""
    _check_options(stride, epochs, peer_scores, backbone, embeddings_field, model)
    _validate_key(samples._dataset, csl_field, peer_scores, overwrite)
    config = fctrain.TrainConfig(
        model=model, epochs=int(epochs), folds=int(folds), cross_fit=bool(cross_fit), seed=int(seed), **train_kwargs
    )
    torch_device = resolve_device(device)
    prepared = _prepare(
        samples, label_field, classes, _feature_spec(embeddings_field, backbone, backbone_weights, stride)
    )
    fold_members = fctrain.assign_folds(
        [s.sample_id for s in prepared.sequences], config.folds, config.seed, config.cross_fit
    )
    return config, torch_device, prepared, fold_members


# --- public steps -------------------------------------------------------------------


def compute_features(
    samples,
    embeddings_field: str,
    backbone: str = "efficientnet-lite0",
    stride: int = 1,
    backbone_weights: str | None = None,
    device: str = "auto",
    cache_dir: str | None = None,
    overwrite: bool = False,
    progress=None,
) -> int:
    """Computes backbone features of every ``stride``-th frame of every video
    and stores them in the frame-level vector field ``embeddings_field``.

    Returns the number of frames written.
    """
    dataset = samples._dataset
    _check_options(stride=stride, backbone=backbone)
    if samples.media_type != "video":
        raise CSLError(f"fiftyone-csl audits videos; this collection's media type is '{samples.media_type}'")
    if not isinstance(embeddings_field, str) or not embeddings_field.isidentifier():
        raise CSLError(f"embeddings_field must be a valid identifier; got {embeddings_field!r}")
    if embeddings_field in (dataset.get_frame_field_schema() or {}) and not overwrite:
        raise CSLError(f"frames.{embeddings_field} exists; pass overwrite=True to replace it")
    ids, paths = samples.values(["id", "filepath"])
    sequences = [
        fcseq.VideoSequence(sid, path, np.zeros(0, np.int64), np.zeros(0, np.int64)) for sid, path in zip(ids, paths)
    ]
    fcf.check_video_files(sequences)
    progress = StagedProgress(progress, {"features": 1})
    decoded = fcf.iter_backbone_features(
        paths, backbone, int(stride), resolve_device(device), cache_dir or fcruns.default_cache_dir(), backbone_weights
    )
    with progress.stage("features", len(sequences), "videos") as stage:
        for s, (numbers, features) in zip(sequences, decoded):
            s.frame_numbers, s.features = numbers, features
            stage.update()
    fcf.write_embeddings(dataset, embeddings_field, sequences)
    return int(sum(len(s.frame_numbers) for s in sequences))


def train_checkpoints(
    samples,
    label_field: str,
    csl_field: str = "csl",
    embeddings_field: str | None = None,
    *,
    classes: list | None = None,
    backbone: str = "efficientnet-lite0",
    backbone_weights: str | None = None,
    model: str = "transformer",
    epochs: int = 30,
    folds: int = 5,
    cross_fit: bool = True,
    stride: int = 1,
    device: str = "auto",
    seed: int = 51,
    run_dir: str | None = None,
    cache_dir: str | None = None,
    overwrite: bool = False,
    progress=None,
    **train_kwargs,
) -> str:
    """Trains the checkpoints of run ``csl_field`` without scoring any frame.

    Registers the run (state ``"trained"``) and returns its run directory;
    :func:`replay_checkpoints` scores frames with it later, on this or another
    view. Arguments as in :func:`compute_csl`.
    """
    dataset = samples._dataset
    config, torch_device, prepared, fold_members = _begin(
        samples, label_field, csl_field, embeddings_field, classes, backbone, backbone_weights, model, epochs,
        folds, cross_fit, stride, device, seed, overwrite, (), train_kwargs,
    )  # fmt: skip
    final_dir = run_dir or fcruns.default_run_dir(dataset.name, csl_field)
    staging = _staging_dir(final_dir)
    progress = StagedProgress(progress, {"features": 4, "train": 4, "write": 0.2})
    try:
        _attach_features(prepared, torch_device, cache_dir, progress)
        _train_into(staging, prepared, config, fold_members, label_field, torch_device, progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    with progress.stage("write", 1, "steps"):
        _clear_previous(dataset, csl_field, (), final_dir)
        os.replace(staging, final_dir)
        _register(samples, csl_field, final_dir, label_field, prepared, config, "auto", (), "trained")
    return os.path.abspath(final_dir)


def replay_checkpoints(
    samples,
    csl_field: str = "csl",
    *,
    label_field: str | None = None,
    threshold=None,
    peer_scores=None,
    device: str = "auto",
    precision: str = "auto",
    cache_dir: str | None = None,
    progress=None,
) -> CSLResults:
    """Replays the checkpoints of run ``csl_field`` over the videos of
    ``samples`` and writes their scores and flags.

    Several calls may run at once on disjoint groups of videos (replay
    shards, possibly on several machines sharing the database and the run
    directory): each merges its trajectories into the run's manifest and
    writes to the dataset under a lock on the run directory.

    Videos the run trained on are scored by the checkpoints of their own fold
    (models that never saw them); other videos by every fold's checkpoints,
    averaged. The features are computed as in training (same backbone and
    stride, or the same embeddings field).

    Args:
        samples: videos to score (a view of the training dataset)
        csl_field: the run key
        label_field (None): the labels to score against; default the run's
        threshold (None): default the run's threshold (``"auto"``: ln C)
        peer_scores (None): default the run's
        device, precision, cache_dir, progress: as in :func:`compute_csl`
    """
    dataset = samples._dataset
    config = get_run_config(dataset, csl_field)
    manifest = fcruns.read_manifest(config.run_dir)
    label_field = label_field or manifest["label_field"]
    peer_scores = list(config.peer_scores if peer_scores is None else [p for p in peer_scores if p != "csl"])
    _check_options(peer_scores=peer_scores, precision=precision)
    threshold_value = fcflags.resolve_threshold(
        config.threshold if threshold is None else threshold, len(manifest["classes"])
    )
    torch_device = resolve_device(device)
    autocast_context(torch_device, precision)
    prepared = _prepare(samples, label_field, manifest["classes"], manifest["features"])
    if prepared.classes != manifest["classes"]:
        raise CSLError("the run's class list changed")
    if prepared.in_dim != manifest["in_dim"]:
        raise CSLError(f"features have dimension {prepared.in_dim}; the run's models expect {manifest['in_dim']}")
    stale = [f for f in fcfields.existing_outputs(dataset, csl_field, peer_scores) if _not_ours(f, config)]
    if stale:
        raise CSLError(f"run '{csl_field}' would write into fields it does not own: {stale}")
    progress = StagedProgress(progress, {"features": 4, "replay": 1.5, "write": 0.5})
    _attach_features(prepared, torch_device, cache_dir, progress)
    videos = _replay_and_score(
        config.run_dir, manifest, prepared.sequences, torch_device, precision, progress, threshold_value, peer_scores
    )
    with progress.stage("write", 1, "steps"), fcruns.run_lock(config.run_dir):
        dataset.reload()  # other shards may have added fields since this call began
        fcruns.merge_into_manifest(
            config.run_dir,
            manifest,
            [manifest["trajectories"][s.sample_id] for s in prepared.sequences],
            {s.sample_id: manifest["trajectories"][s.sample_id] for s in prepared.sequences},
        )
        _add_mistakenness(samples, csl_field, label_field, videos, prepared.classes, peer_scores)
        _write_scores(dataset, csl_field, prepared.full_sequences, videos, peer_scores)
        fcviews.save_views(dataset, csl_field, threshold_value, overwrite=True)
        config.state = "scored"
        config.threshold = threshold_value
        config.peer_scores = peer_scores
        config.fields = _with_review_fields(config, fcfields.output_fields(csl_field, peer_scores))
        dataset.update_run_config(csl_field, config)
        _save_summary(dataset, csl_field, _load_videos(dataset, csl_field))
    return CSLResults(csl_field, config.run_dir, prepared.classes, threshold_value, videos)


def replay_shards(samples, num_shards: int) -> list:
    """Splits the videos of ``samples`` into at most ``num_shards`` groups of
    about equal frame counts, for replay shards that run side by side.

    Returns lists of sample ids; every video is in exactly one group.
    """
    from fiftyone import ViewField as F

    num_shards = int(num_shards)
    if num_shards < 1:
        raise CSLError(f"num_shards must be >= 1, not {num_shards}")
    ids = samples.values("id")
    if not ids:
        raise CSLError("no videos to replay")
    frames = samples.values(F("frames").length())
    groups = [[] for _ in range(min(num_shards, len(ids)))]
    load = [0] * len(groups)
    for n, sid in sorted(zip(frames, ids), key=lambda p: (-p[0], p[1])):  # longest first, to the lightest group
        k = load.index(min(load))
        groups[k].append(sid)
        load[k] += n
    return [sorted(g) for g in groups]


def _with_review_fields(config, fields: dict) -> dict:
    """``fields`` plus the run's review-queue fields, if it has a queue."""
    if not getattr(config, "review", None):
        return fields
    from .review import review_fields

    extra = review_fields(config.csl_field)
    return {level: sorted(set(fields[level]) | set(extra[level])) for level in fields}


def _not_ours(field, config):
    name = field[len("frames.") :] if field.startswith("frames.") else field
    owned = set(config.fields["frames"]) | set(config.fields["samples"])
    return name not in owned


def flag_errors(samples, csl_field: str = "csl", threshold="auto") -> CSLResults:
    """Re-flags the scored videos of ``samples`` with a new ``threshold``:
    rewrites ``<csl_field>_errors`` and the saved views. No model runs."""
    dataset = samples._dataset
    config = get_run_config(dataset, csl_field)
    if config.state != "scored":
        raise CSLError(f"run '{csl_field}' has no scores yet: replay its checkpoints first")
    threshold_value = fcflags.resolve_threshold(threshold, len(config.classes))
    videos = _load_videos(samples, csl_field, threshold_value)
    if not videos:
        raise CSLError(f"none of these videos has scores in run '{csl_field}'")
    _write_flags(dataset, csl_field, videos)
    fcviews.save_views(dataset, csl_field, threshold_value, overwrite=True)
    config.threshold = threshold_value
    dataset.update_run_config(csl_field, config)
    _save_summary(dataset, csl_field, _load_videos(dataset, csl_field))
    return CSLResults(csl_field, config.run_dir, config.classes, threshold_value, videos)


def compute_csl(
    samples,
    label_field: str,
    csl_field: str = "csl",
    embeddings_field: str | None = None,
    *,
    classes: list | None = None,
    backbone: str = "efficientnet-lite0",
    backbone_weights: str | None = None,
    model: str = "transformer",
    epochs: int = 30,
    folds: int = 5,
    cross_fit: bool = True,
    stride: int = 1,
    threshold="auto",
    peer_scores: list | tuple = (),
    device: str = "auto",
    precision: str = "auto",
    seed: int = 51,
    store_embeddings_field: str | None = None,
    run_dir: str | None = None,
    cache_dir: str | None = None,
    overwrite: bool = False,
    progress=None,
    **train_kwargs,
) -> CSLResults:
    """Scores every labelled frame of ``samples`` by its Cumulative Sample Loss.

    See :func:`fiftyone_csl.compute_csl` for the full documentation.
    """
    started = time.time()
    dataset = samples._dataset
    peer_scores = [p for p in peer_scores if p != "csl"]
    _check_options(precision=precision)
    config, torch_device, prepared, fold_members = _begin(
        samples, label_field, csl_field, embeddings_field, classes, backbone, backbone_weights, model, epochs,
        folds, cross_fit, stride, device, seed, overwrite, peer_scores, train_kwargs,
    )  # fmt: skip
    autocast_context(torch_device, precision)  # an impossible precision fails before any work
    if store_embeddings_field is not None:
        if embeddings_field is not None:
            raise CSLError("store_embeddings_field only applies when a backbone computes the features")
        if store_embeddings_field in (dataset.get_frame_field_schema() or {}) and not overwrite:
            raise CSLError(f"frames.{store_embeddings_field} exists; pass overwrite=True to replace it")
    threshold_value = fcflags.resolve_threshold(threshold, len(prepared.classes))

    final_dir = run_dir or fcruns.default_run_dir(dataset.name, csl_field)
    staging = _staging_dir(final_dir)
    progress = StagedProgress(progress, PROGRESS_WEIGHTS)
    try:
        _attach_features(prepared, torch_device, cache_dir, progress)
        manifest = _train_into(staging, prepared, config, fold_members, label_field, torch_device, progress)
        videos = _replay_and_score(
            staging, manifest, prepared.sequences, torch_device, precision, progress, threshold_value, peer_scores
        )
        manifest["seconds"] = round(time.time() - started, 2)
        fcruns.write_manifest(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _move_trajectory_paths(videos, staging, final_dir)

    # write-back: the only part that changes the dataset
    with progress.stage("write", 1, "steps"):
        _clear_previous(dataset, csl_field, peer_scores, final_dir)
        os.replace(staging, final_dir)
        if store_embeddings_field is not None:
            fcf.write_embeddings(dataset, store_embeddings_field, prepared.sequences)
        _add_mistakenness(samples, csl_field, label_field, videos, prepared.classes, peer_scores)
        _write_scores(dataset, csl_field, prepared.full_sequences, videos, peer_scores)
        fcviews.save_views(dataset, csl_field, threshold_value, overwrite=True)
        _register(samples, csl_field, final_dir, label_field, prepared, config, threshold_value, peer_scores, "scored")
        _save_summary(samples, csl_field, videos)
    return CSLResults(csl_field, os.path.abspath(final_dir), prepared.classes, threshold_value, videos)


def evaluate_detection(
    samples, csl_field: str = "csl", error_field: str = "phase_error", scores=None, clean_field: str | None = None
) -> dict:
    """Evaluates a run against known errors; the report is stored in the run.

    Args:
        samples: the videos to evaluate on
        csl_field: the run key
        error_field: a frame-level Classification holding the error type on
            erroneous frames and nothing on clean ones (as
            :func:`fiftyone_csl.inject_errors` writes it)
        scores (None): score names; default CSL and the run's peers
        clean_field (None): a frame-level Classification with the true
            labels; if given, the segmenter (last checkpoint's argmax) is
            scored too

    Returns:
        a dict with ``scores``: per score, frame AUROC/AP for all errors and
        for each error type, and the EgoPER-style segment EDA (best over a
        threshold sweep); ``eda``: CSL's segment EDA at the run's threshold;
        ``type_accuracy``: how often a flagged segment's error type matches
        the injected one; and ``segmenter`` (F1@{10,25,50}, Edit, accuracy)
        when ``clean_field`` is given
    """
    from . import metrics

    dataset = samples._dataset
    config = get_run_config(dataset, csl_field)
    frame_schema = dataset.get_frame_field_schema() or {}
    for field in (error_field, clean_field):
        if field is not None and field not in frame_schema:
            raise CSLError(f"'frames.{field}' does not exist")
    names = ["csl", *config.peer_scores] if scores is None else list(scores)
    _check_options(peer_scores=[n for n in names if n != "csl"])
    videos = _load_videos(samples, csl_field)
    if not videos:
        raise CSLError(f"none of these videos has scores in run '{csl_field}'")
    results = CSLResults(csl_field, config.run_dir, config.classes, config.threshold, videos)
    _, types = metrics.frame_ground_truth(samples, error_field, results)
    bounds = np.cumsum([0] + [len(v.frame_numbers) for v in videos.values()])
    types_by_video = {sid: types[a:b] for sid, a, b in zip(videos, bounds[:-1], bounds[1:])}
    per_score = {}
    for name in names:
        per_video = {
            sid: v.scores[name] if name in v.scores else fcscores.compute_scores(v.trajectory, [name], v.labels)[name]
            for sid, v in videos.items()
        }
        per_score[name] = metrics.detection_report(np.concatenate(list(per_video.values())), types)
        per_score[name]["eda_sweep"] = metrics.eda_sweep(
            (v.labels, types_by_video[sid] != "", per_video[sid]) for sid, v in videos.items()
        )["eda"]
    threshold = fcflags.resolve_threshold(config.threshold, len(config.classes))
    report = {
        "error_field": error_field,
        "scores": per_score,
        "eda": metrics.eda(
            [(v.labels, types_by_video[sid] != "", v.scores["csl"]) for sid, v in videos.items()], threshold
        ),
        "type_accuracy": metrics.type_accuracy(results.segments(), types_by_video),
    }
    if clean_field is not None:
        index = {c: i for i, c in enumerate(config.classes)}
        ids, fns, clean = samples.values(["id", "frames.frame_number", f"frames.{clean_field}.label"])
        lookup = {sid: dict(zip(fn, lab)) for sid, fn, lab in zip(ids, fns, clean)}
        pairs = []
        for sid, v in videos.items():
            truth = [index.get(lookup[sid].get(int(f)), -1) for f in v.frame_numbers]
            pairs.append((v.trajectory.final_probs.argmax(1), np.array(truth)))
        report["segmenter"] = metrics.segmentation_report(pairs)
    _save_summary(dataset, csl_field, evaluation=report)  # the counts have not changed
    return report


# --- runs ---------------------------------------------------------------------------


def list_csl_runs(samples) -> list:
    """The keys of the CSL runs on the collection's dataset."""
    dataset = samples._dataset
    return [k for k in dataset.list_runs() if getattr(dataset.get_run_info(k).config, "method", None) == METHOD]


def get_run_config(samples, csl_field: str):
    dataset = samples._dataset
    if csl_field not in list_csl_runs(dataset):
        raise CSLError(f"no CSL run '{csl_field}' on dataset '{dataset.name}'")
    return dataset.get_run_info(csl_field).config


def _load_videos(samples, csl_field, threshold=None) -> dict:
    config = get_run_config(samples, csl_field)
    manifest = fcruns.read_manifest(config.run_dir)
    threshold = config.threshold if threshold is None else threshold
    threshold = fcflags.resolve_threshold(threshold, len(manifest["classes"]))
    wanted = set(samples.values("id"))
    videos = {}
    for sid, relpath in manifest["trajectories"].items():
        if sid not in wanted:
            continue
        path = fcruns.verified_path(config.run_dir, manifest, relpath)
        with np.load(path) as data:
            frame_numbers, labels = data["frame_numbers"], data["labels"]
        videos[sid] = _score_video(
            sid, frame_numbers, labels, load_trajectory(path), manifest["classes"], threshold, config.peer_scores, path
        )
    if "mistakenness" in config.peer_scores and videos:
        for sid, values in fcpeers.read_mistakenness(samples, csl_field, videos).items():
            videos[sid].scores["mistakenness"] = values
    return videos


def load_csl_results(samples, csl_field: str = "csl") -> CSLResults:
    """Loads a run's results for the videos of ``samples`` from its run
    directory (every file checked against the manifest)."""
    config = get_run_config(samples, csl_field)
    threshold = fcflags.resolve_threshold(config.threshold, len(config.classes))
    videos = _load_videos(samples, csl_field)
    return CSLResults(csl_field, config.run_dir, config.classes, threshold, videos)


def delete_csl_run(samples, csl_field: str = "csl", delete_files: bool = True) -> None:
    """Deletes a CSL run: its fields, saved views, run record and (by default)
    its run directory. The label field is never touched."""
    dataset = samples._dataset
    config = get_run_config(dataset, csl_field)
    fields = config.fields
    fcpeers.delete_brain_outputs(dataset, csl_field)  # the brain deletes its own field
    review = getattr(config, "review", None)
    if review and review.get("tag"):  # tags this run put on the labels and videos it queued
        dataset.untag_labels(review["tag"], label_fields=[fcfields.label_path(dataset, config.label_field)])
        dataset.untag_samples(review["tag"])
    fcfields.delete_outputs(dataset, [f"frames.{f}" for f in fields["frames"]] + list(fields["samples"]))
    fcviews.delete_views(dataset, csl_field)
    dataset.delete_run(csl_field)
    if delete_files:
        fcruns.remove_run_dir(config.run_dir)


def compute_csl_arrays(
    features: list,
    labels: list,
    classes: list | None = None,
    names: list | None = None,
    *,
    model: str = "transformer",
    epochs: int = 30,
    folds: int = 5,
    cross_fit: bool = True,
    threshold="auto",
    peer_scores: list | tuple = (),
    device: str = "auto",
    precision: str = "auto",
    seed: int = 51,
    run_dir: str | None = None,
    progress=None,
    **train_kwargs,
) -> CSLResults:
    """CSL on plain sequences, beneath the FiftyOne layer.

    The same training, replay, scores and flags as :func:`compute_csl`, for
    non-video data or precomputed features.

    Args:
        features: one (T_i, D) float array per sequence
        labels: one (T_i,) array of class indices per sequence
        classes (None): class names; default ``["0", "1", ...]``
        names (None): sequence names (the keys of ``results.videos``)
        run_dir (None): where checkpoints go; default a temporary directory
            that is removed afterwards
        others: as in :func:`compute_csl`

    Returns:
        a :class:`CSLResults`
    """
    import tempfile

    peer_scores = [p for p in peer_scores if p != "csl"]
    if "mistakenness" in peer_scores:
        raise CSLError("the 'mistakenness' peer needs a FiftyOne collection")
    _check_options(1, epochs, peer_scores, None, None, model, precision)
    sequences = fcseq.sequences_from_arrays(features, labels, names)
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
    config = fctrain.TrainConfig(
        model=model, epochs=int(epochs), folds=int(folds), cross_fit=bool(cross_fit), seed=int(seed), **train_kwargs
    )
    fold_members = fctrain.assign_folds([s.sample_id for s in sequences], config.folds, config.seed, config.cross_fit)
    prepared = _Prepared(classes, sequences, sequences, dims.pop(), _feature_spec(None, None, None, 1))
    threshold_value = fcflags.resolve_threshold(threshold, len(classes))
    torch_device = resolve_device(device)
    autocast_context(torch_device, precision)
    progress = StagedProgress(progress, {"train": 4, "replay": 1.5})
    owned = run_dir is None
    run_dir = run_dir or tempfile.mkdtemp(prefix="fcsl-arrays-")
    os.makedirs(run_dir, exist_ok=True)
    try:
        manifest = _train_into(run_dir, prepared, config, fold_members, None, torch_device, progress)
        videos = _replay_and_score(
            run_dir, manifest, sequences, torch_device, precision, progress, threshold_value, peer_scores, not owned
        )
        if not owned:
            fcruns.write_manifest(run_dir, manifest)
    finally:
        if owned:
            shutil.rmtree(run_dir, ignore_errors=True)
    return CSLResults("arrays", None if owned else run_dir, classes, threshold_value, videos)

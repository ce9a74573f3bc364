"""The audit pipeline: labels -> features -> checkpoints -> replay -> scores
-> flags -> FiftyOne fields, views and a registered run.

Everything that can be wrong with the input is checked before the first
write, and results are computed in a staging directory, so a failed call
leaves the dataset and any earlier run as they were.
"""

import json
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np

from . import features as fcf
from . import fields as fcfields
from . import flags as fcflags
from . import runs as fcruns
from . import scores as fcscores
from . import sequences as fcseq
from . import train as fctrain
from . import views as fcviews
from .replay import Trajectory, replay_fold
from .utils import CSLError, StagedProgress, atomic_save_npz, resolve_device

METHOD = "fiftyone-csl"
PROGRESS_WEIGHTS = {"features": 4, "train": 4, "replay": 1.5, "write": 0.5}


@dataclass
class VideoScores:
    """One video's results, on its scored (sampled) frames."""

    sample_id: str
    frame_numbers: np.ndarray
    labels: np.ndarray
    scores: dict
    trajectory: Trajectory
    segments: list


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


def _validate_key(dataset, csl_field, peer_scores, overwrite):
    if not isinstance(csl_field, str) or not csl_field.isidentifier():
        raise CSLError(f"csl_field must be a valid identifier (letters, digits, _); got {csl_field!r}")
    if dataset.has_run(csl_field):
        info = dataset.get_run_info(csl_field)
        if getattr(info.config, "method", None) != METHOD:
            raise CSLError(f"run key '{csl_field}' belongs to another kind of run; choose another csl_field")
        if not overwrite:
            raise CSLError(
                f"a CSL run '{csl_field}' already exists; pass overwrite=True to replace it or choose another csl_field"
            )
        return
    clashes = fcfields.existing_outputs(dataset, csl_field, peer_scores)
    clashes += [f"saved view {v}" for v in fcviews.existing_views(dataset, csl_field)]
    if clashes and not overwrite:
        raise CSLError(
            f"csl_field '{csl_field}' would write into existing {clashes}; choose another "
            "csl_field or pass overwrite=True to replace them"
        )


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
    unknown = sorted(set(peer_scores) - set(fcscores.SCORES))
    if unknown:
        raise CSLError(f"unknown peer score(s) {unknown}; choose from {sorted(fcscores.SCORES)}")
    if int(stride) < 1:
        raise CSLError(f"stride must be >= 1; got {stride}")
    if int(epochs) < 1:
        raise CSLError(f"epochs must be >= 1; got {epochs}")
    _validate_key(dataset, csl_field, peer_scores, overwrite)
    if embeddings_field is None and backbone not in fcf.BACKBONES:
        raise CSLError(f"unknown backbone '{backbone}'; choose one of {sorted(fcf.BACKBONES)}")
    config = fctrain.TrainConfig(
        model=model, epochs=int(epochs), folds=int(folds), cross_fit=bool(cross_fit), seed=int(seed), **train_kwargs
    )
    from ..models import HEADS

    if config.model not in HEADS:
        raise CSLError(f"unknown model '{config.model}'; choose one of {sorted(HEADS)}")
    torch_device = resolve_device(device)

    # labels -> sequences (all validation happens before anything is written)
    raw = fcseq.read_raw_labels(samples, label_field)
    classes = fcseq.resolve_classes(raw, classes)
    full_sequences = fcseq.build_sequences(raw, classes)
    sequences = [fcseq.subsample(s, int(stride)) for s in full_sequences]
    fold_members = fctrain.assign_folds([s.sample_id for s in sequences], config.folds, config.seed, config.cross_fit)
    if embeddings_field is not None:
        in_dim = fcf.read_embeddings(samples, embeddings_field, sequences)
    else:
        fcf.check_video_files(sequences)
        in_dim = fcf.BACKBONES[backbone].dim
    if store_embeddings_field is not None:
        if embeddings_field is not None:
            raise CSLError("store_embeddings_field only applies when a backbone computes the features")
        if store_embeddings_field in (dataset.get_frame_field_schema() or {}) and not overwrite:
            raise CSLError(f"frames.{store_embeddings_field} exists; pass overwrite=True to replace it")
    threshold_value = fcflags.resolve_threshold(threshold, len(classes))

    final_dir = run_dir or fcruns.default_run_dir(dataset.name, csl_field)
    staging = f"{final_dir}.staging-{os.getpid()}"
    if os.path.exists(staging):
        shutil.rmtree(staging)
    os.makedirs(staging)
    progress = StagedProgress(progress, PROGRESS_WEIGHTS)
    try:
        if embeddings_field is None:
            with progress.stage("features", len(sequences), "videos") as stage:
                fcf.attach_backbone_features(
                    sequences,
                    backbone,
                    int(stride),
                    torch_device,
                    cache_dir or fcruns.default_cache_dir(),
                    backbone_weights,
                    progress_stage=stage,
                )
        else:
            with progress.stage("features", 1, "fields"):
                pass
        manifest = {
            "method": METHOD,
            "config": config.to_dict(),
            "classes": classes,
            "in_dim": in_dim,
            "label_field": label_field,
            "features": {
                "embeddings_field": embeddings_field,
                "backbone": None if embeddings_field else backbone,
                "backbone_weights": backbone_weights,
                "stride": int(stride),
            },
            "folds": fold_members,
            "checkpoints": [],
            "trajectories": {},
            "files": {},
        }
        by_id = {s.sample_id: s for s in sequences}
        trajectories = {}
        with progress.stage("train", config.epochs * len(fold_members), "epochs") as stage:
            for k in range(len(fold_members)):
                train_set = [by_id[i] for i in fctrain.training_ids(fold_members, k, config.cross_fit)]
                manifest["checkpoints"].append(
                    fctrain.train_fold(
                        train_set, in_dim, len(classes), config, staging, k, manifest, torch_device, stage
                    )
                )
        with progress.stage("replay", sum(len(c) for c in manifest["checkpoints"]), "checkpoints") as stage:
            for k, members in enumerate(fold_members):
                trajectories.update(
                    replay_fold(
                        [by_id[i] for i in members], manifest["checkpoints"][k], staging, manifest, torch_device, stage
                    )
                )
        os.makedirs(os.path.join(staging, "trajectories"))
        videos = {}
        for s in sequences:
            t = trajectories[s.sample_id]
            relpath = f"trajectories/{s.sample_id}.npz"
            atomic_save_npz(
                os.path.join(staging, relpath),
                frame_numbers=s.frame_numbers,
                labels=s.labels,
                loss=t.loss,
                margin=t.margin,
                final_probs=t.final_probs,
                mean_probs=t.mean_probs,
            )
            fcruns.record_file(staging, manifest, relpath)
            manifest["trajectories"][s.sample_id] = relpath
            videos[s.sample_id] = _score_video(
                s.sample_id, s.frame_numbers, s.labels, t, classes, threshold_value, peer_scores
            )
        manifest["threshold"] = threshold_value
        manifest["peer_scores"] = list(peer_scores)
        manifest["seconds"] = round(time.time() - started, 2)
        fcruns.write_manifest(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    # write-back: the only part that changes the dataset
    with progress.stage("write", 1, "steps"):
        if dataset.has_run(csl_field):
            delete_csl_run(dataset, csl_field)
        else:
            fcfields.delete_outputs(dataset, fcfields.existing_outputs(dataset, csl_field, peer_scores))
            fcviews.delete_views(dataset, csl_field)
        if os.path.exists(final_dir):
            fcruns.remove_run_dir(final_dir)
        os.makedirs(os.path.dirname(final_dir), exist_ok=True)
        os.replace(staging, final_dir)
        if store_embeddings_field is not None:
            fcf.write_embeddings(dataset, store_embeddings_field, sequences)
        _write_fields(dataset, csl_field, full_sequences, videos, peer_scores)
        view_list = fcviews.save_views(dataset, csl_field, threshold_value, overwrite=True)
        run_config = samples.init_run(
            method=METHOD,
            label_field=label_field,
            csl_field=csl_field,
            run_dir=os.path.abspath(final_dir),
            classes=classes,
            threshold=threshold_value,
            peer_scores=list(peer_scores),
            fields=fcfields.output_fields(csl_field, peer_scores),
            views=view_list,
            embeddings_field=embeddings_field,
            backbone=None if embeddings_field else backbone,
            stride=int(stride),
            train=config.to_dict(),
        )
        samples.register_run(csl_field, run_config, overwrite=True)
        run_results = samples.init_run_results(
            csl_field,
            num_videos=len(videos),
            num_scored_frames=int(sum(len(v.frame_numbers) for v in videos.values())),
            num_segments=int(sum(len(v.segments) for v in videos.values())),
        )
        samples.save_run_results(csl_field, run_results, overwrite=True)
    return CSLResults(csl_field, os.path.abspath(final_dir), classes, threshold_value, videos)


def _score_video(sample_id, frame_numbers, labels, trajectory, classes, threshold, peer_scores):
    scores = fcscores.compute_scores(trajectory, ["csl", *peer_scores])
    segments = fcflags.suspect_segments(
        sample_id, frame_numbers, labels, scores["csl"], trajectory.mean_probs, classes, threshold
    )
    return VideoScores(sample_id, frame_numbers, labels, scores, trajectory, segments)


def _write_fields(dataset, csl_field, full_sequences, videos, peer_scores):
    full_by_id = {s.sample_id: s for s in full_sequences}
    for name in ["csl", *peer_scores]:
        field = csl_field if name == "csl" else f"{csl_field}_{name}"
        per_sample = {}
        for sid, v in videos.items():
            labelled = full_by_id[sid].frame_numbers
            per_sample[sid] = (labelled, fcfields.spread_to_labelled_frames(v.frame_numbers, v.scores[name], labelled))
        fcfields.write_frame_scores(dataset, field, per_sample)
        if name == "csl":
            fcfields.write_sample_values(
                dataset, f"{csl_field}_max", {sid: float(vals.max()) for sid, (_, vals) in per_sample.items()}
            )
            fcfields.write_sample_values(
                dataset, f"{csl_field}_mean", {sid: float(vals.mean()) for sid, (_, vals) in per_sample.items()}
            )
    fcfields.write_sample_values(
        dataset,
        f"{csl_field}_errors",
        {sid: fcfields.suspect_detections(v.segments) for sid, v in videos.items()},
    )


def list_csl_runs(samples) -> list:
    """The keys of the CSL runs on the collection's dataset."""
    dataset = samples._dataset
    return [k for k in dataset.list_runs() if getattr(dataset.get_run_info(k).config, "method", None) == METHOD]


def get_run_config(samples, csl_field: str):
    dataset = samples._dataset
    if csl_field not in list_csl_runs(dataset):
        raise CSLError(f"no CSL run '{csl_field}' on dataset '{dataset.name}'")
    return dataset.get_run_info(csl_field).config


def load_csl_results(samples, csl_field: str = "csl") -> CSLResults:
    """Loads a run's results from its run directory (checked against its manifest)."""
    config = get_run_config(samples, csl_field)
    run_dir = config.run_dir
    manifest = fcruns.read_manifest(run_dir)
    classes = manifest["classes"]
    videos = {}
    for sid, relpath in manifest["trajectories"].items():
        with np.load(fcruns.verified_path(run_dir, manifest, relpath)) as data:
            t = Trajectory(
                loss=data["loss"], margin=data["margin"], final_probs=data["final_probs"], mean_probs=data["mean_probs"]
            )
            videos[sid] = _score_video(
                sid, data["frame_numbers"], data["labels"], t, classes, manifest["threshold"], manifest["peer_scores"]
            )
    return CSLResults(csl_field, run_dir, classes, manifest["threshold"], videos)


def delete_csl_run(samples, csl_field: str = "csl", delete_files: bool = True) -> None:
    """Deletes a CSL run: its fields, saved views, run record and (by default)
    its run directory. The label field is never touched."""
    dataset = samples._dataset
    config = get_run_config(dataset, csl_field)
    fields = config.fields
    fcfields.delete_outputs(dataset, [f"frames.{f}" for f in fields["frames"]] + list(fields["samples"]))
    fcviews.delete_views(dataset, csl_field)
    dataset.delete_run(csl_field)
    if delete_files:
        fcruns.remove_run_dir(config.run_dir)


def describe_run(samples, csl_field: str = "csl") -> str:
    config = get_run_config(samples, csl_field)
    return json.dumps(config.serialize(), indent=2, default=str)

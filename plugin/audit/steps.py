"""The steps that train on FiftyOne collections: features, checkpoints, and
the whole audit at once (:func:`compute_csl`). Replay and re-flagging with
trained checkpoints live in :mod:`~fiftyone_csl.plugin.rescore`.

Every step checks everything it can before its first write or its first
minute of work (:func:`plan_training`), builds its files in a staging
folder of the run, and changes the dataset only through
:func:`~fiftyone_csl.plugin.writeback.commit`.
"""

import logging
import os
import shutil
import time

import numpy as np

from ..core import sequences as fcseq
from ..core.checks import check_device, check_identifier
from ..core.errors import CSLError
from ..core.manifest import Manifest
from ..core.results import CSLResults
from ..core.rounds import WEIGHTS as SECOND_ROUND_WEIGHTS
from ..core.rounds import second_round
from ..core.simulation import simulate_and_flag
from ..core.stages import replay_and_score, save_error_probs, train_into
from ..core.utils import StagedProgress, resolve_device
from ..runs import fields as fcfields
from ..runs import writeback
from ..runs.locks import dataset_lock, run_lock
from ..runs.record import RunNames, get_run_config, list_csl_runs
from ..runs.store import default_cache_dir
from . import features as fcf
from .encoders import resolve_runtime
from .options import FeatureSpec
from .plan import AuditPlan, TrainingPlan, plan_audit
from .prepare import attach_features, check_collection, video_strides

logger = logging.getLogger(__name__)

PROGRESS_WEIGHTS = {"features": 4, "train": 4, "replay": 1.5, "write": 0.5}


# --- what can be checked before any work ---------------------------------------------------


def _train_staging(plan: TrainingPlan, dataset_id) -> tuple:
    """The training's staging folder and manifest; a folder left by a
    killed call with the same fingerprint is resumed from."""
    name = f".train-{plan.fingerprint(dataset_id)}"
    path = os.path.join(plan.store.key_dir, name)
    manifest = plan.new_manifest(dataset_id)
    planted = _symbolic_link_in(path)
    if planted:  # a resumed call writes into it: what a link names is never written, nor removed
        raise CSLError(f"{planted} is a symbolic link this run did not make; remove it to train run '{plan.names.key}'")
    if os.path.isfile(os.path.join(path, "manifest.json")):
        try:
            previous = Manifest.load(path, None, dataset_id, plan.names.key)
            manifest.checkpoints, manifest.files = previous.checkpoints, previous.files
            manifest.second_round = previous.second_round  # its checkpoints resume when the masks are the same
            logger.info("resuming run '%s' from %s", plan.names.key, path)
        except CSLError:
            shutil.rmtree(path, ignore_errors=True)
    for other in os.listdir(plan.store.key_dir):  # another call's leftovers cannot be resumed by this one
        if other.startswith(".train-") and other != name:
            shutil.rmtree(os.path.join(plan.store.key_dir, other), ignore_errors=True)
    return plan.store.staging(name), manifest


def _symbolic_link_in(path: str) -> str | None:
    """``path`` or the first symbolic link inside it (links not followed), or None."""
    if os.path.islink(path):
        return path
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            if os.path.islink(os.path.join(top, name)):
                return os.path.join(top, name)
    return None


# --- the steps ---------------------------------------------------------------------------------


def run_audit(samples, label_field, csl_field, embeddings_field, score: bool, function: str, progress=None, **kwargs):
    """Training and, with ``score``, replay and scores: the body of
    :func:`fiftyone_csl.compute_csl` and :func:`fiftyone_csl.train_checkpoints`
    (options as there, checked by :func:`~fiftyone_csl.plugin.audit.plan.plan_audit`)."""
    started = time.time()
    dataset = samples._dataset
    audit = plan_audit(samples, label_field, csl_field, embeddings_field, score, function, **kwargs)
    plan, threshold, threshold_value = audit.training, audit.threshold, audit.threshold_value
    if not score and plan.config.rounds == 2:
        raise CSLError("rounds=2 needs the first round's scores: run compute_csl (train_checkpoints trains one round)")
    dataset_id = str(dataset._doc.id)
    weights = dict(PROGRESS_WEIGHTS) if score else {"features": 4, "train": 4, "write": 0.2}
    if audit.simulation:
        weights.update({"simulation train": 4, "simulation replay": 1.5})
    if score and plan.config.rounds != 1:
        weights.update(SECOND_ROUND_WEIGHTS)
    progress = StagedProgress(progress, weights)
    with run_lock(dataset, csl_field):
        staging, manifest = _train_staging(plan, dataset_id)
        try:
            attach_features(plan.prepared, plan.device, audit.cache_dir, progress)
            train_into(staging, manifest, plan.prepared.sequences, plan.config, progress, plan.device, True)
            videos = {}
            if score:
                videos = replay_and_score(
                    staging, manifest, plan.prepared.sequences, plan.device, audit.precision, progress,
                    threshold_value, audit.peer_scores,
                )  # fmt: skip
                videos = second_round(
                    staging, manifest, plan.prepared.sequences, videos, plan.config, plan.device, audit.precision,
                    progress, threshold_value, audit.peer_scores, save_progress=True,
                )  # fmt: skip
            if audit.simulation:
                videos, sim = simulate_and_flag(
                    staging, manifest, plan.prepared.sequences, plan.config, plan.device, audit.precision, progress,
                    videos, None if threshold == "auto" else threshold_value, audit.target_precision,
                )  # fmt: skip
                threshold_value = sim.report["threshold"]
                save_error_probs(staging, manifest, videos, sim)
            manifest.feature_stats = plan.prepared.feature_stats
            manifest.seconds = round(time.time() - started, 2)
            with progress.stage("write", 1, "steps"):
                version = commit_audit(dataset, audit, staging, manifest, videos, threshold_value)
        except BaseException as e:
            if not isinstance(e, KeyboardInterrupt):  # an interrupted call keeps its staging to resume
                shutil.rmtree(staging, ignore_errors=True)
            plan.store.raise_if_full(e)
            raise
    if not score:
        return version
    results = CSLResults(csl_field, version, plan.prepared.classes, threshold_value, videos, plan.warnings)
    results.simulation = manifest.simulation
    results.second_round = manifest.second_round_report()
    return results


def commit_audit(dataset, audit: AuditPlan, staging: str, manifest: Manifest, videos: dict, threshold_value) -> str:
    """Makes ``staging`` the run's new version and writes its outputs (and a
    requested embeddings field); returns the version's folder."""
    plan = audit.training

    def store_embeddings():
        if audit.store_embeddings_field is not None:
            fcfields.write_embeddings(dataset, audit.store_embeddings_field, plan.prepared.sequences)

    return writeback.commit(
        dataset, plan.store, staging, manifest, plan.names, state="scored" if audit.score else "trained",
        threshold=threshold_value if audit.score else "auto", video_ids=list(videos), replace=True, videos=videos,
        before_journal=store_embeddings, warnings=plan.warnings,
    )  # fmt: skip


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
    fps: float | None = None,
    backbone_runtime: str = "auto",
) -> int:
    """Computes backbone features of every ``stride``-th frame of every video
    (or ``fps`` frames per second of video) and stores them in the
    frame-level vector field ``embeddings_field``; ``backbone_runtime`` as
    in :func:`compute_csl`.

    Only a vector field may be replaced (with ``overwrite=True``), never a
    label or a run's field. Returns the number of frames written.
    """
    check_collection(samples)
    dataset = samples._dataset
    check_identifier("embeddings_field", embeddings_field)
    spec = FeatureSpec.make(None, backbone, backbone_weights, stride, fps, backbone_runtime)
    torch_device = resolve_device(check_device(device))
    resolve_runtime(spec.backbone_runtime, torch_device)
    schema = dataset.get_frame_field_schema() or {}
    if embeddings_field in schema:
        if not overwrite:
            raise CSLError(f"frames.{embeddings_field} exists; pass overwrite=True to replace it")
        import fiftyone.core.fields as fof  # lazy: importing FiftyOne is slow

        if not isinstance(schema[embeddings_field], (fof.VectorField, fof.ArrayField, fof.ListField)):
            raise CSLError(f"frames.{embeddings_field} is not a vector field; it is never replaced")

        for key in list_csl_runs(dataset):
            if f"frames.{embeddings_field}" in RunNames.of(get_run_config(samples, key)).paths():
                raise CSLError(f"frames.{embeddings_field} belongs to run '{key}'")
    ids, paths = samples.values(["id", "filepath"])
    sequences = [
        fcseq.VideoSequence(sid, path, np.zeros(0, np.int64), np.zeros(0, np.int64)) for sid, path in zip(ids, paths)
    ]
    fcf.check_video_files(sequences)
    strides = video_strides(samples, spec, sequences)
    progress = StagedProgress(progress, {"features": 1})
    decoded = fcf.iter_backbone_features(
        paths, spec.backbone, strides, torch_device, cache_dir or default_cache_dir(), spec.backbone_weights,
        runtime=spec.backbone_runtime,
    )  # fmt: skip
    with progress.stage("features", len(sequences), "videos") as stage:
        for s, (numbers, features) in zip(sequences, decoded):
            s.frame_numbers, s.features = numbers, features
            stage.update()
    with dataset_lock(dataset):
        fcfields.write_embeddings(dataset, embeddings_field, sequences)
    return int(sum(len(s.frame_numbers) for s in sequences))

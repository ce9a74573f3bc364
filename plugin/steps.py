"""The steps that train on FiftyOne collections: features, checkpoints, and
the whole audit at once (:func:`compute_csl`). Replay and re-flagging with
trained checkpoints live in :mod:`~fiftyone_csl.plugin.rescore`.

Every step checks everything it can before its first write or its first
minute of work (:func:`plan_training`), builds its files in a staging
folder of the run, and changes the dataset only through
:func:`~fiftyone_csl.plugin.writeback.commit`.
"""

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np

from . import features as fcf
from . import fields as fcfields
from . import flags as fcflags
from . import sequences as fcseq
from . import train as fctrain
from . import writeback
from .encoders import resolve_runtime
from .locks import dataset_lock, run_lock
from .options import (
    FeatureSpec,
    check_choice,
    check_device,
    check_identifier,
    check_simulation,
    check_threshold,
    make_train_config,
)
from .pipeline import (
    ERROR_PROB,
    CSLResults,
    check_folds,
    check_peer_scores,
    replay_and_score,
    save_error_probs,
    simulate_and_flag,
    train_into,
)
from .prepare import Prepared, attach_features, check_collection, labelled_fractions, prepare, video_strides
from .record import (
    METHOD,
    Manifest,
    RunNames,
    RunStore,
    default_cache_dir,
    existing_paths,
    get_run_config,
    unowned_outputs,
)
from .replay import PRECISIONS, autocast_context
from .utils import CSLError, StagedProgress, resolve_device

logger = logging.getLogger(__name__)

PROGRESS_WEIGHTS = {"features": 4, "train": 4, "replay": 1.5, "write": 0.5}


# --- what can be checked before any work ---------------------------------------------------


def _check_new_outputs(dataset, names: RunNames, protected: dict, overwrite: bool) -> None:
    """The run's outputs must not be a protected field (the label or
    embeddings field), and may replace only what an earlier run of this key
    owns, and only with ``overwrite``."""
    for what, path in protected.items():
        if path in names.paths():
            raise CSLError(f"csl_field '{names.key}' would write its scores into the {what} {path}; choose another")
    current = dataset.get_run_info(names.key).config if dataset.has_run(names.key) else None
    if current is not None:
        if getattr(current, "method", None) != METHOD:
            raise CSLError(f"run key '{names.key}' belongs to another kind of run; choose another csl_field")
        if not overwrite:
            raise CSLError(
                f"a CSL run '{names.key}' already exists; pass overwrite=True to replace it or choose another csl_field"
            )
    taken = unowned_outputs(dataset, names, RunNames.of(current) if current is not None else None)
    if taken:
        raise CSLError(
            f"csl_field '{names.key}' would write into {taken}, which no run of this key created; "
            "choose another csl_field (overwrite=True never replaces what the run does not own)"
        )


@dataclass
class TrainingPlan:
    """Everything a training call decided before any work."""

    names: RunNames
    store: RunStore
    prepared: Prepared
    config: object  # TrainConfig
    fold_members: list
    fold_classes: list
    warnings: list
    device: object
    label_field: str

    def fingerprint(self, dataset_id) -> str:
        """Identifies the call for resuming: same dataset, key, labels,
        classes, features and training settings give the same value."""
        digest = hashlib.sha256()
        head = [dataset_id, self.names.key, self.label_field, self.prepared.classes, self.prepared.spec.to_dict(),
                self.config.to_dict(), self.fold_members]  # fmt: skip
        digest.update(json.dumps(head, sort_keys=True, default=str).encode())
        for s in self.prepared.sequences:
            digest.update(s.sample_id.encode())
            digest.update(np.ascontiguousarray(s.frame_numbers, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(s.labels, dtype=np.int64).tobytes())
            if s.labelled is not None:
                digest.update(np.ascontiguousarray(s.labelled, dtype=bool).tobytes())
            if self.prepared.spec.embeddings_field is not None:
                digest.update(np.ascontiguousarray(s.features, dtype=np.float32).tobytes())
        return digest.hexdigest()[:24]

    def new_manifest(self, dataset_id) -> Manifest:
        p = self.prepared
        manifest = Manifest(
            dataset_id, self.names.key, self.label_field, p.classes, p.in_dim, p.spec.to_dict(),
            self.config.to_dict(), self.fold_members, self.fold_classes,
        )  # fmt: skip
        if p.spec.sparse_labels:
            manifest.labelled_fraction = labelled_fractions(p.sequences)
        return manifest


def plan_training(
    samples, label_field, csl_field, spec, classes, train_kwargs, peer_scores, overwrite, run_dir, device, function,
    store_embeddings_field=None,
) -> TrainingPlan:  # fmt: skip
    """Every check of a training call, in order of cost; raises :class:`CSLError`."""
    check_collection(samples)
    dataset = samples._dataset
    check_identifier("csl_field", csl_field)
    config = make_train_config(function, **train_kwargs)
    device = resolve_device(check_device(device))
    if not isinstance(overwrite, bool):
        raise CSLError(f"overwrite must be True or False; got {overwrite!r}")
    if fcseq.label_field_kind(samples, label_field) != "frames" and "mistakenness" in peer_scores:
        raise CSLError("the 'mistakenness' peer needs a frame-level Classification label field")
    label_path = fcfields.label_path(dataset, label_field)
    protected = {"label field": label_path}
    if spec.embeddings_field is not None:
        protected["embeddings field"] = f"frames.{spec.embeddings_field}"
    if store_embeddings_field is not None:
        check_identifier("store_embeddings_field", store_embeddings_field)
        if spec.embeddings_field is not None:
            raise CSLError("store_embeddings_field only applies when a backbone computes the features")
        path = f"frames.{store_embeddings_field}"
        if path == label_path:
            raise CSLError(f"store_embeddings_field would replace the label field {label_path}")
        if existing_paths(dataset, [path]) and not overwrite:
            raise CSLError(f"{path} exists; pass overwrite=True to replace it")
        protected["embeddings field to store"] = path
    if spec.sparse_labels and "mistakenness" in peer_scores:
        raise CSLError("the 'mistakenness' peer needs every frame labelled; it does not apply with sparse_labels")
    if spec.sparse_labels and ERROR_PROB in peer_scores:
        raise CSLError("simulation needs every frame labelled; it does not apply with sparse_labels")
    names = RunNames(csl_field, tuple(peer_scores), sparse=spec.sparse_labels)
    _check_new_outputs(dataset, names, protected, overwrite)
    store = RunStore(str(dataset._doc.id), csl_field, run_dir)
    prepared = prepare(samples, label_field, classes, spec, device)
    # videos with no label yet train nothing: they are only replayed (predictions)
    labelled_ids = [s.sample_id for s in prepared.sequences if len(fcseq.given_labels(s))]
    fold_members = fctrain.assign_folds(labelled_ids, config.folds, config.seed, config.cross_fit)
    fold_classes, warnings = check_folds(prepared.sequences, fold_members, config, prepared.classes)
    store.check_writable()
    return TrainingPlan(names, store, prepared, config, fold_members, fold_classes, warnings, device, label_field)


def _train_staging(plan: TrainingPlan, dataset_id) -> tuple:
    """The training's staging folder and manifest; a folder left by a
    killed call with the same fingerprint is resumed from."""
    name = f".train-{plan.fingerprint(dataset_id)}"
    path = os.path.join(plan.store.key_dir, name)
    manifest = plan.new_manifest(dataset_id)
    if os.path.isfile(os.path.join(path, "manifest.json")):
        try:
            previous = Manifest.load(path, None, dataset_id, plan.names.key)
            manifest.checkpoints, manifest.files = previous.checkpoints, previous.files
            logger.info("resuming run '%s' from %s", plan.names.key, path)
        except CSLError:
            shutil.rmtree(path, ignore_errors=True)
    for other in os.listdir(plan.store.key_dir):  # another call's leftovers cannot be resumed by this one
        if other.startswith(".train-") and other != name:
            shutil.rmtree(os.path.join(plan.store.key_dir, other), ignore_errors=True)
    return plan.store.staging(name), manifest


# --- the steps ---------------------------------------------------------------------------------


def compute_csl(
    samples, label_field: str, csl_field: str = "csl", embeddings_field: str | None = None, workers=None, **kwargs
):
    """Scores every labelled frame of a video collection by its Cumulative
    Sample Loss (CSL) and flags the likely annotation errors.

    A temporal model is trained on the frame labels with a checkpoint after
    every epoch (K-fold cross-fitting over videos by default, so each video is
    scored only by models that never saw its labels). Every checkpoint is then
    replayed over every frame; a frame's CSL is the mean of its cross-entropy
    against its given label over all checkpoints. Frames whose CSL stays high
    are likely mislabelled or out of order.

    Writes, never touching ``label_field``:

    -   ``frames.<csl_field>``: CSL of every labelled frame (with ``stride``
        > 1, frames between sampled ones take the nearest sampled value)
    -   ``<csl_field>_max``, ``<csl_field>_mean``: per-video summaries
    -   ``<csl_field>_errors``: ``TemporalDetections``, one per suspect
        segment, labelled with its error type (``mislabel``, ``disorder``,
        ``boundary``) with attributes ``mean_csl``, ``max_csl``,
        ``given_label`` and ``suggested_label``
    -   ``frames.<csl_field>_<peer>`` for each of ``peer_scores``
    -   saved views ``<csl_field>-ranked``, ``<csl_field>-suspect-frames``,
        ``<csl_field>-suspect-clips`` and a run registered under ``csl_field``

    Args:
        samples: a video Dataset or DatasetView
        label_field: a frame-level ``Classification`` field (``"phase"`` or
            ``"frames.phase"``) or a sample-level ``TemporalDetections`` field
        csl_field ("csl"): the run key and prefix of every output field
        embeddings_field (None): a frame-level vector field to use as frame
            features; if None a pretrained ``backbone`` computes them
        classes (None): the class list; default the sorted distinct labels
        backbone ("efficientnet-lite0"): ``"efficientnet-lite0"`` (ImageNet
            weights installed with pip, works offline), ``"resnet18"`` or
            ``"resnet50"`` (torchvision weights API)
        backbone_weights (None): a local state-dict file for the backbone
        model ("transformer"): the temporal head: ``"transformer"``,
            ``"tcn"`` (multi-stage TCN) or ``"mlp"`` (frame-wise ablation)
        epochs (30): training epochs, one checkpoint each
        folds (5): K of the K-fold cross-fitting over videos
        cross_fit (True): False trains one model on all videos and scores
            them in-sample (the training-set trajectories)
        stride (1): score every ``stride``-th frame
        fps (None): score frames at this rate per second of video instead,
            whatever each file's frame rate (a video of ``r`` fps is sampled
            every ``round(r / fps)`` frames): the way to audit long videos
            (``fps=1`` or ``2`` on 25-30 fps footage costs 12-30x less
            backbone time; see the README's figures for what it loses)
        sparse_labels (False): only some frames carry a label (a few per
            video, as when labelling new videos): every sampled frame of
            every video enters the model, labelled or not (videos with no
            label yet are replayed, not trained on); training weighs an
            unlabelled frame by ``mgw_sigma``; CSL, peer scores and flags
            cover the labelled frames; ``frames.<csl_field>_predictions``
            (class and confidence) every sampled frame and
            ``frames.<csl_field>_propagated`` the unlabelled ones; the run
            summary reports each video's ``labelled_fraction``. Not with
            ``simulation`` or the ``mistakenness`` peer
        mgw_sigma (0.0): with sparse labels, the width in frames of the
            maximum-Gaussian weights: an unlabelled frame trains on its
            nearest label with weight ``exp(-d^2 / (2 mgw_sigma^2))`` at
            distance ``d`` (0: ignored, i.e. masking; ``inf``: full weight)
        backbone_runtime ("auto"): what runs the backbone: ``"auto"`` takes
            OpenVINO, then ONNX Runtime, when installed and on the CPU
            (``pip install fiftyone-csl[fast]``), else PyTorch; or
            ``"torch"``, ``"openvino"``, ``"onnxruntime"``. All compute in
            float32; their features agree within a cosine of 0.999
        threshold ("auto"): CSL above which a frame is flagged; ``"auto"``
            is ``ln(number of classes)``: on average over training, the given
            label got less probability than a uniform guess would give it
        peer_scores (()): extra scores to write, from ``"last_loss"`` and
            ``"aum"``
        simulation (False): also train and replay the same models on a copy
            of the labels with known errors injected (one of each kind per
            video; about doubles the time), to learn what errors look like
            here: writes ``frames.<csl_field>_error_prob`` (a learned
            detector's probability that the frame's label is wrong), estimates
            the precision of the flags (``results.simulation``,
            :func:`run_summary`) and, with ``threshold="auto"``, flags at the
            lowest threshold whose estimated precision reaches
            ``target_precision``
        target_precision (0.85): the precision ``threshold="auto"`` aims at
            when ``simulation`` is on
        device ("auto"): ``"auto"`` uses CUDA when available, else the CPU
        precision ("auto"): the replay's arithmetic: ``"auto"`` is float16
            autocast on CUDA and float32 on the CPU; ``"fp32"``, ``"fp16"``
            (CUDA only) or ``"bf16"``
        seed (51): seeds folds, initialisation and training order; identical
            inputs give identical results on the CPU
        store_embeddings_field (None): also store the backbone features in
            this frame-level field
        run_dir (None): the folder under which the run's files go, in
            ``<run_dir>/<dataset id>/<csl_field>/``; default
            ``~/.fiftyone/csl/runs`` (or ``$FIFTYONE_CSL_DIR/runs``)
        cache_dir (None): feature cache; default ``<base>/features``
        overwrite (False): replace an existing run of the same key (only
            what that run created is replaced: never the label field, the
            embeddings field or a field no run of this key wrote)
        workers (None): an int queues the audit instead, as a graph of
            FiftyOne delegated operations that that many workers run side
            by side, and returns at once
            (:func:`~fiftyone_csl.plugin.fanout.queue_audit`: its dict of
            ``graph_id`` and queued operations; ``delegation_target`` may be
            given)
        progress (None): FiftyOne-style: None/bool for console bars, or a
            callable receiving an object with ``progress`` in [0, 1] and
            ``label``
        **kwargs: training settings of
            :class:`fiftyone_csl.plugin.train.TrainConfig` (``lr``,
            ``batch_size``, ``max_frames``, ``model_kwargs``,
            ``half_checkpoints`` to store checkpoints in float16, ...)

    Returns:
        a :class:`CSLResults`

    A call killed or failing at any point leaves the previous run (if any)
    loadable and the dataset as it was; calling again with the same
    arguments on the same labels resumes training from the last complete
    checkpoint.

    Raises:
        CSLError: invalid input, or another call running with the same
            key; nothing was written
    """
    if workers is not None:
        from .fanout import queue_audit  # the fan-out builds on this module

        return queue_audit(samples, label_field, csl_field, embeddings_field, workers=workers, **kwargs)
    return _audit(samples, label_field, csl_field, embeddings_field, True, "compute_csl", **kwargs)


def train_checkpoints(samples, label_field: str, csl_field: str = "csl", embeddings_field: str | None = None, **kwargs):
    """Trains the checkpoints of run ``csl_field`` without scoring any frame.

    Registers the run (state ``"trained"``) and returns the folder of its
    current version; :func:`~fiftyone_csl.plugin.rescore.replay_checkpoints`
    scores frames with it later, on this or another view. Arguments as in
    :func:`compute_csl`, but for the scoring ones (``threshold``,
    ``peer_scores``, ``precision``, ``store_embeddings_field``).
    """
    return _audit(samples, label_field, csl_field, embeddings_field, False, "train_checkpoints", **kwargs)


SCORING_OPTIONS = ("threshold", "peer_scores", "precision", "store_embeddings_field", "simulation", "target_precision")


@dataclass
class AuditPlan:
    """A checked audit or training call: its training plan and the scoring
    options, decided before any work."""

    training: TrainingPlan
    score: bool
    threshold: object  # "auto" or a float
    threshold_value: float
    peer_scores: tuple
    precision: str
    simulation: bool
    target_precision: float
    store_embeddings_field: str | None
    cache_dir: str | None


def plan_audit(
    samples,
    label_field,
    csl_field,
    embeddings_field,
    score: bool,
    function: str,
    *,
    classes: list | None = None,
    backbone: str = "efficientnet-lite0",
    backbone_weights: str | None = None,
    stride: int = 1,
    fps: float | None = None,
    backbone_runtime: str = "auto",
    sparse_labels: bool = False,
    threshold="auto",
    peer_scores: list | tuple = (),
    device: str = "auto",
    precision: str = "auto",
    simulation: bool = False,
    target_precision: float = 0.85,
    store_embeddings_field: str | None = None,
    run_dir: str | None = None,
    cache_dir: str | None = None,
    overwrite: bool = False,
    **train_kwargs,
) -> AuditPlan:
    """Every check of :func:`compute_csl` (``score``) or
    :func:`train_checkpoints`, with their defaults; raises :class:`CSLError`."""
    if not score:
        given = dict(threshold=threshold, peer_scores=peer_scores, precision=precision,
                     store_embeddings_field=store_embeddings_field, simulation=simulation,
                     target_precision=target_precision)  # fmt: skip
        defaults = dict(threshold="auto", peer_scores=(), precision="auto", store_embeddings_field=None,
                        simulation=False, target_precision=0.85)  # fmt: skip
        unknown = sorted(k for k in SCORING_OPTIONS if given[k] != defaults[k])
        if unknown:
            raise CSLError(f"{function}() scores nothing; it takes no {unknown}")
    peer_scores = check_peer_scores(peer_scores)
    threshold = check_threshold(threshold)
    check_choice("precision", precision, PRECISIONS)
    check_simulation(simulation, target_precision)
    outputs = [*peer_scores, ERROR_PROB] if simulation else peer_scores
    spec = FeatureSpec.make(embeddings_field, backbone, backbone_weights, stride, fps, backbone_runtime, sparse_labels)
    plan = plan_training(
        samples, label_field, csl_field, spec, classes, train_kwargs, outputs, overwrite, run_dir, device,
        function, store_embeddings_field,
    )  # fmt: skip
    autocast_context(plan.device, precision)  # an impossible precision fails before any work
    threshold_value = fcflags.resolve_threshold(threshold, len(plan.prepared.classes))
    return AuditPlan(plan, score, threshold, threshold_value, tuple(peer_scores), precision, simulation,
                     target_precision, store_embeddings_field, cache_dir)  # fmt: skip


def _audit(samples, label_field, csl_field, embeddings_field, score: bool, function: str, progress=None, **kwargs):
    """Training and, with ``score``, replay and scores: the body of
    :func:`compute_csl` and :func:`train_checkpoints`."""
    started = time.time()
    dataset = samples._dataset
    audit = plan_audit(samples, label_field, csl_field, embeddings_field, score, function, **kwargs)
    plan, threshold, threshold_value = audit.training, audit.threshold, audit.threshold_value
    dataset_id = str(dataset._doc.id)
    weights = dict(PROGRESS_WEIGHTS) if score else {"features": 4, "train": 4, "write": 0.2}
    if audit.simulation:
        weights.update({"simulation train": 4, "simulation replay": 1.5})
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
            raise
    if not score:
        return version
    results = CSLResults(csl_field, version, plan.prepared.classes, threshold_value, videos, plan.warnings)
    results.simulation = manifest.simulation
    return results


def commit_audit(dataset, audit: AuditPlan, staging: str, manifest: Manifest, videos: dict, threshold_value) -> str:
    """Makes ``staging`` the run's new version and writes its outputs (and a
    requested embeddings field); returns the version's folder."""
    plan = audit.training

    def store_embeddings():
        if audit.store_embeddings_field is not None:
            fcf.write_embeddings(dataset, audit.store_embeddings_field, plan.prepared.sequences)

    return writeback.commit(
        dataset, plan.store, staging, manifest, plan.names, "scored" if audit.score else "trained",
        threshold_value if audit.score else "auto", list(videos), replace=True, videos=videos,
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
        import fiftyone.core.fields as fof

        if not isinstance(schema[embeddings_field], (fof.VectorField, fof.ArrayField, fof.ListField)):
            raise CSLError(f"frames.{embeddings_field} is not a vector field; it is never replaced")
        from .record import list_csl_runs

        for key in list_csl_runs(dataset):
            if f"frames.{embeddings_field}" in RunNames.of(get_run_config(dataset, key)).paths():
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
        fcf.write_embeddings(dataset, embeddings_field, sequences)
    return int(sum(len(s.frame_numbers) for s in sequences))

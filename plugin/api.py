"""The public SDK: every function a user calls as ``fcsl.<name>``.

This module is the facade (as ``fiftyone.brain``'s ``__init__``): the audit's
entry points are defined here with their whole signature and documentation,
and hand over to the layers below in a few lines; the other public functions
are defined, and documented, in the layer that owns them and gathered here.
The root package re-exports :data:`__all__`.

Layers, lowest first (each imports only from those before it):
``models`` -> ``plugin.core`` (arrays and torch) -> ``plugin.runs`` (a run on
a dataset and on disk; every dataset write) -> ``plugin.audit`` (the steps
that read FiftyOne collections) -> ``plugin.review`` -> this module ->
``operators``.
"""

from .audit import fanout, steps
from .audit.delegated import delegated_runs
from .audit.evaluation import evaluate_detection
from .audit.fanout import audit_graph, cancel_graph, queue_audit
from .audit.inject import inject_errors
from .audit.options import FeatureSpec
from .audit.rescore import changed_videos, flag_errors, refresh_scores, replay_checkpoints
from .audit.shards import queue_replay_shards
from .audit.steps import compute_features
from .core.arrays import compute_csl_arrays
from .core.checks import ScoringOptions
from .core.errors import CSLError
from .core.results import CSLResults
from .core.train import TrainConfig
from .review.decisions import list_decisions, review_segment, review_segments, undo_review
from .review.labelling import LabellingRound, label_actively
from .review.queue import select_frames_for_review
from .review.reports import export_suspects, run_summary
from .review.segments import suspect_segments, suspect_table
from .runs.access import copy_csl_run, delete_csl_run, load_csl_results
from .runs.record import list_csl_runs

_FEATURES, _TRAIN, _SCORING = FeatureSpec(), TrainConfig(), ScoringOptions()


def compute_csl(
    samples,
    label_field: str,
    csl_field: str = "csl",
    embeddings_field: str | None = None,
    *,
    classes: list | None = None,
    backbone: str = _FEATURES.backbone,
    backbone_weights: str | None = _FEATURES.backbone_weights,
    backbone_runtime: str = _FEATURES.backbone_runtime,
    stride: int = _FEATURES.stride,
    fps: float | None = _FEATURES.fps,
    sparse_labels: bool = _FEATURES.sparse_labels,
    model: str = _TRAIN.model,
    epochs: int = _TRAIN.epochs,
    folds: int = _TRAIN.folds,
    cross_fit: bool = _TRAIN.cross_fit,
    seed: int = _TRAIN.seed,
    mgw_sigma: float = _TRAIN.mgw_sigma,
    rounds: int | str = _TRAIN.rounds,
    threshold=_SCORING.threshold,
    peer_scores: list | tuple = _SCORING.peer_scores,
    simulation: bool = _SCORING.simulation,
    target_precision: float = _SCORING.target_precision,
    precision: str = _SCORING.precision,
    device: str = "auto",
    store_embeddings_field: str | None = None,
    run_dir: str | None = None,
    cache_dir: str | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    delegation_target: str | None = None,
    progress=None,
    **train_kwargs,
) -> CSLResults:
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
        rounds ("auto"): ``2`` trains the folds a second time with the
            frames the first round's suspects would change left out of the
            loss, and the decoder (suspects, ``_corrected``, ``_wrong_prob``)
            reads the second round's models; CSL and the peer scores stay the
            first round's. ``"auto"`` trains it when the first round's
            models fit the labels they keep (out-of-fold accuracy >= 0.9:
            features that tell the phases apart), ``1`` never. It doubles
            the training where it runs; ``results.second_round`` says whether
            it ran and why. One round over several ``workers``
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
            (:func:`queue_audit`: its dict of ``graph_id`` and queued
            operations)
        delegation_target (None): with ``workers``, the orchestrator to queue for
        progress (None): FiftyOne-style: None/bool for console bars, or a
            callable receiving an object with ``progress`` in [0, 1] and
            ``label``
        **kwargs: training settings of
            :class:`~fiftyone_csl.plugin.core.train.TrainConfig` (``lr``,
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
    options = dict(
        classes=classes, backbone=backbone, backbone_weights=backbone_weights, backbone_runtime=backbone_runtime,
        stride=stride, fps=fps, sparse_labels=sparse_labels, model=model, epochs=epochs, folds=folds,
        cross_fit=cross_fit, seed=seed, mgw_sigma=mgw_sigma, rounds=rounds, threshold=threshold,
        peer_scores=peer_scores, simulation=simulation, target_precision=target_precision, precision=precision,
        device=device, store_embeddings_field=store_embeddings_field, run_dir=run_dir, cache_dir=cache_dir,
        overwrite=overwrite,
        **train_kwargs,
    )  # fmt: skip
    if workers is not None:
        return fanout.queue_audit(
            samples, label_field, csl_field, embeddings_field, workers=workers, delegation_target=delegation_target,
            progress=progress, **options,
        )  # fmt: skip
    if delegation_target is not None:
        raise CSLError("delegation_target is for an audit over several workers: give workers too")
    return steps.run_audit(samples, label_field, csl_field, embeddings_field, True, "compute_csl", progress, **options)


def train_checkpoints(
    samples,
    label_field: str,
    csl_field: str = "csl",
    embeddings_field: str | None = None,
    *,
    classes: list | None = None,
    backbone: str = _FEATURES.backbone,
    backbone_weights: str | None = _FEATURES.backbone_weights,
    backbone_runtime: str = _FEATURES.backbone_runtime,
    stride: int = _FEATURES.stride,
    fps: float | None = _FEATURES.fps,
    sparse_labels: bool = _FEATURES.sparse_labels,
    model: str = _TRAIN.model,
    epochs: int = _TRAIN.epochs,
    folds: int = _TRAIN.folds,
    cross_fit: bool = _TRAIN.cross_fit,
    seed: int = _TRAIN.seed,
    mgw_sigma: float = _TRAIN.mgw_sigma,
    device: str = "auto",
    run_dir: str | None = None,
    cache_dir: str | None = None,
    overwrite: bool = False,
    progress=None,
    **train_kwargs,
) -> str:
    """Trains the checkpoints of run ``csl_field`` without scoring any frame.

    Registers the run (state ``"trained"``) and returns the folder of its
    current version; :func:`replay_checkpoints` scores frames with it later,
    on this or another view. Arguments as in :func:`compute_csl`; the
    scoring ones (``threshold``, ``peer_scores``, ``precision``,
    ``simulation``, ``store_embeddings_field``) belong to the replay.
    """
    options = dict(
        classes=classes, backbone=backbone, backbone_weights=backbone_weights, backbone_runtime=backbone_runtime,
        stride=stride, fps=fps, sparse_labels=sparse_labels, model=model, epochs=epochs, folds=folds,
        cross_fit=cross_fit, seed=seed, mgw_sigma=mgw_sigma, device=device, run_dir=run_dir, cache_dir=cache_dir,
        overwrite=overwrite, **train_kwargs,
    )  # fmt: skip
    return steps.run_audit(
        samples, label_field, csl_field, embeddings_field, False, "train_checkpoints", progress, **options
    )


__all__ = [
    "CSLError",
    "CSLResults",
    "LabellingRound",
    "audit_graph",
    "cancel_graph",
    "changed_videos",
    "compute_csl",
    "compute_csl_arrays",
    "compute_features",
    "copy_csl_run",
    "delegated_runs",
    "delete_csl_run",
    "evaluate_detection",
    "export_suspects",
    "flag_errors",
    "inject_errors",
    "label_actively",
    "list_csl_runs",
    "list_decisions",
    "load_csl_results",
    "queue_audit",
    "queue_replay_shards",
    "refresh_scores",
    "replay_checkpoints",
    "review_segment",
    "review_segments",
    "run_summary",
    "select_frames_for_review",
    "suspect_segments",
    "suspect_table",
    "train_checkpoints",
    "undo_review",
]

"""fiftyone-csl: find wrong frame labels in annotated videos from training
dynamics (Cumulative Sample Loss).

This directory is both a FiftyOne plugin (see ``fiftyone.yml``; FiftyOne calls
:func:`register`) and the Python package ``fiftyone_csl``::

    import fiftyone_csl as fcsl

    results = fcsl.compute_csl(dataset, "phase")
    print(results.top_segments(5))
"""

# pytest collects the repository root as a package when it runs the tests
# below it; if the checkout's folder name is not an identifier it imports this
# file with no parent package, and the SDK (imported as fiftyone_csl by the
# tests) is not needed there.
if __package__:
    from .plugin.core import (
        CSLResults,
        compute_csl_arrays,
        compute_features,
        delete_csl_run,
        evaluate_detection,
        flag_errors,
        list_csl_runs,
        load_csl_results,
        replay_checkpoints,
        run_summary,
        train_checkpoints,
    )
    from .plugin.core import compute_csl as _compute_csl
    from .plugin.corrupt import inject_errors
    from .plugin.review import select_frames_for_review
    from .plugin.utils import CSLError

__version__ = "0.1.0"


def compute_csl(
    samples,
    label_field,
    csl_field="csl",
    embeddings_field=None,
    **kwargs,
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
        threshold ("auto"): CSL above which a frame is flagged; ``"auto"``
            is ``ln(number of classes)``: on average over training, the given
            label got less probability than a uniform guess would give it
        peer_scores (()): extra scores to write, from ``"last_loss"`` and
            ``"aum"``
        device ("auto"): ``"auto"`` uses CUDA when available, else the CPU
        precision ("auto"): the replay's arithmetic: ``"auto"`` is float16
            autocast on CUDA and float32 on the CPU; ``"fp32"``, ``"fp16"``
            (CUDA only) or ``"bf16"``
        seed (51): seeds folds, initialisation and training order; identical
            inputs give identical results on the CPU
        store_embeddings_field (None): also store the backbone features in
            this frame-level field
        run_dir (None): where checkpoints and trajectories go; default
            ``~/.fiftyone/csl/runs/<dataset>/<csl_field>`` (or under
            ``$FIFTYONE_CSL_DIR``)
        cache_dir (None): feature cache; default ``<base>/features``
        overwrite (False): replace an existing run or output field of the
            same name
        progress (None): FiftyOne-style: None/bool for console bars, or a
            callable receiving an object with ``progress`` in [0, 1] and
            ``label``
        **kwargs: training settings of
            :class:`fiftyone_csl.plugin.train.TrainConfig` (``lr``,
            ``batch_size``, ``max_frames``, ``model_kwargs``,
            ``half_checkpoints`` to store checkpoints in float16, ...)

    Returns:
        a :class:`CSLResults`

    Raises:
        CSLError: invalid input; nothing was written
    """
    return _compute_csl(samples, label_field, csl_field, embeddings_field, **kwargs)


def queue_replay_shards(samples, csl_field="csl", num_shards=2, **kwargs):
    """Queues the replay of a trained run as ``num_shards`` delegated
    operations over groups of videos, for workers to run side by side.

    See :func:`fiftyone_csl.operators.replay.queue_replay_shards`.
    """
    from .operators.replay import queue_replay_shards as _queue

    return _queue(samples, csl_field, num_shards, **kwargs)


def register(p):
    from .operators import register_operators

    register_operators(p)


__all__ = [
    "CSLError",
    "CSLResults",
    "compute_csl",
    "compute_csl_arrays",
    "compute_features",
    "delete_csl_run",
    "evaluate_detection",
    "flag_errors",
    "inject_errors",
    "list_csl_runs",
    "queue_replay_shards",
    "select_frames_for_review",
    "load_csl_results",
    "register",
    "replay_checkpoints",
    "run_summary",
    "train_checkpoints",
]

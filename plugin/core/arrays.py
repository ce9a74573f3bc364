"""The audit over plain sequences, with no FiftyOne: the array entry point."""

import os
import shutil
import tempfile

import numpy as np

from . import flags as fcflags
from . import sequences as fcseq
from . import train as fctrain
from .checks import ScoringOptions, check_choice, check_simulation, check_threshold, make_train_config
from .errors import CSLError
from .manifest import Manifest
from .replay import PRECISIONS, autocast_context
from .results import CSLResults
from .rounds import WEIGHTS as SECOND_ROUND_WEIGHTS
from .rounds import second_round
from .simulation import simulate_and_flag
from .stages import check_folds, check_peer_scores, replay_and_score, train_into
from .utils import StagedProgress, resolve_device


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
    target_precision: float = ScoringOptions.target_precision,
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
        simulation (False), target_precision (:data:`~fiftyone_csl.plugin.core.checks.TARGET_PRECISION`): as in
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
    if config.rounds != 1:
        weights.update(SECOND_ROUND_WEIGHTS)
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
        videos = second_round(
            run_dir, manifest, sequences, videos, config, torch_device, precision, progress, threshold_value,
            peer_scores,
        )  # fmt: skip
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
    results.second_round = manifest.second_round_report()
    return results

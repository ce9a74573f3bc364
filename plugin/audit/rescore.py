"""Scoring with a trained run's checkpoints: replay (whole, or in shards
that run side by side), re-scoring the videos whose labels changed, and
re-flagging at a new threshold."""

import dataclasses
import shutil

import numpy as np

from ..core import flags as fcflags
from ..core import sequences as fcseq
from ..core.checks import check_choice, check_device, check_int, check_threshold
from ..core.errors import CSLError
from ..core.replay import PRECISIONS, autocast_context
from ..core.results import CSLResults
from ..core.stages import ERROR_PROB, check_peer_scores, replay_and_score, trajectory_bytes
from ..core.utils import StagedProgress, balanced_groups, resolve_device
from ..runs import fields as fcfields
from ..runs import labels as fclabels
from ..runs import writeback
from ..runs.access import load_videos
from ..runs.locks import dataset_lock, run_in_progress
from ..runs.record import RunNames, get_run_config, load_manifest, unowned_outputs
from ..runs.store import RunStore
from .options import FeatureSpec
from .prepare import attach_features, check_collection, labelled_fractions, prepare


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
    _loaded=None,
) -> CSLResults:
    """Replays the checkpoints of run ``csl_field`` over the videos of
    ``samples`` and writes their scores and flags.

    Several calls may run at once on disjoint groups of videos (replay
    shards, possibly on several machines sharing the database and the run
    folder): each builds its trajectories beside the run and merges them
    into a new version of it under the dataset lock.

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
        device, precision, cache_dir, progress: as in :func:`fiftyone_csl.compute_csl`
        _loaded: ``(run_dir, sha256, manifest)`` a caller verified just
            before (a refresh): ``load_manifest``'s ``known``
    """
    check_collection(samples)
    dataset = samples._dataset
    writeback.ensure_consistent(dataset, csl_field)
    config = get_run_config(samples, csl_field)
    manifest = load_manifest(dataset, config, known=_loaded)
    holder = run_in_progress(dataset, csl_field)
    if holder is not None:
        raise CSLError(f"run '{csl_field}' is being trained ({holder['host']} pid {holder['pid']}); replay it after")
    # the simulation's error probabilities belong to the labels it saw: a replay drops them
    peer_scores = check_peer_scores(
        [p for p in config.peer_scores if p != ERROR_PROB] if peer_scores is None else peer_scores
    )
    threshold = check_threshold(config.threshold if threshold is None else threshold)
    check_choice("precision", precision, PRECISIONS)
    torch_device = resolve_device(check_device(device))
    autocast_context(torch_device, precision)
    label_field = label_field or manifest.label_field
    names = dataclasses.replace(RunNames.of(config), peer_scores=tuple(peer_scores))
    owned = RunNames.of(config)
    label_path = fcfields.label_path(dataset, label_field)
    if label_path in names.paths():
        raise CSLError(f"label_field {label_path} is one of run '{csl_field}''s output fields")
    taken = unowned_outputs(dataset, names, owned)
    if taken:
        raise CSLError(f"run '{csl_field}' would write into fields it does not own: {taken}")
    threshold_value = fcflags.resolve_threshold(threshold, len(manifest.classes))
    prepared = prepare(samples, label_field, manifest.classes, FeatureSpec.from_dict(manifest.features), torch_device)
    if prepared.classes != manifest.classes:
        raise CSLError("the run's class list changed")
    if prepared.in_dim != manifest.in_dim:
        raise CSLError(f"features have dimension {prepared.in_dim}; the run's models expect {manifest.in_dim}")
    store, loaded = RunStore.of(config), (config.run_dir, config.manifest_sha256, manifest)
    rounds = 2 if manifest.second_round_view() else 1
    need = trajectory_bytes(prepared.sequences, manifest.config["epochs"], len(manifest.classes), rounds)
    store.check_space({"trajectories": need, "total": need})
    progress = StagedProgress(progress, {"features": 4, "replay": 1.5, "write": 0.5})
    with dataset_lock(dataset):  # the version cannot be replaced while its checkpoints are linked
        # the current version under the lock: another replay may have committed since the checks
        config = get_run_config(samples, csl_field)
        manifest = load_manifest(dataset, config, known=loaded)

        def shared(rel):  # what the replay keeps of the version: not the per-video files it writes again
            return not rel.startswith(("trajectories/", "error_probs/"))

        replay_manifest = dataclasses.replace(
            manifest, trajectories={}, error_probs={}, simulation=None, label_runs=dict(manifest.label_runs),
            label_fingerprints=dict(manifest.label_fingerprints),
            files={k: v for k, v in manifest.files.items() if shared(k)},
        )  # fmt: skip
        if prepared.spec.sparse_labels:  # the labels may have grown since the training
            replay_manifest.labelled_fraction = {**manifest.labelled_fraction, **labelled_fractions(prepared.sequences)}
        staging = store.staging()
        store.inherit(staging, config.run_dir, manifest, keep=shared)
    try:
        attach_features(prepared, torch_device, cache_dir, progress)
        videos = replay_and_score(
            staging, replay_manifest, prepared.sequences, torch_device, precision, progress, threshold_value,
            peer_scores,
        )  # fmt: skip
        with progress.stage("write", 1, "steps"):
            version = writeback.commit(
                dataset, store, staging, replay_manifest, names, state="scored", threshold=threshold_value,
                video_ids=list(videos), replace=False, videos=videos,
                previous=(config.run_dir, config.manifest_sha256, manifest),
            )  # fmt: skip
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        store.raise_if_full(e)
        raise
    return CSLResults(csl_field, version, prepared.classes, threshold_value, videos)


def flag_errors(samples, csl_field: str = "csl", threshold="auto") -> CSLResults:
    """Re-flags the scored videos of ``samples`` with a new ``threshold``:
    rewrites ``<csl_field>_errors`` and the saved views. No model runs.

    ``"auto"`` is ``ln C``, or for a run with a simulation the threshold
    aimed at its target precision."""
    dataset = samples._dataset
    threshold = check_threshold(threshold)
    config = get_run_config(samples, csl_field)
    if config.state != "scored":
        raise CSLError(f"run '{csl_field}' has no scores yet: replay its checkpoints first")
    threshold_value = fcflags.resolve_threshold(threshold, len(config.classes))
    report = load_manifest(dataset, config).simulation
    if threshold == "auto" and report:  # the threshold aimed at the run's target precision
        threshold_value = float(report["aimed_threshold"])
    videos = load_videos(samples, csl_field, threshold_value)
    if not videos:
        raise CSLError(f"none of these videos has scores in run '{csl_field}'")
    writeback.commit(
        dataset, RunStore.of(config), None, None, RunNames.of(config), state="scored", threshold=threshold_value,
        video_ids=list(videos), replace=False, videos=videos, flags_only=True,
    )  # fmt: skip
    return CSLResults(csl_field, config.run_dir, config.classes, threshold_value, videos)


def replay_shards(samples, num_shards: int) -> list:
    """Splits the videos of ``samples`` into at most ``num_shards`` groups of
    about equal frame counts, for replay shards that run side by side.

    Returns lists of sample ids; every video is in exactly one group.
    """
    from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

    num_shards = check_int("num_shards", num_shards, 1)
    ids = samples.values("id")
    if not ids:
        raise CSLError("no videos to replay")
    frames = samples.values(F("frames").length())
    return balanced_groups(dict(zip(ids, frames)), num_shards)


def changed_videos(samples, csl_field: str = "csl", cached: bool = False) -> list:
    """Ids of the videos of ``samples`` whose labels in the run's label field
    differ from the labels they were scored against, or that the run has not
    scored. A video is compared by the digest of its labelled frames the run
    kept (any label changed, added or removed, also between scored frames):
    its trajectory is not opened. Runs of earlier versions, which kept no
    digest, compare the labels of the scored frames with the trajectory's.

    ``cached=True`` (for a long-lived process that asks on every click, as
    the App's panel does) reuses the run's manifest this process verified
    while the run record names the same version, instead of parsing it again.
    """
    return _changed(samples, csl_field, cached)[0]


def _changed(samples, csl_field: str, cached: bool = False) -> tuple:
    """``(changed, config, manifest)``: :func:`changed_videos` and the run
    version it compared against."""
    dataset = samples._dataset
    writeback.ensure_consistent(dataset, csl_field)
    config = get_run_config(samples, csl_field)
    manifest = load_manifest(dataset, config, cached=cached)
    index = {c: i for i, c in enumerate(manifest.classes)}
    changed = []
    for sid, _, numbers, names in fclabels.read_raw_labels(samples, manifest.label_field):
        relpath = manifest.trajectories.get(sid)
        if relpath is None:
            if len(numbers):
                changed.append(sid)
            continue
        kept = manifest.label_fingerprints.get(sid)
        if kept is not None:  # no trajectory to open: the digest of the labels it was scored against
            if fcseq.label_fingerprint(numbers, [index.get(n, -1) for n in names]) != kept:
                changed.append(sid)
            continue
        with np.load(manifest.verified_path(config.run_dir, relpath)) as data:
            scored, labels = data["frame_numbers"], data["labels"]
        now = dict(zip(numbers.tolist(), names))
        if any(index.get(now.get(int(f)), -1) != int(y) for f, y in zip(scored, labels)):
            changed.append(sid)
    return changed, config, manifest


def refresh_scores(samples, csl_field: str = "csl", device: str = "auto", precision: str = "auto",
                   cache_dir: str | None = None, progress=None) -> CSLResults:  # fmt: skip
    """Scores again, against their current labels, the videos of ``samples``
    whose labels changed since run ``csl_field`` scored them (after a
    reviewer fixed them), with the run's existing checkpoints: no training.
    Flags and views are rebuilt; other videos keep their scores.

    Returns the results of the videos scored again (none if nothing changed).
    Retraining (:func:`~fiftyone_csl.plugin.steps.compute_csl` with
    ``overwrite=True``) is worth it once many labels changed: the checkpoints
    still carry what they learnt from the old labels.
    """
    check_collection(samples)
    changed, config, manifest = _changed(samples, csl_field)
    if not changed:
        threshold = fcflags.resolve_threshold(config.threshold, len(config.classes))
        return CSLResults(csl_field, config.run_dir, config.classes, threshold, {})
    return replay_checkpoints(
        samples.select(changed), csl_field, device=device, precision=precision, cache_dir=cache_dir,
        progress=progress, _loaded=(config.run_dir, config.manifest_sha256, manifest),
    )  # fmt: skip

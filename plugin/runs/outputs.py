"""What a commit writes for its videos: frame scores and their per-video
summaries, flags, the mistakenness peer, predictions of a sparse run, and
the run's stored summary. Called by :mod:`~fiftyone_csl.plugin.runs.writeback`
under its lock."""

import os

import numpy as np

from ..core.manifest import Manifest
from . import fields as fcfields
from . import labels as fclabels
from . import peers as fcpeers
from .record import RunNames


def add_mistakenness(samples, names: RunNames, label_field, videos: dict, classes: list) -> None:
    """fiftyone-brain writes its own field; its values join the results."""
    if "mistakenness" not in names.peer_scores:
        return
    values = fcpeers.brain_mistakenness(samples, names, label_field, videos, classes)
    for sid, video in videos.items():
        video.scores["mistakenness"] = values[sid]


def write_scores(samples, names: RunNames, label_field: str, videos: dict, classes: list) -> None:
    """Scores on every labelled frame (frames between sampled ones take the
    nearest sampled value), per-video summaries and flags."""
    dataset = samples._dataset
    raw = fclabels.read_raw_labels(samples, label_field)
    labelled = {sid: fns for sid, _, fns, _ in raw}
    for name in ["csl", *[p for p in names.peer_scores if p != "mistakenness"]]:
        per_sample = {}
        for sid, v in videos.items():
            if name not in v.scores or not len(v.frame_numbers):  # error_prob the simulation did not see; no label
                continue
            numbers = labelled.get(sid)
            if numbers is None or not len(numbers):
                numbers = v.frame_numbers
            per_sample[sid] = (numbers, fcfields.spread_to_labelled_frames(v.frame_numbers, v.scores[name], numbers))
        if per_sample:
            fcfields.write_frame_scores(dataset, names.score_field(name), per_sample)
        if name == "csl":
            fcfields.write_sample_values(
                dataset, names.max_field, {s: float(x.max()) for s, (_, x) in per_sample.items()}
            )
            fcfields.write_sample_values(
                dataset, names.mean_field, {s: float(x.mean()) for s, (_, x) in per_sample.items()}
            )
    write_flags(dataset, names, videos, classes)
    if names.sparse:
        write_predictions(dataset, names, videos, classes)
    if names.decoded:
        write_decoded(dataset, names, videos, classes, labelled)


def write_flags(dataset, names: RunNames, videos: dict, classes: list) -> None:
    fcfields.write_sample_values(
        dataset,
        names.errors_field,
        {sid: fcfields.suspect_detections(v.segments, v.frame_numbers, classes, v.labels) for sid, v in videos.items()},
    )


def write_decoded(dataset, names: RunNames, videos: dict, classes: list, labelled: dict) -> None:
    """``frames.<key>_corrected`` (the decoder's label, with its posterior
    probability as confidence) and ``frames.<key>_wrong_prob`` (the posterior
    probability that the given label is wrong) on every labelled frame
    (frames between scored ones take the nearest scored frame's)."""
    import fiftyone as fo  # lazy: importing FiftyOne is slow

    corrected, wrong = {}, {}
    for sid, v in videos.items():
        if v.decoded is None or not len(v.frame_numbers):
            continue
        numbers = labelled.get(sid)
        if numbers is None or not len(numbers):
            numbers = v.frame_numbers
        decoded, confidence, probability = (
            fcfields.spread_to_labelled_frames(v.frame_numbers, np.asarray(x), numbers)
            for x in (v.decoded, v.decoded_confidence, v.wrong_prob)
        )
        corrected[sid] = {
            int(f): fo.Classification(label=classes[int(c)], confidence=float(q))
            for f, c, q in zip(numbers, decoded, confidence)
        }
        wrong[sid] = {int(f): float(p) for f, p in zip(numbers, probability)}
    if not corrected:
        return
    schema = dataset.get_frame_field_schema() or {}
    if names.corrected_field not in schema:  # declared, not inferred
        dataset.add_frame_field(names.corrected_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    if names.wrong_prob_field not in schema:
        dataset.add_frame_field(names.wrong_prob_field, fo.FloatField)
    dataset.set_values(f"frames.{names.corrected_field}", corrected, key_field="id")
    dataset.set_values(f"frames.{names.wrong_prob_field}", wrong, key_field="id")


def stored_summary(dataset, run_key) -> dict:
    try:
        results = dataset.load_run_results(run_key, cache=False)
    except Exception:  # a new run has no results yet
        return {}
    return {} if results is None else {k: getattr(results, k, None) for k in ("evaluation",)}


def save_summary(dataset, run_key, manifest: Manifest, run: dict, evaluation=None) -> None:
    """Stores the run's counts, read from its files and fields."""
    scored = dataset.exists(f"{run_key}_max")
    segments = scored.count(f"{run_key}_errors.detections") if run["state"] == "scored" else 0
    counts = dict(
        labelled_fraction=dict(manifest.labelled_fraction) or None,
        num_videos=len(manifest.trajectories),
        num_scored_frames=int(sum(_frames_of(manifest, run["run_dir"], sid) for sid in manifest.trajectories)),
        num_segments=int(segments),
        warnings=list(run.get("warnings") or []),
    )
    dataset.save_run_results(
        run_key, dataset.init_run_results(run_key, evaluation=evaluation, **counts), overwrite=True
    )


def _frames_of(manifest, run_dir, sample_id) -> int:
    """The labelled frames a video was scored on: the length of the
    run-length code the manifest keeps of its labels (no file opened, so a
    refresh of one video does not read every trajectory); runs of earlier
    versions, which kept none, from the trajectory."""
    runs = manifest.label_runs.get(sample_id)
    if runs is not None:
        return sum(int(length) for _, length in runs)
    with np.load(os.path.join(run_dir, manifest.trajectories[sample_id])) as data:
        return int(data["labelled"].sum()) if "labelled" in data.files else len(data["frame_numbers"])


def write_predictions(dataset, names, videos: dict, classes: list) -> None:
    """Sparse labels: ``frames.<key>_predictions`` (class and confidence of
    every sampled frame) and ``frames.<key>_propagated`` (the same on the
    frames without a label, the labels the model proposes for them). A frame
    FiftyOne holds no document for gets one."""
    import fiftyone as fo  # lazy: importing FiftyOne is slow

    predictions, propagated = {}, {}
    for sid, v in videos.items():
        p = v.predictions
        if p is None:
            continue
        made = [fo.Classification(label=classes[int(c)], confidence=float(q)) for c, q in zip(p.labels, p.confidence)]
        predictions[sid] = {int(f): label for f, label in zip(p.frame_numbers, made)}
        # None on the labelled frames: a frame labelled since the last round keeps no stale proposal
        propagated[sid] = {
            int(f): None if known else label.copy() for f, label, known in zip(p.frame_numbers, made, p.labelled)
        }
    if predictions:
        schema = dataset.get_frame_field_schema() or {}
        for field in (names.predictions_field, names.propagated_field):
            # declared, not inferred: every frame labelled leaves no proposal to infer a type from
            if field not in schema:
                dataset.add_frame_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
        dataset.set_values(f"frames.{names.predictions_field}", predictions, key_field="id")
        dataset.set_values(f"frames.{names.propagated_field}", propagated, key_field="id")

"""Evaluation of a run against known errors (e.g. injected ones)."""

import numpy as np

from ..core import flags as fcflags
from ..core import metrics
from ..core import scores as fcscores
from ..core.errors import CSLError
from ..core.results import CSLResults
from ..core.simulation import estimated_precision
from ..core.stages import ERROR_PROB, check_peer_scores
from ..runs.access import load_videos
from ..runs.locks import dataset_lock
from ..runs.outputs import save_summary
from ..runs.record import get_run_config, load_manifest


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
            labels; if given, the suggested labels and boundaries and the
            segmenter (last checkpoint's argmax) are scored too

    Returns:
        a dict with ``segments``, the headline: the run's suspect segments
        against the error events (event recall, flag precision, type
        accuracy, suggested-label accuracy and boundary error in frames,
        overall and per kind; see
        :func:`fiftyone_csl.plugin.metrics.segment_report`; for a run with a
        simulation also its ``estimated_precision``, to compare with the
        measured ``flag_precision``); ``scores``: per
        score, frame AUROC/AP for all errors and
        for each error type, and the EgoPER-style segment EDA (best over a
        threshold sweep); ``eda``: CSL's segment EDA at the run's threshold;
        ``type_accuracy``: how often a flagged segment's error type matches
        the injected one; and ``segmenter`` (F1@{10,25,50}, Edit, accuracy)
        when ``clean_field`` is given
    """

    dataset = samples._dataset
    config = get_run_config(samples, csl_field)
    frame_schema = dataset.get_frame_field_schema() or {}
    for field in (error_field, clean_field):
        if field is not None and field not in frame_schema:
            raise CSLError(f"'frames.{field}' does not exist")
    requested = config.peer_scores if scores is None else scores
    names = ["csl", *check_peer_scores([p for p in requested if p != ERROR_PROB])]
    videos = load_videos(samples, csl_field)
    if ERROR_PROB in requested and videos and all(ERROR_PROB in v.scores for v in videos.values()):
        names.append(ERROR_PROB)
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
    clean_by_video = {sid: None for sid in videos}
    if clean_field is not None:
        index = {c: i for i, c in enumerate(config.classes)}
        ids, fns, clean = samples.values(["id", "frames.frame_number", f"frames.{clean_field}.label"])
        lookup = {sid: dict(zip(fn, lab)) for sid, fn, lab in zip(ids, fns, clean)}
        pairs = []
        for sid, v in videos.items():
            clean_by_video[sid] = np.array([lookup[sid].get(int(f)) for f in v.frame_numbers], dtype=object)
            truth = [index.get(label, -1) for label in clean_by_video[sid]]
            pairs.append((v.trajectory.final_probs.argmax(1), np.array(truth)))
        report["segmenter"] = metrics.segmentation_report(pairs)
    report = {
        "segments": metrics.segment_report(
            (v.segments, types_by_video[sid], clean_by_video[sid], v.frame_numbers) for sid, v in videos.items()
        ),
        **report,
    }
    simulated = load_manifest(dataset, config).simulation
    if simulated:  # what the simulation expected, beside what the ground truth measures
        report["segments"]["estimated_precision"] = estimated_precision(simulated, threshold)
    with dataset_lock(dataset):  # the counts have not changed
        config = get_run_config(samples, csl_field)
        run = dict(state=config.state, run_dir=config.run_dir, warnings=getattr(config, "warnings", None))
        save_summary(dataset, csl_field, load_manifest(dataset, config), run, evaluation=report)
    return report

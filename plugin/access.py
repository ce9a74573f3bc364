"""Reading, exporting, copying and deleting registered runs.

Everything here goes through the run record (:mod:`~fiftyone_csl.plugin.record`):
files are read only from the run's own, verified version, and deleting
removes exactly what the run owns.
"""

import os
import shutil

from . import fields as fcfields
from . import flags as fcflags
from . import peers as fcpeers
from . import views as fcviews
from . import writeback
from .locks import dataset_lock, run_in_progress
from .pipeline import CSLResults, score_from_files
from .record import Manifest, RunNames, RunStore, get_run_config, list_csl_runs, load_manifest, owned_by
from .simulation import estimated_precision
from .utils import CSLError

__all__ = ["list_csl_runs", "get_run_config"]


def load_videos(samples, csl_field: str, threshold=None) -> dict:
    """The scored videos of ``samples`` in run ``csl_field``: ``{sample_id:
    VideoScores}``, scored at the run's threshold unless one is given."""
    dataset = samples._dataset
    writeback.ensure_consistent(dataset, csl_field)
    config = get_run_config(dataset, csl_field)
    manifest = load_manifest(dataset, config)
    threshold = fcflags.resolve_threshold(config.threshold if threshold is None else threshold, len(manifest.classes))
    wanted = set(samples.values("id"))
    ids = [sid for sid in manifest.trajectories if sid in wanted]
    videos = score_from_files(config.run_dir, manifest, ids, threshold, config.peer_scores)
    if "mistakenness" in config.peer_scores and videos:
        for sid, values in fcpeers.read_mistakenness(samples, RunNames.of(config), videos).items():
            videos[sid].scores["mistakenness"] = values
    return videos


def load_csl_results(samples, csl_field: str = "csl") -> CSLResults:
    """Loads a run's results for the videos of ``samples`` from its run
    directory (the manifest and every file checked first)."""
    dataset = samples._dataset
    videos = load_videos(samples, csl_field)
    config = get_run_config(dataset, csl_field)
    threshold = fcflags.resolve_threshold(config.threshold, len(config.classes))
    return CSLResults(
        csl_field, config.run_dir, config.classes, threshold, videos, getattr(config, "warnings", None) or []
    )


def run_summary(samples, csl_field: str = "csl") -> dict:
    """The stored summary of a run: counts, warnings, the last evaluation,
    with sparse labels ``labelled_fraction`` (``{sample_id: share of the
    sampled frames that carry a label}``),
    checkpoint bytes per epoch, the feature extraction rates (frames per
    second of decoding and of the backbone), the flag threshold and, for a
    run with ``simulation=True``, ``simulation``: the estimated number of
    errors, the threshold aimed at the target precision, whether the target
    was reached, and the ``estimated_precision`` of the current flags;
    ``review``: what reviewers decided so far (see
    :func:`~fiftyone_csl.plugin.decisions.review_counts`), for a scored run."""
    dataset = samples._dataset
    writeback.ensure_consistent(dataset, csl_field)
    config = get_run_config(dataset, csl_field)
    results = dataset.load_run_results(csl_field, cache=False)
    if results is None:
        return {}
    keys = ("num_videos", "num_scored_frames", "num_segments", "evaluation", "warnings", "labelled_fraction")
    summary = {k: getattr(results, k, None) for k in keys}
    manifest = load_manifest(dataset, config)
    summary["checkpoint_bytes_per_epoch"] = manifest.checkpoint_bytes_per_epoch
    summary["feature_stats"] = manifest.feature_stats
    summary["threshold"] = config.threshold
    summary["simulation"] = _simulation_summary(manifest.simulation, config.threshold)
    if config.state == "scored":
        from .decisions import ensure_consistent, review_counts

        ensure_consistent(dataset, csl_field)
        summary["review"] = review_counts(dataset, csl_field)
    return summary


def _simulation_summary(report, threshold):
    """The simulation's findings at the run's current threshold, or None."""
    if not report:
        return None
    keys = ("errors_estimate", "target_precision", "aimed_threshold", "reached_target", "injected_events", "seconds")
    out = {k: report.get(k) for k in keys}
    out["estimated_precision"] = estimated_precision(report, threshold) if isinstance(threshold, (int, float)) else None
    return out


def delete_csl_run(samples, csl_field: str = "csl", delete_files: bool = True) -> None:
    """Deletes a CSL run: its fields, saved views, tags, run record and (by
    default) its files. The label field and anything the run did not create
    are never touched; on a cloned dataset, files that belong to the
    original dataset stay."""
    dataset = samples._dataset
    holder = run_in_progress(dataset, csl_field)
    if holder is not None:
        raise CSLError(f"run '{csl_field}' is in progress ({holder['host']} pid {holder['pid']}); nothing was deleted")
    with dataset_lock(dataset):
        writeback.recover(dataset, csl_field)
        config = get_run_config(dataset, csl_field)
        names = RunNames.of(config)
        if "mistakenness" in names.peer_scores:
            fcpeers.delete_brain_outputs(dataset, names.brain_key)
        review = getattr(config, "review", None)
        if review and review.get("tag"):  # tags this run put on the labels and videos it queued
            writeback.untag_review(dataset, review["tag"], config.label_field)
        fcfields.delete_outputs(dataset, names.paths())
        fcviews.delete_views(dataset, names.views())
        dataset.delete_run(csl_field)
        if delete_files and owned_by(dataset, config):
            RunStore.of(config).remove_all()


def copy_csl_run(samples, csl_field: str = "csl", run_dir: str | None = None) -> str:
    """Gives a cloned dataset its own copy of a run it inherited.

    ``dataset.clone()`` copies run records but not run files; the clone's
    record still names the original's files, which this dataset must not
    use or delete. This copies them (verified) into a run folder keyed by
    this dataset's id and points the record there. Returns the new folder.
    """
    dataset = samples._dataset
    config = get_run_config(dataset, csl_field)
    if owned_by(dataset, config):
        raise CSLError(f"run '{csl_field}' already belongs to dataset '{dataset.name}'")
    source = Manifest.load(config.run_dir, getattr(config, "manifest_sha256", None), run_key=csl_field)
    for relpath in source.files:
        source.verified_path(config.run_dir, relpath)
    default_root = RunStore.of(config).root
    store = RunStore(str(dataset._doc.id), csl_field, run_dir or default_root)
    store.check_writable()
    staging = store.staging()
    try:
        for relpath in source.files:
            os.makedirs(os.path.dirname(os.path.join(staging, relpath)), exist_ok=True)
            shutil.copy2(os.path.join(config.run_dir, relpath), os.path.join(staging, relpath))
        source.dataset_id = str(dataset._doc.id)
        with dataset_lock(dataset):
            version = store.promote(staging)
            config.manifest_sha256 = source.save(version)
            config.run_dir = version
            config.dataset_id = source.dataset_id
            dataset.update_run_config(csl_field, config)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version


EXPORT_COLUMNS = (
    "sample_id", "filepath", "first_frame", "last_frame", "error_type", "given_label", "suggested_label",
    "suggested_boundary", "mean_csl", "max_csl", "segment_id", "review", "reviewed_at", "queue_rank",
)  # fmt: skip


def suspect_table(samples, csl_field: str = "csl") -> list:
    """The suspect segments of run ``csl_field`` on ``samples`` as rows (dicts
    with :data:`EXPORT_COLUMNS`), worst (highest mean CSL) first: what an
    annotation team needs to fix them."""
    dataset = samples._dataset
    writeback.ensure_consistent(dataset, csl_field)
    names = RunNames.of(get_run_config(dataset, csl_field))
    ids, paths, detections = samples.values(["id", "filepath", f"{names.errors_field}.detections"])
    rows = []
    for sid, path, dets in zip(ids, paths, detections):
        for d in dets or []:
            rows.append(
                dict(
                    sample_id=sid, filepath=path, first_frame=int(d.support[0]), last_frame=int(d.support[1]),
                    error_type=d.label, given_label=d["given_label"], suggested_label=d["suggested_label"],
                    suggested_boundary=d["suggested_boundary"], mean_csl=round(float(d["mean_csl"]), 4),
                    max_csl=round(float(d["max_csl"]), 4), segment_id=d.id,
                )
            )  # fmt: skip
    return sorted(rows, key=lambda r: -r["mean_csl"])


def export_suspects(samples, path: str, csl_field: str = "csl") -> int:
    """Writes the suspect segments of run ``csl_field`` on ``samples`` to
    ``path``: CSV (``.csv``) or JSON (``.json``, a list of objects), one row
    per segment with :data:`EXPORT_COLUMNS` (with the review decision
    covering it, if any), worst first. Frame numbers are 1-based and
    inclusive, as in FiftyOne. Returns the number of rows.

    For annotation tools that read FiftyOne directly, the saved view
    ``<csl_field>-suspect-clips`` holds one clip per suspect segment.
    """
    import csv
    import json

    if not isinstance(path, str) or not path.endswith((".csv", ".json")):
        raise CSLError(f"path must end in .csv or .json; got {path!r}")
    from .decisions import suspect_segments

    rows = suspect_segments(samples, csl_field)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CSLError(f"folder {folder} does not exist")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        if path.endswith(".json"):
            json.dump(rows, f, indent=1)
        else:
            writer = csv.DictWriter(f, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    os.replace(tmp, path)
    return len(rows)


PLUGIN_OPERATORS = "@fiftyone-csl/csl/"


def delegated_runs(samples, limit: int = 20) -> list:
    """This plugin's delegated operations on the collection's dataset,
    newest first: dicts with ``id``, ``operator`` (its name), ``state``
    (``queued``, ``scheduled``, ``running``, ``completed`` or ``failed``),
    ``progress`` (0-1 or None), ``label`` (the progress message),
    ``queued_at`` and ``finished_at`` (ISO strings or None) and ``error``.

    A queued operation runs once a worker (``fiftyone delegated launch``)
    takes it."""
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset = samples._dataset
    out = []
    for op in DelegatedOperationService().list_operations(dataset_id=dataset._doc.id):
        if not str(op.operator).startswith(PLUGIN_OPERATORS):
            continue
        status = getattr(op, "status", None)
        progress = getattr(status, "progress", None) if status is not None else None
        label = getattr(status, "label", None) if status is not None else None
        result = getattr(op, "result", None)
        finished = op.completed_at or op.failed_at
        out.append(
            dict(
                id=str(op.id), operator=str(op.operator)[len(PLUGIN_OPERATORS) :], state=str(op.run_state),
                progress=progress, label=label,
                queued_at=op.queued_at.isoformat(timespec="seconds") if op.queued_at else None,
                finished_at=finished.isoformat(timespec="seconds") if finished else None,
                error=getattr(result, "error", None) if result is not None else None,
            )
        )  # fmt: skip
    out.sort(key=lambda r: r["queued_at"] or "", reverse=True)
    return out[:limit]

"""Reports of a run's suspects: a table and a CSV/JSON export."""

import csv
import json
import os

from ..core.errors import CSLError
from ..core.simulation import estimated_precision
from ..core.utils import atomic_file
from ..runs import writeback
from ..runs.record import RunNames, get_run_config, load_manifest
from .decisions import ACTIONS, CONFIRMED
from .segments import EXPORT_COLUMNS, decision_docs, ensure_consistent, suspect_segments


def export_suspects(samples, path: str, csl_field: str = "csl") -> int:
    """Writes the suspect segments of run ``csl_field`` on ``samples`` to
    ``path``: CSV (``.csv``) or JSON (``.json``, a list of objects), one row
    per segment with :data:`EXPORT_COLUMNS` (with the review decision
    covering it, if any), strongest first; in CSV, ``proposed_labels`` is
    ``;``-separated and ``partner`` is ``first-last``. Frame numbers are 1-based and
    inclusive, as in FiftyOne. Returns the number of rows.

    For annotation tools that read FiftyOne directly, the saved view
    ``<csl_field>-suspect-clips`` holds one clip per suspect segment.
    """

    if not isinstance(path, str) or not path.endswith((".csv", ".json")):
        raise CSLError(f"path must end in .csv or .json; got {path!r}")

    rows = suspect_segments(samples, csl_field)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CSLError(f"folder {folder} does not exist")
    if os.path.islink(path):
        raise CSLError(f"{path} is a symbolic link; export to a file of your own")
    with atomic_file(path, newline="") as f:
        if path.endswith(".json"):
            json.dump(rows, f, indent=1)
        else:
            writer = csv.DictWriter(f, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            for row in rows:  # lists as text: "a;a;b" (labels per frame), "12-30" (a partner's frames)
                flat = dict(row)
                if flat.get("proposed_labels") is not None:
                    flat["proposed_labels"] = ";".join(flat["proposed_labels"])
                if flat.get("partner") is not None:
                    flat["partner"] = "-".join(str(int(x)) for x in flat["partner"])
                writer.writerow(flat)
    return len(rows)


def review_counts(dataset, csl_field: str, _rows=None) -> dict | None:
    """What the review has decided so far, for the run summary: decisions
    by kind (``accepted``, ``kept``, ``relabelled``, ``marked_reviewed``),
    ``reviewed`` (all decisions), ``confirmed_errors``, ``false_alarms``,
    ``remaining`` (suspect segments no decision covers), the precision of
    the decided flags, and ``estimated_precision_remaining``: the precision
    among the decided flags whose mean CSL is no higher than the highest of
    the remaining ones (the review goes worst first, so the remaining flags
    resemble the lowest decided ones; None with fewer than 3 such).
    ``_rows``: the run's :func:`suspect_segments` with the decided ones, in
    any order, when the caller has just read them."""
    names = RunNames.of(get_run_config(dataset, csl_field))
    docs = decision_docs(dataset, names) if names.decisions else []
    rows = suspect_segments(dataset, csl_field, include_reviewed=True, _docs=docs) if _rows is None else _rows
    by_kind = {v: sum(d["decision"] == v for d in docs) for v in ACTIONS.values()}
    by_kind["marked_reviewed"] = by_kind.pop("reviewed")
    confirmed = by_kind["accepted"] + by_kind["relabelled"]
    verdicts = [d for d in docs if d["decision"] in (*CONFIRMED, "kept") and d["mean_csl"] is not None]
    remaining = [r for r in rows if not r["review"]]
    estimate = None
    if remaining and verdicts:
        top = max(r["mean_csl"] for r in remaining)
        near = [d for d in verdicts if d["mean_csl"] <= top] or []
        if len(near) >= 3:
            estimate = round(sum(d["decision"] in CONFIRMED for d in near) / len(near), 3)
    verdict_count = confirmed + by_kind["kept"]
    return dict(
        reviewed=len(docs), confirmed_errors=confirmed, false_alarms=by_kind["kept"], **by_kind,
        remaining=len(remaining),
        precision_of_decided=round(confirmed / verdict_count, 3) if verdict_count else None,
        estimated_precision_remaining=estimate,
    )  # fmt: skip


def run_summary(samples, csl_field: str = "csl") -> dict:
    """The stored summary of a run: counts, warnings, the last evaluation,
    with sparse labels ``labelled_fraction`` (``{sample_id: share of the
    sampled frames that carry a label}``),
    checkpoint bytes per epoch, the feature extraction rates (frames per
    second of decoding and of the backbone), the flag threshold and, for a
    run with ``simulation=True``, ``simulation``: the estimated number of
    errors, the threshold aimed at the target precision, whether the target
    was reached, and the ``estimated_precision`` of the current flags;
    ``second_round``: whether a second round of training ran and why
    (:mod:`~fiftyone_csl.plugin.core.rounds`); ``review``: what reviewers decided so far (see
    :func:`~fiftyone_csl.plugin.decisions.review_counts`), for a scored run."""
    dataset = samples._dataset
    writeback.ensure_consistent(dataset, csl_field)
    config = get_run_config(samples, csl_field)
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
    summary["second_round"] = manifest.second_round_report()
    if config.state == "scored":
        ensure_consistent(dataset, csl_field)
        summary["review"] = review_counts(dataset, csl_field)
    return summary


def _simulation_summary(report, threshold):
    """The simulation's findings at the run's current threshold, or None."""
    if not report:
        return None
    keys = (
        "errors_estimate",
        "target_precision",
        "aimed_threshold",
        "reached_target",
        "injected_events",
        "seconds",
        "knob",
        "min_evidence",
        "aimed_evidence",
        "bias",
    )
    out = {k: report.get(k) for k in keys}
    out["estimated_precision"] = estimated_precision(report, threshold) if isinstance(threshold, (int, float)) else None
    return out

"""Suspect segments as rows, with their review state: what the queue, the
panel and the reports read. Reads only."""

from ..core.errors import CSLError
from ..runs import writeback
from ..runs.record import RunNames, get_run_config

EXPORT_COLUMNS = (
    "sample_id", "filepath", "first_frame", "last_frame", "error_type", "given_label", "suggested_label",
    "suggested_boundary", "mean_csl", "max_csl", "evidence", "partner", "proposed_labels", "segment_id", "review",
    "reviewed_at", "queue_rank",
)  # fmt: skip


def suspect_table(samples, csl_field: str = "csl", _flagged: bool = False) -> list:
    """The suspect segments of run ``csl_field`` on ``samples`` as rows (dicts
    with :data:`EXPORT_COLUMNS`), strongest first (the decoder's evidence,
    then mean CSL): what an annotation team needs to fix them.
    ``proposed_labels`` is the label the decoder proposes for every frame
    ``first_frame..last_frame`` (None for a suspect of the CSL rules), and
    ``partner`` a disorder's other half ``[first, last]`` when it is another
    suspect."""
    dataset = samples._dataset
    writeback.ensure_consistent(dataset, csl_field)
    names = RunNames.of(get_run_config(samples, csl_field))
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
                    evidence=None if _get(d, "evidence") is None else round(float(d["evidence"]), 3),
                    partner=_get(d, "partner"), proposed_labels=_get(d, "proposed_labels"),
                )
            )  # fmt: skip
            if _flagged:
                rows[-1]["flagged_labels"] = _get(d, "flagged_labels")
    return sorted(rows, key=_strongest_first)


def _strongest_first(r) -> tuple:  # ties by video and frame: a list spliced (kept_suspect_segments) sorts the same
    return -(r["evidence"] or 0.0), -r["mean_csl"], r["sample_id"], r["first_frame"]


def _in_order(rows, order: str) -> list:
    """``rows`` strongest first, then for ``"queue"`` by the review queue's rank."""
    rows = sorted(rows, key=_strongest_first)
    if order == "queue":
        rows.sort(key=lambda r: (r["queue_rank"] is None, r["queue_rank"] or 0, -r["mean_csl"]))
    return rows


def _get(d, name):
    """An attribute of a suspect's detection, None where an earlier version wrote none."""
    return d.get_field(name) if d.has_field(name) else None


ORDERS = ("csl", "queue")


def decision_docs(dataset, names, sample_ids=None) -> list:
    """Every decision of the run (dicts with ``previous_labels``), oldest first."""
    if not dataset.has_field(names.decisions_field):
        return []
    # the database picks the videos with decisions: a review's cost follows its decisions, not the dataset
    view = dataset.exists(names.decisions_field) if sample_ids is None else dataset.select(list(sample_ids))
    ids, dets = view.values(["id", f"{names.decisions_field}.detections"])
    out = []
    for sid, ds in zip(ids, dets):
        for d in ds or []:
            out.append(doc_of(sid, d))
    return sorted(out, key=decision_order)


def last_seq(dataset, names) -> int:
    """The highest sequence number of the run's decisions (0 if none),
    counted by the database."""
    if not dataset.has_field(names.decisions_field):
        return 0
    return int(dataset.max(f"{names.decisions_field}.detections.seq") or 0)


def relabelled_videos(dataset, names) -> list:
    """Ids of the videos where a decision of the run changed labels, found
    by the database."""
    from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

    if not dataset.has_field(names.decisions_field):
        return []
    changed = F("changed_frames")
    some = F(f"{names.decisions_field}.detections").filter((changed != None) & (changed != [])).length() > 0  # noqa: E711
    return dataset.match(some).values("id")


def decision_order(d: dict) -> tuple:
    """Decisions in the order they were written: by their sequence number
    (issued under the dataset lock); decisions made before there was one
    come first, by time."""
    return (d.get("seq") is not None, d.get("seq") or 0, d["decided_at"], d["decision_id"])


def doc_of(sample_id, d) -> dict:
    keys = ("error_type", "given_label", "suggested_label", "new_label", "new_labels", "mean_csl", "decided_at",
            "previous_labels", "changed_frames", "seq", "label_field", "run_version")  # fmt: skip
    doc = dict(decision_id=d.id, decision=d.label, sample_id=sample_id, first=int(d.support[0]), last=int(d.support[1]))
    doc.update({k: getattr(d, k, None) for k in keys})
    return doc


def suspect_segments(samples, csl_field: str = "csl", order: str = "csl", include_reviewed: bool = True,
                     _docs=None) -> list:  # fmt: skip
    """The suspect segments of run ``csl_field`` on ``samples`` with their
    review state, as rows (dicts: ``sample_id``, ``filepath``,
    ``first_frame``, ``last_frame``, ``error_type``, ``given_label``,
    ``suggested_label``, ``suggested_boundary``, ``mean_csl``, ``max_csl``,
    ``segment_id``, ``review`` (the newest decision covering the segment, or
    None), ``reviewed_at``, ``queue_rank`` (the best review-queue priority
    among its frames, or None)).

    Args:
        order ("csl"): ``"csl"`` (the strongest evidence first, then the
            highest mean CSL; runs without evidence: by mean CSL) or ``"queue"``
            (the review queue's order, then CSL)
        include_reviewed (True): False leaves out decided segments
    """
    if order not in ORDERS:
        raise CSLError(f"order must be one of {ORDERS}; got {order!r}")
    dataset = samples._dataset
    if _docs is None:
        ensure_consistent(dataset, csl_field)
    config = get_run_config(samples, csl_field)
    names = RunNames.of(config)
    rows = suspect_table(samples, csl_field, _flagged=True)
    docs = _docs if _docs is not None else (decision_docs(dataset, names, {r["sample_id"] for r in rows})
                                            if names.decisions else [])  # fmt: skip
    by_video = {}
    for d in docs:
        by_video.setdefault(d["sample_id"], []).append(d)
    ranks = {}
    if names.review and rows:
        ids, numbers, prios = dataset.select(list({r["sample_id"] for r in rows})).values(
            ["id", "frames.frame_number", f"frames.{names.review_priority_field}"]
        )
        ranks = {
            sid: {int(f): p for f, p in zip(ns or [], ps or []) if p is not None}
            for sid, ns, ps in zip(ids, numbers, prios)
        }
    out = []
    for r in rows:
        # a decision answers the flag it judged: the same frames (or more), flagged on the labels the decision
        # saw; a suspect found since on labels a decision wrote, or on frames it did not judge, is open again
        covering = [d for d in by_video.get(r["sample_id"], ()) if judged(d, r)]
        r.pop("flagged_labels", None)
        r["review"] = covering[-1]["decision"] if covering else None
        r["reviewed_at"] = covering[-1]["decided_at"] if covering else None
        inside = [p for f, p in ranks.get(r["sample_id"], {}).items() if r["first_frame"] <= f <= r["last_frame"]]
        r["queue_rank"] = min(inside) if inside else None
        if include_reviewed or not r["review"]:
            out.append(r)
    return _in_order(out, order)


_KEPT = {}  # (dataset id, run key, order) -> (version token, newest save when read, rows)


def kept_suspect_segments(dataset, csl_field: str = "csl", order: str = "csl") -> list:
    """:func:`suspect_segments` of the whole ``dataset``, kept by this process
    between calls and brought up to date: read again whole when the run's
    version, threshold, review queue or set of videos changed, else only
    the videos saved since the newest save the last call saw (a decision or
    its undo saves its video; both times are the samples'
    ``last_modified_at``, indexed), so that a call costs about the same on 24 videos and on 10,000. A save
    stamped by a machine whose clock is behind the newest one's shows at the
    next version or threshold. For a long-lived process asking often (the
    App's panel); the rows are shared between callers: read them, do not
    change them."""
    from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

    if order not in ORDERS:
        raise CSLError(f"order must be one of {ORDERS}; got {order!r}")
    ensure_consistent(dataset, csl_field)
    config = get_run_config(dataset, csl_field)
    version = (config.run_dir, getattr(config, "manifest_sha256", None), repr(config.threshold), repr(config.review))
    token = (*version, dataset.count(), dataset.max("created_at"))  # a video deleted (or replaced) saves nothing
    key = (str(dataset._doc.id), csl_field, order)
    newest = dataset.max("last_modified_at")  # before reading: a save during the read is read again next time
    kept = _KEPT.get(key)
    if kept is None or kept[0] != token or kept[1] is None:
        rows = suspect_segments(dataset, csl_field, order=order)
    else:
        saved = set(dataset.match(F("last_modified_at") > kept[1]).values("id"))
        again = suspect_segments(dataset.select(sorted(saved)), csl_field, order=order) if saved else []
        rows = _in_order([r for r in kept[2] if r["sample_id"] not in saved] + again, order)
    _KEPT[key] = (token, newest, rows)
    return list(rows)


def judged(decision: dict, row: dict) -> bool:
    """Whether ``decision`` answers the suspect ``row``: its frames hold the
    row's, and the row was flagged on the labels the decision saw (frame by
    frame where the row records them, else by its given label). A suspect
    flagged since on labels the decision wrote (a refresh after an accept
    that left errors) is not answered by it."""
    first, last = decision["first"], decision["last"]
    if not (first <= row["first_frame"] and row["last_frame"] <= last):
        return False
    flagged, seen = row.get("flagged_labels"), decision.get("previous_labels")
    if not flagged or not seen:
        return decision["given_label"] == row["given_label"]
    start = row["first_frame"] - first
    return all(f is None or seen[start + i] == f for i, f in enumerate(flagged))


def ensure_consistent(dataset, run_key) -> None:
    """Finishes a half-done commit or decision and reloads the dataset, so
    decisions made by other processes (the App's server, a worker) are seen."""
    # the dataset's document (runs, schema) only: ``dataset.reload()`` also reloads every sample held in
    # memory, one query each, a cost that grows with the dataset; these readers query the database directly
    # (the dataset lock reloads the same document; a writer that edits a sample object reloads that sample)
    dataset._reload(hard=True)
    writeback.ensure_consistent(dataset, run_key)

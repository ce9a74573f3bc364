"""Review decisions on suspect segments: accept the suggestion, keep the
given label, relabel, or mark reviewed; each one undoable.

A decision belongs to its run (:class:`~fiftyone_csl.plugin.record.RunNames`):

- ``<key>_decisions`` (sample-level ``TemporalDetections``): one detection per
  decision, its label the decision (``accepted``, ``kept``, ``relabelled``,
  ``reviewed``), with the segment's type, given and new label, mean CSL,
  when it was made, and the labels it replaced (``previous_labels``, one per
  frame of its support): the history that :func:`undo_review` restores;
- ``frames.<key>_decision``: the decision covering each frame (the newest
  one), for the sidebar and the review queue, which skips decided frames.

Decisions survive re-flagging, refreshing and re-running the audit with the
same key; deleting the run deletes them (the labels stay as they are).

A decision is written under the dataset lock through a journal entry in the
database: the entry (the decision, with the labels it replaces) is saved
before the first label changes, and a process killed after that leaves an
entry that the next review call finishes. Only frame-level ``Classification``
label fields can be changed here.
"""

import datetime
from dataclasses import asdict

from . import writeback
from .locks import dataset_lock
from .record import RunNames, get_run_config, unowned_outputs
from .sequences import label_field_kind, strip_frames_prefix
from .utils import CSLError

ACTIONS = {"accept": "accepted", "keep": "kept", "relabel": "relabelled", "reviewed": "reviewed"}
CONFIRMED = ("accepted", "relabelled")
ORDERS = ("csl", "queue")


def _journal_id(dataset, run_key):
    return f"{dataset._doc.id}:{run_key}:decision"


def recover(dataset, run_key) -> bool:
    """Finishes a decision or undo left half done by a dead process. Call
    under the dataset lock."""
    entry = writeback.journal().find_one({"_id": _journal_id(dataset, run_key)})
    if entry is None:
        return False
    _apply(dataset, entry)
    return True


def ensure_consistent(dataset, run_key) -> None:
    """Finishes a half-done decision and reloads the dataset, so decisions
    made by other processes (the App's server, a worker) are seen."""
    dataset.reload()
    writeback.ensure_consistent(dataset, run_key)
    if writeback.journal().find_one({"_id": _journal_id(dataset, run_key)}, {"_id": 1}) is not None:
        with dataset_lock(dataset):
            recover(dataset, run_key)


def _checked_run(dataset, csl_field):
    config = get_run_config(dataset, csl_field)
    if config.state != "scored":
        raise CSLError(f"run '{csl_field}' has no suspect segments yet: replay its checkpoints first")
    if label_field_kind(dataset, config.label_field) != "frames":
        raise CSLError(
            f"review decisions change frame-level Classification labels; run '{csl_field}' audits the "
            f"sample-level field '{config.label_field}'. Decide with fcsl.export_suspects and edit the "
            "TemporalDetections yourself"
        )
    owned = RunNames.of(config)
    names = owned.with_decisions()
    taken = unowned_outputs(dataset, names, owned)
    if taken:
        raise CSLError(f"{taken} exist and do not belong to run '{csl_field}'; nothing was written")
    return config, names


def _frame_labels(dataset, sample_id, label_field, first, last) -> dict:
    """``{frame_number: label or None}`` of the frames ``first..last`` that exist."""
    from bson import ObjectId
    from fiftyone import ViewField as F

    name = strip_frames_prefix(label_field)
    view = dataset.match(F("_id") == ObjectId(sample_id)).match_frames(
        (F("frame_number") >= first) & (F("frame_number") <= last)
    )
    numbers, labels = view.values(["frames.frame_number", f"frames.{name}.label"])
    if not numbers:
        return {}
    return {int(f): lab for f, lab in zip(numbers[0] or [], labels[0] or [])}


def _flagged(dataset, names, sample_id, first, last):
    """The run's flagged segment with support ``[first, last]`` on the video, or None."""
    from bson import ObjectId
    from fiftyone import ViewField as F

    dets = dataset.match(F("_id") == ObjectId(sample_id)).values(f"{names.errors_field}.detections")
    for d in (dets[0] if dets else None) or []:
        if [int(x) for x in d.support] == [first, last]:
            return d
    return None


def review_segment(samples, csl_field: str, sample_id: str, first: int, last: int, action: str,
                   label: str | None = None) -> dict:  # fmt: skip
    """Records a reviewer's decision on frames ``first..last`` (1-based,
    inclusive) of one video of run ``csl_field``, and changes the labels it
    implies in the run's label field.

    Args:
        samples: a Dataset or view holding the video
        csl_field: the run key (a scored run)
        sample_id: the video's id
        first, last: the segment's frames, as in ``<csl_field>_errors``
        action: ``"accept"`` (write the segment's suggested label on its
            labelled frames; the segment must be a flagged one), ``"keep"``
            (the given label is right: a false alarm), ``"relabel"`` (write
            ``label``, one of the run's classes) or ``"reviewed"`` (looked
            at; no verdict)
        label: the class for ``"relabel"``

    Returns:
        the decision as a dict (``decision_id``, ``decision``, ``sample_id``,
        ``first``, ``last``, ``error_type``, ``given_label``, ``new_label``,
        ``mean_csl``, ``decided_at``, ``changed_frames``)
    """
    dataset = samples._dataset
    if action not in ACTIONS:
        raise CSLError(f"action must be one of {list(ACTIONS)}; got {action!r}")
    ensure_consistent(dataset, csl_field)
    config, names = _checked_run(dataset, csl_field)
    try:
        first, last = int(first), int(last)
    except (TypeError, ValueError):
        raise CSLError(f"first and last must be frame numbers; got {first!r}, {last!r}") from None
    if not 1 <= first <= last:
        raise CSLError(f"need 1 <= first <= last; got {first}, {last}")
    if sample_id not in set(samples.values("id")):
        raise CSLError(f"no video with id {sample_id!r} in the given samples")
    if action == "relabel" and label not in config.classes:
        raise CSLError(f"relabel needs a label among the run's classes {config.classes}; got {label!r}")
    if action != "relabel" and label is not None:
        raise CSLError(f"label is only for action 'relabel'; got label={label!r} with {action!r}")
    segment = _flagged(dataset, names, sample_id, first, last)
    if action == "accept":
        if segment is None:
            raise CSLError(f"no suspect segment at frames {first}-{last} of video {sample_id}: relabel it instead")
        if not segment["suggested_label"] or segment["suggested_label"] == segment["given_label"]:
            raise CSLError(f"the segment at frames {first}-{last} has no suggestion to accept")
    with dataset_lock(dataset):
        writeback.recover(dataset, csl_field)
        recover(dataset, csl_field)
        config, names = _checked_run(dataset, csl_field)  # as it is now, under the lock
        segment = _flagged(dataset, names, sample_id, first, last)
        if action == "accept" and segment is None:
            raise CSLError(
                f"the suspect segment at frames {first}-{last} was re-flagged meanwhile; nothing was written"
            )
        current = _frame_labels(dataset, sample_id, config.label_field, first, last)
        if not any(v is not None for v in current.values()):
            raise CSLError(f"frames {first}-{last} of video {sample_id} carry no label; nothing was written")
        new_label = {"accept": segment["suggested_label"] if segment else None, "relabel": label}.get(action)
        from bson import ObjectId

        decision = dict(
            decision_id=str(ObjectId()),
            decision=ACTIONS[action],
            sample_id=sample_id,
            first=first,
            last=last,
            error_type=segment.label if segment is not None else None,
            given_label=segment["given_label"] if segment is not None else _majority(current),
            suggested_label=segment["suggested_label"] if segment is not None else None,
            new_label=new_label,
            mean_csl=float(segment["mean_csl"]) if segment is not None else None,
            decided_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            previous_labels=[current.get(f) for f in range(first, last + 1)],
            changed_frames=sorted(
                f for f, v in current.items() if new_label is not None and v is not None and v != new_label
            ),
        )
        # the run record claims the names before their first value is written
        config.decisions = True
        config.fields, config.views = names.fields(), names.views()
        dataset.update_run_config(csl_field, config)
        _journal_and_apply(dataset, csl_field, "apply", names, config.label_field, decision)
    return _public(decision)


def _majority(labels: dict):
    values = [v for v in labels.values() if v is not None]
    return max(set(values), key=values.count) if values else None


def _public(decision: dict) -> dict:
    return {k: v for k, v in decision.items() if k != "previous_labels"}


def review_segments(samples, csl_field: str, action: str, segments: list | None = None,
                    label: str | None = None) -> list:  # fmt: skip
    """Decides many segments at once (see :func:`review_segment`).

    Args:
        segments: ``[(sample_id, first, last), ...]`` or rows of
            :func:`suspect_segments`; None for every undecided suspect segment
            of ``samples``

    Returns:
        the decisions, in order
    """
    if segments is None:
        segments = suspect_segments(samples, csl_field, include_reviewed=False)
    out = []
    for s in segments:
        sid, first, last = (s["sample_id"], s["first_frame"], s["last_frame"]) if isinstance(s, dict) else s
        out.append(review_segment(samples, csl_field, sid, first, last, action, label))
    return out


def _decision_docs(dataset, names, sample_ids=None) -> list:
    """Every decision of the run (dicts with ``previous_labels``), oldest first."""
    if not dataset.has_field(names.decisions_field):
        return []
    view = dataset if sample_ids is None else dataset.select(list(sample_ids))
    ids, dets = view.values(["id", f"{names.decisions_field}.detections"])
    out = []
    for sid, ds in zip(ids, dets):
        for d in ds or []:
            out.append(_doc_of(sid, d))
    return sorted(out, key=lambda d: (d["decided_at"], d["decision_id"]))


def _doc_of(sample_id, d) -> dict:
    keys = ("error_type", "given_label", "suggested_label", "new_label", "mean_csl", "decided_at",
            "previous_labels", "changed_frames")  # fmt: skip
    doc = dict(decision_id=d.id, decision=d.label, sample_id=sample_id, first=int(d.support[0]), last=int(d.support[1]))
    doc.update({k: getattr(d, k, None) for k in keys})
    return doc


def list_decisions(samples, csl_field: str = "csl") -> list:
    """The review decisions of run ``csl_field`` on the videos of
    ``samples``, oldest first (dicts as :func:`review_segment` returns)."""
    dataset = samples._dataset
    ensure_consistent(dataset, csl_field)
    names = RunNames.of(get_run_config(dataset, csl_field))
    if not names.decisions:
        return []
    return [_public(d) for d in _decision_docs(dataset, names, samples.values("id"))]


def undo_review(samples, csl_field: str = "csl", decision_id: str | None = None) -> dict:
    """Undoes a review decision (by default the newest on ``samples``):
    restores the labels it changed and removes it. Refuses, changing
    nothing, if a newer decision covers some of its frames (undo that one
    first) or if its frames' labels changed since it was made.

    Returns:
        the decision undone
    """
    dataset = samples._dataset
    ensure_consistent(dataset, csl_field)
    with dataset_lock(dataset):
        writeback.recover(dataset, csl_field)
        recover(dataset, csl_field)
        config = get_run_config(dataset, csl_field)
        names = RunNames.of(config)
        docs = _decision_docs(dataset, names, samples.values("id")) if names.decisions else []
        if decision_id is None:
            if not docs:
                raise CSLError(f"run '{csl_field}' has no review decision to undo on these videos")
            target = docs[-1]
        else:
            matches = [d for d in docs if d["decision_id"] == decision_id]
            if not matches:
                raise CSLError(f"no review decision {decision_id!r} of run '{csl_field}' on these videos")
            target = matches[0]
        later = [
            d for d in docs[docs.index(target) + 1 :]
            if d["sample_id"] == target["sample_id"] and d["first"] <= target["last"] and target["first"] <= d["last"]
        ]  # fmt: skip
        if later:
            raise CSLError(
                f"a newer decision ({later[-1]['decision']}, frames {later[-1]['first']}-{later[-1]['last']}) "
                "covers some of these frames: undo it first; nothing was changed"
            )
        current = _frame_labels(dataset, target["sample_id"], config.label_field, target["first"], target["last"])
        moved = [f for f in target["changed_frames"] or [] if current.get(f) != target["new_label"]]
        if moved:
            raise CSLError(f"frames {moved[:5]} changed since the decision was made; nothing was restored")
        _journal_and_apply(dataset, csl_field, "undo", names, config.label_field, target)
    return _public(target)


def _journal_and_apply(dataset, csl_field, op, names, label_field, decision) -> None:
    """Saves the decision (``op="apply"``) or its undo as the run's journal
    entry, then writes it. Call under the dataset lock."""
    entry = dict(
        _id=_journal_id(dataset, csl_field), op=op, names=asdict(names), label_field=label_field, decision=decision
    )
    writeback.journal().replace_one({"_id": entry["_id"]}, entry, upsert=True)
    _apply(dataset, entry)


def _apply(dataset, entry: dict) -> None:
    """Writes a journaled decision (or its undo); every step can be repeated."""
    import fiftyone as fo
    from bson import ObjectId

    names = RunNames(**{**entry["names"], "peer_scores": tuple(entry["names"]["peer_scores"])})
    d = entry["decision"]
    first, last = d["first"], d["last"]
    field = strip_frames_prefix(entry["label_field"])
    undo = entry["op"] == "undo"
    targets = {}
    if undo:
        targets = {f: d["previous_labels"][f - first] for f in d["changed_frames"] or []}
    elif d["new_label"] is not None:
        targets = {f: d["new_label"] for f in d["changed_frames"] or []}
    sample = dataset[d["sample_id"]]
    for f, value in targets.items():
        frame = sample.frames[f]
        if frame[field] is not None and value is not None:
            frame[field].label = value
    stored = sample[names.decisions_field] if sample.has_field(names.decisions_field) else None
    dets = list(stored.detections) if stored is not None else []
    dets = [x for x in dets if x.id != d["decision_id"]]
    if not undo:
        dets.append(
            fo.TemporalDetection(
                _id=ObjectId(d["decision_id"]), label=d["decision"], support=[first, last],
                **{k: d[k] for k in ("error_type", "given_label", "suggested_label", "new_label", "mean_csl",
                                     "decided_at", "previous_labels", "changed_frames")},
            )
        )  # fmt: skip
    sample[names.decisions_field] = fo.TemporalDetections(detections=dets)
    sample.save()
    _sync_frame_states(dataset, names, d["sample_id"], dets)
    writeback.journal().delete_one({"_id": entry["_id"]})


def _sync_frame_states(dataset, names, sample_id, dets) -> None:
    """``frames.<key>_decision`` of one video from its decisions (newest wins)."""
    numbers = dataset.select(sample_id).values("frames.frame_number")[0] or []
    state = {int(f): None for f in numbers}
    for d in sorted(dets, key=lambda x: (x["decided_at"], x.id)):
        for f in range(int(d.support[0]), int(d.support[1]) + 1):
            if f in state:
                state[f] = d.label
    dataset.set_values(f"frames.{names.decision_frame_field}", {sample_id: state}, key_field="id")


def review_counts(dataset, csl_field: str) -> dict | None:
    """What the review has decided so far, for the run summary: decisions
    by kind (``accepted``, ``kept``, ``relabelled``, ``marked_reviewed``),
    ``reviewed`` (all decisions), ``confirmed_errors``, ``false_alarms``,
    ``remaining`` (suspect segments no decision covers), the precision of
    the decided flags, and ``estimated_precision_remaining``: the precision
    among the decided flags whose mean CSL is no higher than the highest of
    the remaining ones (the review goes worst first, so the remaining flags
    resemble the lowest decided ones; None with fewer than 3 such)."""
    names = RunNames.of(get_run_config(dataset, csl_field))
    docs = _decision_docs(dataset, names) if names.decisions else []
    rows = suspect_segments(dataset, csl_field, include_reviewed=True, _docs=docs)
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
        order ("csl"): ``"csl"`` (highest mean CSL first) or ``"queue"``
            (the review queue's order, then CSL)
        include_reviewed (True): False leaves out decided segments
    """
    from .access import suspect_table

    if order not in ORDERS:
        raise CSLError(f"order must be one of {ORDERS}; got {order!r}")
    dataset = samples._dataset
    if _docs is None:
        ensure_consistent(dataset, csl_field)
    config = get_run_config(dataset, csl_field)
    names = RunNames.of(config)
    rows = suspect_table(samples, csl_field)
    docs = _docs if _docs is not None else (_decision_docs(dataset, names, {r["sample_id"] for r in rows})
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
        covering = [
            d for d in by_video.get(r["sample_id"], ())
            if d["first"] <= r["last_frame"] and r["first_frame"] <= d["last"]
        ]  # fmt: skip
        r["review"] = covering[-1]["decision"] if covering else None
        r["reviewed_at"] = covering[-1]["decided_at"] if covering else None
        inside = [p for f, p in ranks.get(r["sample_id"], {}).items() if r["first_frame"] <= f <= r["last_frame"]]
        r["queue_rank"] = min(inside) if inside else None
        if include_reviewed or not r["review"]:
            out.append(r)
    if order == "queue":
        out.sort(key=lambda r: (r["queue_rank"] is None, r["queue_rank"] or 0, -r["mean_csl"]))
    return out

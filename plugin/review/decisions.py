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
import os

from bson import ObjectId

from ..core.errors import CSLError
from ..runs import writeback
from ..runs.labels import label_field_kind, strip_frames_prefix
from ..runs.locks import dataset_lock
from ..runs.record import RunNames, get_run_config, unowned_outputs
from .segments import decision_docs, ensure_consistent, last_seq, suspect_segments

ACTIONS = {"accept": "accepted", "keep": "kept", "relabel": "relabelled", "reviewed": "reviewed"}
CONFIRMED = ("accepted", "relabelled")
# verdicts on a flag: they need the suspect segment as it is now
BOUND_TO_A_SUSPECT = ("accept", "keep")


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
    from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

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
    from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

    dets = dataset.match(F("_id") == ObjectId(sample_id)).values(f"{names.errors_field}.detections")
    for d in (dets[0] if dets else None) or []:
        if [int(x) for x in d.support] == [first, last]:
            return d
    return None


def _holds(samples, sample_id) -> bool:
    """Whether ``samples`` holds the video ``sample_id`` (asked of the database, not read whole)."""
    from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

    try:
        oid = ObjectId(sample_id)
    except Exception:  # not an id at all
        return False
    return samples.match(F("_id") == oid).count() > 0


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
        action: ``"accept"`` (write the segment's proposed labels on its
            labelled frames, frame by frame where the decoder proposed them,
            else its suggested label; the segment must be a flagged one), ``"keep"``
            (the given label is right: a false alarm), ``"relabel"`` (write
            ``label``, one of the run's classes) or ``"reviewed"`` (looked
            at; no verdict)
        label: the class for ``"relabel"``

    Returns:
        the decision as a dict (``decision_id``, ``decision``, ``sample_id``,
        ``first``, ``last``, ``error_type``, ``given_label``, ``new_label``,
        ``mean_csl``, ``decided_at``, ``changed_frames``); a decision that
        repeats the newest one on these frames (same action and frames,
        nothing to change) is not recorded again: the newest is returned
        with ``repeated=True``
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
    if not _holds(samples, sample_id):
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
        config, names = _checked_run(dataset, csl_field)  # as it is now, under the lock
        segment = _flagged(dataset, names, sample_id, first, last)
        if action in BOUND_TO_A_SUSPECT and segment is None:  # a stale verdict is not carried onto new flags
            raise CSLError(
                f"no suspect segment at frames {first}-{last} of video {sample_id} now (re-flagged since?): "
                "decide the current ones (fcsl.suspect_segments); nothing was written"
            )
        current = _frame_labels(dataset, sample_id, config.label_field, first, last)
        # only the frames the given view shows are changed (a view that filters frames hides the others)
        visible = set(samples.select(sample_id).values("frames.frame_number")[0] or [])
        current = {f: (v if f in visible else None) for f, v in current.items()}
        if not any(v is not None for v in current.values()):
            raise CSLError(f"frames {first}-{last} of video {sample_id} carry no label; nothing was written")
        new_label = {"accept": segment["suggested_label"] if segment else None, "relabel": label}.get(action)
        per_frame = _proposed(segment, first, last, config.classes) if action == "accept" else None
        target = {f: (per_frame[f - first] if per_frame else new_label) for f in range(first, last + 1)}

        docs = decision_docs(dataset, names, [sample_id])  # this video's: a click costs the same on any dataset
        newest = next((d for d in reversed(docs) if d["first"] <= last and first <= d["last"]), None)
        if _repeats(newest, action, first, last, new_label, per_frame, current):
            # the same click again (a double event, a second process): one decision, not two
            return {**_public(newest), "changed_frames": [], "repeated": True}
        # ordered by a number issued under the lock: the history's order is the order of the writes
        seq = 1 + last_seq(dataset, names)
        decision = dict(
            decision_id=str(ObjectId()),
            seq=seq,
            label_field=config.label_field,
            run_version=os.path.basename(config.run_dir),
            decision=ACTIONS[action],
            sample_id=sample_id,
            first=first,
            last=last,
            error_type=segment.label if segment is not None else None,
            given_label=segment["given_label"] if segment is not None else _majority(current),
            suggested_label=segment["suggested_label"] if segment is not None else None,
            new_label=new_label,
            new_labels=per_frame,
            mean_csl=float(segment["mean_csl"]) if segment is not None else None,
            decided_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            previous_labels=[current.get(f) for f in range(first, last + 1)],
            changed_frames=sorted(
                f for f, v in current.items() if target[f] is not None and v is not None and v != target[f]
            ),
        )
        writeback.write_decision(dataset, csl_field, "apply", names, config.label_field, decision)
    return _public(decision)


def _repeats(newest, action, first, last, new_label, per_frame, current) -> bool:
    """Whether a decision would repeat ``newest`` (the newest decision on any
    of its frames): the same action on the same frames, writing what they
    already hold."""
    if newest is None or newest["decision"] != ACTIONS[action] or (newest["first"], newest["last"]) != (first, last):
        return False
    if (newest.get("new_labels") or None) != (per_frame or None) or newest.get("new_label") != new_label:
        return False
    written = per_frame or [new_label] * (last - first + 1)
    return all(v is None or w is None or v == w for v, w in zip((current.get(f) for f in range(first, last + 1)),
                                                                  written))  # fmt: skip


def _proposed(segment, first: int, last: int, classes: list) -> list | None:
    """The decoder's label of every frame of a flagged segment, or None (a
    segment of the CSL rules: one suggested label). Raises
    :class:`CSLError` if the proposal is not one class of the run per frame."""
    if segment is None or not segment.has_field("proposed_labels"):
        return None
    proposal = list(segment["proposed_labels"] or [])
    if not proposal:
        return None
    if len(proposal) != last - first + 1 or not set(proposal) <= set(classes):
        raise CSLError(
            f"the proposal of the segment at frames {first}-{last} is not one of the run's classes per frame "
            "(was the run's field edited?); nothing was written: run fcsl.flag_errors to write the flags again"
        )
    return proposal


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


def list_decisions(samples, csl_field: str = "csl") -> list:
    """The review decisions of run ``csl_field`` on the videos of
    ``samples``, oldest first (dicts as :func:`review_segment` returns)."""
    dataset = samples._dataset
    ensure_consistent(dataset, csl_field)
    names = RunNames.of(get_run_config(samples, csl_field))
    if not names.decisions:
        return []
    return [_public(d) for d in decision_docs(dataset, names, samples.values("id"))]


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
        config = get_run_config(samples, csl_field)
        names = RunNames.of(config)
        docs = decision_docs(dataset, names, samples.values("id")) if names.decisions else []
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
        if target.get("label_field") not in (None, config.label_field):
            raise CSLError(
                f"the decision changed the label field '{target['label_field']}', but run '{csl_field}' now "
                f"audits '{config.label_field}': undo it by hand or re-audit that field; nothing was changed"
            )
        current = _frame_labels(dataset, target["sample_id"], config.label_field, target["first"], target["last"])
        written = target.get("new_labels")  # per frame (the decoder's), else one label
        moved = [
            f
            for f in target["changed_frames"] or []
            if current.get(f) != (written[f - target["first"]] if written else target["new_label"])
        ]
        if moved:
            raise CSLError(f"frames {moved[:5]} changed since the decision was made; nothing was restored")
        writeback.write_decision(dataset, csl_field, "undo", names, config.label_field, target)
    return _public(target)

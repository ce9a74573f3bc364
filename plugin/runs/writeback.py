"""Every change to a dataset's contents: committing a run, a review decision
or its undo, and a review queue, through one journal.

With its parts (:mod:`~fiftyone_csl.plugin.runs.fields` for field values,
:mod:`~fiftyone_csl.plugin.runs.views`, :mod:`~fiftyone_csl.plugin.runs.peers`)
this is the only code that writes to a dataset; deleting and copying a whole
run is :mod:`~fiftyone_csl.plugin.runs.access`'s, through the same lock.

The journal is one database collection, with at most one entry per run key
and kind (a commit, a decision): an entry is saved before the first write
it describes, and every call on the key finishes what a dead process left
(:func:`recover`: the commit first, then the decision).

A commit makes a complete, verified run version current and writes its
fields, views and run record, in this order, all under the dataset lock:

1. roll forward any commit of this run that a dead process left half done;
2. promote the staging folder to a new version (replays and shards first take in the
   current version's files, so concurrent shards merge: checkpoints as links, the other
   videos' trajectories as their folder, moved at step 4, back if it is rolled back);
3. write a journal entry to the database naming the new version and what to
   write; from here on the new run is the current one;
4. apply the journal: remove what the old run owned and the new one does
   not, register the run, write scores, flags and views, save the summary;
5. delete the journal entry and every version but the new one.

A process killed before step 3 leaves the previous run as it was (its files are deleted only
at step 5); one killed after it leaves a journal entry that the next call on the run applies
again (every step of 4 repeats). Readers finish a pending entry first (:func:`ensure_consistent`):
once step 4 moved a folder, the version the record named until then is incomplete.
"""

import logging
import os
from dataclasses import asdict

from bson import ObjectId

from ..core import flags as fcflags
from ..core.errors import CSLError
from ..core.manifest import Manifest
from ..core.stages import score_from_files
from . import fields as fcfields
from . import outputs
from . import peers as fcpeers
from . import views as fcviews
from .labels import strip_frames_prefix
from .locks import dataset_lock
from .record import METHOD, RunNames, load_manifest, owned_by, run_kwargs, unowned_outputs
from .store import TRAJECTORIES, RunStore, adopt_trajectories, adoption, can_adopt, remove_replaced, return_trajectories

logger = logging.getLogger(__name__)

JOURNAL = "fiftyone_csl_journal"


def journal():
    """The database collection of journal entries: one per run key and kind
    (a half-done commit, a half-done review decision)."""
    import fiftyone.core.odm as foo  # lazy: importing FiftyOne is slow

    return foo.get_db_conn()[JOURNAL]


# the kinds of journal entry, in the order a recovery finishes them
JOURNAL_KINDS = ("commit", "decision")


def _journal_id(dataset, run_key, kind: str = "commit"):
    base = f"{dataset._doc.id}:{run_key}"
    return base if kind == "commit" else f"{base}:{kind}"


def pending(dataset, run_key) -> bool:
    ids = [_journal_id(dataset, run_key, kind) for kind in JOURNAL_KINDS]
    return journal().find_one({"_id": {"$in": ids}}, {"_id": 1}) is not None


def recover(dataset, run_key) -> bool:
    """Applies the journal entries a dead process left for ``run_key``: a
    commit first, then a review decision. Call under the dataset lock.
    Returns True if there was one."""
    found = False
    entry = journal().find_one({"_id": _journal_id(dataset, run_key)})
    if entry is not None:
        logger.warning("finishing the commit of run '%s' that an earlier process left half done", run_key)
        _apply_or_roll_back(dataset, entry)
        found = True
    entry = journal().find_one({"_id": _journal_id(dataset, run_key, "decision")})
    if entry is not None:
        _apply_decision(dataset, entry)
        found = True
    return found


def ensure_consistent(dataset, run_key) -> None:
    """Finishes a half-done commit or decision of ``run_key``, if any
    (taking the lock)."""
    if pending(dataset, run_key):
        with dataset_lock(dataset):
            recover(dataset, run_key)


def commit(
    dataset,
    store: RunStore,
    staging: str | None,
    manifest: Manifest | None,
    names: RunNames,
    *,
    state: str,
    threshold,
    video_ids: list,
    replace: bool,
    previous: tuple | None = None,
    before_journal=None,
    videos: dict | None = None,
    flags_only: bool = False,
    **extra,
):
    """Makes ``staging`` (or, if None, the current version) the run's
    current version and writes its outputs for ``video_ids``.

    Args:
        manifest: the staging folder's manifest (None with neither staging
            nor ``replace``: the current version is kept as it is)
        replace: a new run (train, audit, overwrite); else a replay or a
            re-flag, merged into the current version, whose review queue and
            warnings it keeps unless given
        previous: ``(run_dir, sha256, manifest)`` of the version a replay
            started from: the commit refuses if the checkpoints changed meanwhile
        before_journal: called under the lock before the journal entry (for
            writes that are not the run's, such as a requested embeddings field)
        videos: the scored videos in memory (else read back from the files)
        flags_only: the scores are unchanged; write only the flags (a new
            threshold)
        extra: more run-config entries (``review``, ``warnings``)
    """
    with dataset_lock(dataset):
        recover(dataset, names.key)
        current = adopt = None
        if dataset.has_run(names.key):
            config = dataset.get_run_info(names.key).config
            if getattr(config, "method", None) != METHOD:
                raise CSLError(f"run key '{names.key}' belongs to another kind of run")
            current = config
        if not replace:
            if current is None:
                raise CSLError(f"run '{names.key}' was deleted while this call ran; nothing was written")
            manifest, adopt = _merge(dataset, store, staging, manifest, current, previous)
        elif staging is not None:  # checked before the work; checked again now it is under the lock
            taken = unowned_outputs(dataset, names, RunNames.of(current) if current is not None else None)
            if taken:
                raise CSLError(
                    f"run '{names.key}' would write into {taken}, which it does not own; nothing was written"
                )
        version = store.promote(staging) if staging is not None else current.run_dir
        if staging is not None and videos is not None:  # the trajectories moved with their folder
            for v in videos.values():
                if v.trajectory_path is not None:
                    v.trajectory_path = os.path.join(version, os.path.relpath(v.trajectory_path, staging))
        manifest_sha = manifest.save(version) if staging is not None else current.manifest_sha256
        if before_journal is not None:
            before_journal()
        for name in ("review", "warnings"):
            extra.setdefault(name, getattr(current, name, None) if not replace and current else None)
        # review decisions hold the history of the labels they changed: a new run keeps them too
        extra.setdefault("decisions", getattr(current, "decisions", None) if current else None)
        if extra["review"]:
            names = names.with_review()
        if extra["decisions"]:
            names = names.with_decisions()
        entry = dict(
            _id=_journal_id(dataset, names.key),
            run=run_kwargs(names, state, version, manifest_sha, manifest, threshold=threshold, **extra),
            old_names=asdict(RunNames.of(current)) if current is not None else None,
            old_review=(getattr(current, "review", None) or None) if replace and current else None,
            # the last good state, restored if this entry cannot be applied
            previous_run={k: v for k, v in current.serialize().items() if k not in ("cls", "type")}
            if current is not None
            else None,
            # a replacement under another run_dir leaves no orphaned store behind
            old_store=current.run_dir
            if replace
            and current is not None
            and owned_by(dataset, current)
            and RunStore.of(current).key_dir != store.key_dir
            else None,
            video_ids=list(video_ids),
            flags_only=flags_only,
            keep_evaluation=not replace,
            adopt=dict(adopt, version=version) if adopt else None,  # the other videos' trajectories' folder
        )
        journal().replace_one({"_id": entry["_id"]}, entry, upsert=True)
        _apply_or_roll_back(dataset, entry, videos, manifest if staging is not None else None)
    return version


def _apply_or_roll_back(dataset, entry: dict, videos: dict | None = None, manifest=None) -> None:
    """Applies a commit's journal entry; if it cannot be applied, goes back
    to the last good state and raises :class:`CSLError`, so no run key is
    left that no call can use. The last good state is the run before the
    commit, written again from its own verified files (so no field keeps a
    value the failed commit wrote), or no run at all."""
    try:
        _apply(dataset, entry, videos, manifest)
    except Exception as e:
        key = entry["run"]["csl_field"]
        logger.exception("the commit of run '%s' could not be finished; rolling back", key)
        if entry.get("adopt"):  # the previous version's trajectories go back to it
            return_trajectories(entry["adopt"]["current"], entry["adopt"]["version"], entry["adopt"]["arrived"])
        previous = entry.get("previous_run")
        if previous is not None:
            manifest = Manifest.load(previous["run_dir"], previous["manifest_sha256"])
            restore = dict(
                _id=entry["_id"], run=previous, old_names=asdict(RunNames.of(dataset.init_run(**entry["run"]))),
                video_ids=list(manifest.trajectories), keep_evaluation=True,
            )  # fmt: skip
            journal().replace_one({"_id": entry["_id"]}, restore, upsert=True)  # a kill now resumes the restore
            _apply(dataset, restore)  # the same steps, for the version that was current
        else:
            names = RunNames.of(dataset.init_run(**entry["run"]))
            fcfields.delete_outputs(dataset, names.paths())
            fcviews.delete_views(dataset, names.views())
            if dataset.has_run(key):
                dataset.delete_run(key)
            journal().delete_one({"_id": entry["_id"]})
        state = "the previous run is restored" if previous is not None else "no run was kept"
        raise CSLError(f"run '{key}' could not be written ({type(e).__name__}: {e}); {state}") from e


def _merge(dataset, store, staging, manifest, current, previous) -> tuple:
    """A replay's manifest merged with the current version's: its new
    trajectories over everything the current version holds; and what of it
    moves as a folder (:func:`adopt_trajectories`) instead of a link a video."""
    now = load_manifest(dataset, current, known=previous)  # read again only if a commit replaced it
    if previous is not None:
        ours = {k: v for k, v in previous[2].files.items() if not k.startswith("trajectories/")}
        theirs = {k: v for k, v in now.files.items() if not k.startswith("trajectories/")}
        if ours != theirs:
            raise CSLError(f"run '{current.csl_field}' was retrained while this replay ran; nothing was written")
    if staging is None:
        return now, None
    new = set(manifest.trajectories.values())
    stale = {now.trajectories[sid] for sid in manifest.trajectories if sid in now.trajectories}  # scored again
    adopt = can_adopt(current.run_dir)  # else one link per video

    def keep(rel):  # a replay drops the simulation's error probabilities (they belong to the labels it saw)
        return rel not in new and rel not in stale and not rel.startswith("error_probs/")

    store.inherit(staging, current.run_dir, now, keep=lambda r: keep(r) and not (adopt and r.startswith(TRAJECTORIES)))
    for sid, rel in now.trajectories.items():
        if sid not in manifest.trajectories:
            manifest.trajectories[sid] = rel
            manifest.files[rel] = now.files[rel]
            if sid in now.label_runs:
                manifest.label_runs[sid] = now.label_runs[sid]
            if sid in now.label_fingerprints:
                manifest.label_fingerprints[sid] = now.label_fingerprints[sid]
    for rel, sha in now.files.items():
        if keep(rel):
            manifest.files.setdefault(rel, sha)
    return manifest, adoption(current.run_dir, now, manifest) if adopt else None


def _apply(dataset, entry: dict, videos: dict | None = None, manifest=None) -> None:
    """Step 4 and 5 of a commit (``manifest``: the version's, as the commit saved it); every step repeats."""
    run = entry["run"]
    if entry.get("adopt"):  # first: the version's files are complete before anything reads them
        adopt_trajectories(entry["adopt"]["current"], entry["adopt"]["version"])
    names = RunNames(
        run["csl_field"], tuple(run["peer_scores"]), bool(run.get("review")), bool(run.get("decisions")),
        bool((run.get("features") or {}).get("sparse_labels")), RunNames.decodes(run["csl_field"], run.get("fields")),
    )  # fmt: skip
    old = RunNames(**entry["old_names"]) if entry.get("old_names") else None
    previous_results = outputs.stored_summary(dataset, names.key) if entry.get("keep_evaluation") else {}
    if old is not None:
        stale = [p for p in old.paths() if p not in names.paths()]
        fcfields.delete_outputs(dataset, stale)
        fcviews.delete_views(dataset, [v for v in old.views() if v not in names.views()])
        if "mistakenness" in old.peer_scores and "mistakenness" not in names.peer_scores:
            fcpeers.delete_brain_outputs(dataset, old.brain_key)
    if entry.get("old_review"):
        untag_review(dataset, entry["old_review"])
    config = dataset.init_run(**run)
    if dataset.has_run(names.key):
        dataset.update_run_config(names.key, config)
    else:
        dataset.register_run(names.key, config)
    manifest = manifest or Manifest.load(run["run_dir"], run["manifest_sha256"])
    threshold = fcflags.resolve_threshold(run["threshold"], len(manifest.classes))
    ids = entry["video_ids"]
    if ids:
        if videos is None:
            videos = score_from_files(run["run_dir"], manifest, ids, threshold, names.peer_scores)
        if entry.get("flags_only"):
            outputs.write_flags(dataset, names, videos, manifest.classes)
        else:
            samples = dataset.select(ids)
            outputs.add_mistakenness(samples, names, run["label_field"], videos, manifest.classes)
            outputs.write_scores(samples, names, run["label_field"], videos, manifest.classes)
    if run["state"] == "scored":
        fcviews.save_views(dataset, names, threshold)
    outputs.save_summary(dataset, names.key, manifest, run, previous_results.get("evaluation"))
    journal().delete_one({"_id": entry["_id"]})
    before = entry.get("previous_run") or {}  # its manifest was verified when it was read: not parsed again
    RunStore.of(config).cleanup([run["run_dir"]], {before.get("run_dir"): before.get("manifest_sha256")})
    if entry.get("adopt"):  # the replaced videos' old trajectories came along with the folder
        remove_replaced(run["run_dir"], entry["adopt"]["replaced"], set(manifest.files))
    if entry.get("old_store"):
        RunStore.of(dataset.init_run(run_dir=entry["old_store"])).remove_all()


def untag_review(dataset, review: dict | None) -> None:
    """Removes a review queue's tag from exactly the samples and labels it
    put the tag on (``review["tagged"]``); a tag that was there before, or
    that the user added since elsewhere, stays."""
    tagged = (review or {}).get("tagged") or {}
    tag = (review or {}).get("tag")
    if not tag or not tagged:
        return
    if tagged.get("labels"):
        dataset.select_labels(ids=tagged["labels"], fields=tagged["label_path"]).untag_labels(
            tag, label_fields=[tagged["label_path"]]
        )
    if tagged.get("samples"):
        dataset.select(tagged["samples"]).untag_samples(tag)


def _tag_new(queue, tag: str, label_path: str) -> dict:
    """Tags the queue's samples and labels that do not carry ``tag`` yet;
    returns what it tagged."""
    ids, tags = queue.values(["id", "tags"])
    samples = [sid for sid, ts in zip(ids, tags) if tag not in (ts or [])]
    label_ids, label_tags = queue.values([f"{label_path}.id", f"{label_path}.tags"])
    if label_path.startswith("frames."):  # per video, per frame
        label_ids = [i for video in label_ids for i in video or []]
        label_tags = [ts for video in label_tags for ts in video or []]
    labels = [i for i, ts in zip(label_ids, label_tags) if i is not None and tag not in (ts or [])]
    if labels:
        queue.select_labels(ids=labels, fields=label_path).tag_labels(tag, label_fields=[label_path])
    if samples:
        queue.select(samples).tag_samples(tag)
    return {"samples": samples, "labels": labels, "label_path": label_path}


def write_decision(dataset, csl_field, op, names, label_field, decision) -> None:
    """Saves a review decision (``op="apply"``) or its undo as the run's
    journal entry, then writes it. Call under the dataset lock."""
    if op == "apply":  # the run record claims the decisions' names before their first value is written
        config = dataset.get_run_info(csl_field).config
        if not getattr(config, "decisions", None):
            config.decisions = True
            config.fields, config.views = names.fields(), names.views()
            dataset.update_run_config(csl_field, config)
    entry = dict(
        _id=_journal_id(dataset, csl_field, "decision"), op=op, names=asdict(names), label_field=label_field,
        decision=decision,
    )  # fmt: skip
    journal().replace_one({"_id": entry["_id"]}, entry, upsert=True)
    _apply_decision(dataset, entry)


def _apply_decision(dataset, entry: dict) -> None:
    """Writes a journaled decision (or its undo); every step can be repeated."""
    import fiftyone as fo  # lazy: importing FiftyOne is slow

    names = RunNames(**{**entry["names"], "peer_scores": tuple(entry["names"]["peer_scores"])})
    d = entry["decision"]
    first, last = d["first"], d["last"]
    field = strip_frames_prefix(entry["label_field"])
    undo = entry["op"] == "undo"
    targets = {}
    if undo:
        targets = {f: d["previous_labels"][f - first] for f in d["changed_frames"] or []}
    elif d.get("new_labels"):  # the decoder's label frame by frame
        targets = {f: d["new_labels"][f - first] for f in d["changed_frames"] or []}
    elif d["new_label"] is not None:
        targets = {f: d["new_label"] for f in d["changed_frames"] or []}
    sample = dataset[d["sample_id"]]
    sample.reload(hard=True)  # an object already in memory is the same one, as it was loaded then
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
                **{k: d[k] for k in ("error_type", "given_label", "suggested_label", "new_label", "new_labels",
                                     "mean_csl", "decided_at", "previous_labels", "changed_frames", "seq",
                                     "label_field", "run_version") if k in d},
            )
        )  # fmt: skip
    sample[names.decisions_field] = fo.TemporalDetections(detections=dets)
    sample.save()
    _sync_frame_states(dataset, names, d["sample_id"], dets)
    journal().delete_one({"_id": entry["_id"]})


def _sync_frame_states(dataset, names, sample_id, dets) -> None:
    """``frames.<key>_decision`` of one video from its decisions (newest wins)."""
    numbers = dataset.select(sample_id).values("frames.frame_number")[0] or []
    state = {int(f): None for f in numbers}
    order = [(d.get_field("seq") if d.has_field("seq") else None, d["decided_at"], d.id, d) for d in dets]
    for *_, d in sorted(order, key=lambda x: (x[0] is not None, x[0] or 0, x[1], x[2])):
        for f in range(int(d.support[0]), int(d.support[1]) + 1):
            if f in state:
                state[f] = d.label
    dataset.set_values(f"frames.{names.decision_frame_field}", {sample_id: state}, key_field="id")


def write_review_queue(
    dataset, csl_field, names: RunNames, label_field, review: dict, picks: list, description
) -> None:
    """Replaces run ``csl_field``'s review queue: the frames' priorities
    (``picks``, most urgent first), the first rank per video, the tag of
    the queued frames and samples (``review["tag"]``) and the saved view."""
    from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

    with dataset_lock(dataset):
        recover(dataset, csl_field)
        config = dataset.get_run_info(csl_field).config  # as it is now, under the lock
        untag_review(dataset, getattr(config, "review", None))
        fcfields.delete_outputs(dataset, [f"frames.{names.review_priority_field}", names.review_first_field])
        per_video = {}
        for rank, (sid, number) in enumerate(picks, 1):
            per_video.setdefault(sid, {})[int(number)] = rank
        # the run record claims the names before their first value is written
        config.review = review
        config.fields, config.views = names.fields(), names.views()
        dataset.update_run_config(csl_field, config)
        dataset.set_values(f"frames.{names.review_priority_field}", per_video, key_field="id")
        dataset.set_values(
            names.review_first_field, {sid: min(r.values()) for sid, r in per_video.items()}, key_field="id"
        )
        # frames a reviewer has decided leave the queue as the decisions are written
        queued = (F(names.review_priority_field) != None) & (F(names.decision_frame_field) == None)  # noqa: E711
        queue = dataset.match_frames(queued).sort_by(names.review_first_field)
        if review.get("tag"):
            review["tagged"] = _tag_new(queue, review["tag"], fcfields.label_path(dataset, label_field))
            config.review = review
            dataset.update_run_config(csl_field, config)
        dataset.save_view(names.review_view, queue, overwrite=True, description=description)

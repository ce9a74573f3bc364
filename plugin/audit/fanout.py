"""An audit cut into parts that several workers run: features by video, each
fold's training, replay by video, and one merge that writes the dataset once.

The parts form a graph of four stages::

    features (S shards of videos) -> train (one per fold) -> replay (S shards) -> merge

Its state is one document in the database collection ``fiftyone_csl_graphs``
(so it reaches workers on other machines), and its files live in the run's
folder, in ``.fanout-<graph id>/`` beside the versions (shared storage when
workers run on several machines). Each part re-checks the call as queued
(the same labels, features and settings, by fingerprint), writes only inside
that folder, and records what it made in ``parts/``. The database says which
part finishes a stage (an atomic update): that part's caller queues the next
stage. The merge assembles the manifest from the parts in a fixed order and
commits the folder as the run's new version through
:func:`~fiftyone_csl.plugin.writeback.commit`, the only write to the
dataset; so the fields and manifest do not depend on how many workers ran
the parts or in which order. Until the merge the dataset is untouched, and a
part that fails marks the graph failed and stops it.

The parts are FiftyOne delegated operations of one unlisted operator
(:mod:`fiftyone_csl.operators.fanout`), which calls :func:`run_part`.
"""

import dataclasses
import datetime
import json
import os
import shutil
import time
import uuid

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from ..core import train as fctrain
from ..core.checks import check_int
from ..core.errors import CSLError
from ..core.stages import procedure_counts, replay_and_score, score_file, train_into
from ..core.utils import StagedProgress, atomic_write_json, balanced_groups
from ..runs.locks import run_lock
from ..runs.record import operator_uri
from .delegated import failed_operation, queue_delegated
from .plan import plan_audit
from .prepare import attach_features
from .steps import commit_audit

COLLECTION = "fiftyone_csl_graphs"
PART_OPERATOR = operator_uri("run_audit_part")
STAGES = ("features", "train", "replay", "merge")
REFUSED = ("simulation", "store_embeddings_field", "progress")


def _collection():
    import fiftyone.core.odm as foo  # lazy: importing FiftyOne is slow

    return foo.get_db_conn()[COLLECTION]


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def create_graph(
    samples, label_field, csl_field="csl", embeddings_field=None, shards: int = 2, view=None, **kwargs
) -> dict:
    """Checks an audit as :func:`~fiftyone_csl.compute_csl` would and records
    its graph; nothing is queued, trained or written to the dataset.

    Returns the graph document: ``_id``, the stages' part counts, the
    shards' sample ids and the first stage to queue.

    Raises:
        CSLError: any check of :func:`~fiftyone_csl.compute_csl` fails, an
            option the fan-out does not run is given (``simulation``,
            ``store_embeddings_field``, ``rounds=2``: the fan-out trains one
            round), or another graph of this run key
            has parts queued or running
    """
    given = sorted(k for k in REFUSED if kwargs.get(k) not in (None, False))
    if given:
        raise CSLError(f"an audit over several workers does not take {given}; run it in one call instead")
    kwargs = {k: v for k, v in kwargs.items() if k not in REFUSED}
    if kwargs.get("rounds") == 2:
        raise CSLError("an audit over several workers trains one round: run rounds=2 in one call instead")
    kwargs["rounds"] = 1  # the second round needs every video's first-round suspects: one call runs it
    audit = plan_audit(samples, label_field, csl_field, embeddings_field, True, "compute_csl", **kwargs)
    plan = audit.training
    dataset = samples._dataset
    dataset_id = str(dataset._doc.id)
    try:
        queued_kwargs = json.loads(json.dumps(kwargs))
    except TypeError as e:
        raise CSLError(f"an audit over several workers needs options that can be stored as JSON: {e}") from None
    groups = balanced_groups({s.sample_id: len(s.frame_numbers) for s in plan.prepared.sequences}, shards)
    graph_id = uuid.uuid4().hex[:16]
    folder = os.path.join(plan.store.key_dir, f".fanout-{graph_id}")
    first = "features" if plan.prepared.spec.embeddings_field is None else "train"
    doc = {
        "_id": graph_id,
        "dataset_id": dataset_id,
        "dataset_name": dataset.name,
        "run_key": csl_field,
        "label_field": label_field,
        "embeddings_field": embeddings_field,
        "kwargs": queued_kwargs,
        "fingerprint": plan.fingerprint(dataset_id),
        "folder": folder,
        "shards": groups,
        "counts": {"features": len(groups), "train": len(plan.fold_members), "replay": len(groups), "merge": 1},
        "first": first,
        "done": {stage: [] for stage in STAGES},
        "queued": [first],
        "seconds": {stage: {} for stage in STAGES},
        "state": "running",
        "error": None,
        "created": _now(),
        "started": time.time(),
        "view": view if view is not None else samples.view()._serialize(),
    }
    coll = _collection()
    # one running graph per dataset and key, decided by the database (two calls at once: one wins)
    coll.create_index(
        [("dataset_id", 1), ("run_key", 1)], unique=True, name="one_running_graph",
        partialFilterExpression={"state": "running"},
    )  # fmt: skip
    try:
        coll.insert_one(doc)
    except DuplicateKeyError:
        busy = coll.find_one({"dataset_id": dataset_id, "run_key": csl_field, "state": "running"}) or {}
        raise CSLError(
            f"an audit of run '{csl_field}' over several workers is in progress (graph {busy.get('_id')}); "
            "wait for it, or cancel it with fiftyone_csl.cancel_graph"
        ) from None
    os.makedirs(os.path.join(folder, "parts"))
    return doc


def audit_graph(graph_id: str) -> dict:
    """The state of an audit queued over several workers: ``state``
    (``"running"``, ``"completed"``, ``"failed"``, ``"cancelled"``),
    ``error``, each stage's part ``counts`` and finished parts (``done``),
    and each finished part's ``seconds``.

    A part that FiftyOne reports failed before it could run (its worker
    lacks the plugin, say) fails the graph here, with FiftyOne's error.
    """
    doc = get_graph(graph_id)
    if doc["state"] == "running" and not _dataset_exists(doc["dataset_id"]):
        cancel_graph(graph_id, state="failed", error=f"dataset '{doc['dataset_name']}' was deleted")
        doc = get_graph(graph_id)
    if doc["state"] == "running":
        failed = failed_operation(doc.get("operations", []))
        if failed is not None:
            _collection().update_one(
                {"_id": graph_id, "state": "running"},
                {"$set": {"state": "failed", "error": failed, "finished": _now()}},
            )
            _remove_folder(doc["folder"])
            doc = get_graph(graph_id)
    keys = ("_id", "run_key", "state", "error", "counts", "done", "seconds", "created", "finished", "operations")
    return {k: doc.get(k) for k in keys}


def get_graph(graph_id: str) -> dict:
    doc = _collection().find_one({"_id": graph_id})
    if doc is None:
        raise CSLError(f"no audit graph {graph_id!r}")
    return doc


def _dataset_exists(dataset_id: str) -> bool:
    import fiftyone.core.odm as foo  # lazy: importing FiftyOne is slow

    return foo.get_db_conn().datasets.find_one({"_id": ObjectId(dataset_id)}, {"_id": 1}) is not None


def cancel_graph(graph_id: str, state: str = "cancelled", error: str | None = None) -> None:
    """Stops a graph: its parts still queued are removed from FiftyOne's
    queue, parts already running find it stopped when they finish, and its
    folder is removed. The dataset and the run's current version are
    untouched."""
    doc = _collection().find_one_and_update(
        {"_id": graph_id, "state": "running"}, {"$set": {"state": state, "error": error, "finished": _now()}}
    )
    if doc is None:
        return
    from fiftyone.operators.delegated import DelegatedOperationService  # lazy: importing FiftyOne is slow
    from fiftyone.operators.executor import ExecutionRunState  # lazy: importing FiftyOne is slow

    service = DelegatedOperationService()
    for op_id in doc.get("operations", []):
        try:
            op = service.get(ObjectId(op_id))
            if op is not None and op.run_state == ExecutionRunState.QUEUED:
                service.delete_operation(ObjectId(op_id))
        except Exception:  # already deleted by the user
            continue
    _remove_folder(doc["folder"])


def _remove_folder(folder: str) -> None:
    """Removes a graph's own folder (``.fanout-<id>`` in its run's folder), never a link planted there."""
    if os.path.basename(folder).startswith(".fanout-") and os.path.isdir(folder) and not os.path.islink(folder):
        shutil.rmtree(folder, ignore_errors=True)


def run_part(samples, graph_id: str, stage: str, index: int, progress=None, delegation_target=None) -> str | None:
    """Runs part ``index`` of ``stage`` of graph ``graph_id`` over
    ``samples`` (the collection the audit was queued on).

    When this part finishes its stage (the database decides which part that
    is), queues the next stage's parts and returns its name, else None. A
    part that raises marks the graph failed first.
    """
    doc = get_graph(graph_id)
    if doc["state"] != "running":
        raise CSLError(f"audit graph {graph_id} is {doc['state']}; part {stage} {index} not run")
    if stage not in STAGES:
        raise CSLError(f"unknown stage {stage!r}")
    started = time.time()
    part, weights = _PARTS[stage]
    try:
        part(samples, doc, index, StagedProgress(progress, weights))
    except BaseException as e:
        _collection().update_one(
            {"_id": graph_id, "state": "running"},
            {"$set": {"state": "failed", "error": f"{stage} {index}: {e}", "finished": _now()}},
        )
        # a folder the merge committed is a version now (renamed): what is left here is no one's
        shutil.rmtree(doc["folder"], ignore_errors=True)
        raise
    following = _finish(graph_id, stage, index, time.time() - started)
    if following is not None:
        queue_stage(doc, following, delegation_target)
    return following


def _finish(graph_id, stage, index, seconds) -> str | None:
    coll = _collection()
    doc = coll.find_one_and_update(
        {"_id": graph_id, "state": "running"},
        {"$addToSet": {f"done.{stage}": index}, "$set": {f"seconds.{stage}.{index}": round(seconds, 3)}},
        return_document=True,
    )
    if doc is None:
        return None
    if stage == "merge":
        coll.update_one({"_id": graph_id}, {"$set": {"state": "completed", "finished": _now()}})
        return None
    if len(doc["done"][stage]) < doc["counts"][stage]:
        return None
    following = STAGES[STAGES.index(stage) + 1]
    won = coll.find_one_and_update({"_id": graph_id, "queued": {"$ne": following}},
                                   {"$addToSet": {"queued": following}})  # fmt: skip
    return following if won is not None else None


# --- the parts ---------------------------------------------------------------------------------


def _replan(samples, doc):
    """The audit as queued, checked again; refuses if the labels, features
    or settings changed since."""
    audit = plan_audit(samples, doc["label_field"], doc["run_key"], doc["embeddings_field"], True, "compute_csl",
                       **doc["kwargs"])  # fmt: skip
    if audit.training.fingerprint(doc["dataset_id"]) != doc["fingerprint"]:
        raise CSLError("the labels, features or settings changed since this audit was queued; queue it again")
    return audit


def _subset(prepared, ids: list):
    keep = set(ids)
    index = [i for i, s in enumerate(prepared.sequences) if s.sample_id in keep]
    strides = None if prepared.strides is None else [prepared.strides[i] for i in index]
    return dataclasses.replace(prepared, sequences=[prepared.sequences[i] for i in index], strides=strides)


def _features_part(samples, doc, index, progress):
    audit = _replan(samples, doc)
    attach_features(_subset(audit.training.prepared, doc["shards"][index]), audit.training.device, audit.cache_dir,
                    progress)  # fmt: skip


def _train_part(samples, doc, fold, progress):
    audit = _replan(samples, doc)
    plan = audit.training
    manifest = plan.new_manifest(doc["dataset_id"])
    training = _subset(plan.prepared, fctrain.training_ids(manifest.folds, fold, plan.config.cross_fit))
    attach_features(training, plan.device, audit.cache_dir, progress)  # from the cache the features parts filled
    train_into(doc["folder"], manifest, training.sequences, plan.config, progress, plan.device, folds=[fold])
    checkpoints = manifest.checkpoints[fold]
    part = {"checkpoints": checkpoints, "files": {rel: manifest.files[rel] for rel in checkpoints}}
    atomic_write_json(os.path.join(doc["folder"], "parts", f"train_{fold:03d}.json"), part)


def _assembled(doc, plan, replays=False):
    """The manifest of the graph's folder, from the parts in a fixed order."""
    manifest = plan.new_manifest(doc["dataset_id"])
    manifest.checkpoints = []
    for fold in range(doc["counts"]["train"]):
        part = _read_part(doc, f"train_{fold:03d}.json")
        manifest.checkpoints.append(part["checkpoints"])
        manifest.files.update(part["files"])
    if replays:
        for index in range(doc["counts"]["replay"]):
            part = _read_part(doc, f"replay_{index:03d}.json")
            manifest.trajectories.update(part["trajectories"])
            manifest.label_runs.update(part.get("label_runs") or {})
            manifest.label_fingerprints.update(part.get("label_fingerprints") or {})
            manifest.files.update(part["files"])
        order = [s.sample_id for s in plan.prepared.sequences]  # the inline audit's order
        manifest.trajectories = {sid: manifest.trajectories[sid] for sid in order}
        for name in ("label_runs", "label_fingerprints"):
            kept = getattr(manifest, name)
            setattr(manifest, name, {sid: kept[sid] for sid in order if sid in kept})
        manifest.files = dict(sorted(manifest.files.items()))
    manifest.checkpoint_bytes_per_epoch = manifest.checkpoint_bytes(doc["folder"])
    return manifest


def _read_part(doc, name):
    path = os.path.join(doc["folder"], "parts", name)
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        raise CSLError(f"part {name} of audit graph {doc['_id']} is missing from {doc['folder']}") from None


def _replay_part(samples, doc, index, progress):
    audit = _replan(samples, doc)
    plan = audit.training
    shard = _subset(plan.prepared, doc["shards"][index])
    attach_features(shard, plan.device, audit.cache_dir, progress)
    manifest = _assembled(doc, plan)
    for checkpoints in manifest.checkpoints:  # every checkpoint as its training part recorded it
        for rel in checkpoints:
            manifest.verified_path(doc["folder"], rel)
    replay_and_score(doc["folder"], manifest, shard.sequences, plan.device, audit.precision, progress,
                     audit.threshold_value, audit.peer_scores)  # fmt: skip
    files = {rel: manifest.files[rel] for rel in manifest.trajectories.values()}
    part = {"trajectories": manifest.trajectories, "files": files}
    for name in ("label_runs", "label_fingerprints"):
        kept = getattr(manifest, name)
        part[name] = {sid: kept[sid] for sid in manifest.trajectories if sid in kept}
    atomic_write_json(os.path.join(doc["folder"], "parts", f"replay_{index:03d}.json"), part)


def _merge_part(samples, doc, index, progress):
    audit = _replan(samples, doc)
    plan = audit.training
    dataset = samples._dataset
    manifest = _assembled(doc, plan, replays=True)
    route = manifest.fold_router()
    counts = procedure_counts(manifest)
    videos = {}
    with progress.stage("replay", len(plan.prepared.sequences), "videos") as stage:
        for s in plan.prepared.sequences:
            path = manifest.verified_path(doc["folder"], manifest.trajectories[s.sample_id])
            videos[s.sample_id] = score_file(
                s.sample_id, path, manifest, route(s.sample_id), audit.threshold_value, audit.peer_scores, counts
            )
            stage.update()
    manifest.seconds = round(time.time() - doc["started"], 2)
    shutil.rmtree(os.path.join(doc["folder"], "parts"))
    with run_lock(dataset, doc["run_key"]), progress.stage("write", 1, "steps"):
        commit_audit(dataset, audit, doc["folder"], manifest, videos, audit.threshold_value)


_PARTS = {  # each part and the weights of its progress stages
    "features": (_features_part, {"features": 1}),
    "train": (_train_part, {"features": 0.1, "train": 1}),
    "replay": (_replay_part, {"features": 0.1, "replay": 1}),
    "merge": (_merge_part, {"replay": 1, "write": 1}),
}


# --- queueing ----------------------------------------------------------------------------------


def queue_stage(graph: dict, stage: str, delegation_target=None) -> list:
    """Queues every part of ``stage`` of ``graph`` as a delegated operation;
    returns the queued operations."""
    count = graph["counts"][stage]
    queued = [
        queue_delegated(
            PART_OPERATOR,
            f"CSL audit '{graph['run_key']}': {stage} {index + 1}/{count}",
            graph["dataset_name"],
            graph["view"],
            dict(graph_id=graph["_id"], stage=stage, index=index),
            delegation_target,
        )  # fmt: skip
        for index in range(count)
    ]
    _collection().update_one({"_id": graph["_id"]}, {"$push": {"operations": {"$each": [str(op.id) for op in queued]}}})
    return queued


def queue_audit(
    samples, label_field, csl_field="csl", embeddings_field=None, workers=2, delegation_target=None, **kwargs
) -> dict:
    """Queues an audit as a graph of delegated operations that several
    workers run side by side: features by groups of videos, each fold's
    training, replay by groups of videos, and one merge that writes the
    fields, flags, views and run record once.

    Workers are FiftyOne's (``fiftyone delegated launch``), on this machine
    or on others that share the MongoDB database and the run folder
    (``run_dir`` and the feature cache on shared storage). Everything
    :func:`fiftyone_csl.compute_csl` checks is checked here, before anything
    is queued; each part checks again that the labels and settings are the
    ones queued. The result does not depend on how many workers run it.

    Example::

        import fiftyone_csl as fcsl

        graph = fcsl.queue_audit(dataset, "phase", workers=4)
        # on each machine: fiftyone delegated launch
        fcsl.audit_graph(graph["graph_id"])["state"]  # "running", then "completed"

    Args:
        samples: a video Dataset or DatasetView
        label_field, csl_field, embeddings_field: as in :func:`fiftyone_csl.compute_csl`
        workers (2): the number of video groups for the features and the
            replay (the training has one part per fold)
        delegation_target (None): the orchestrator to queue for
        **kwargs: the options of :func:`fiftyone_csl.compute_csl`, but for
            ``simulation`` and ``store_embeddings_field``

    Returns:
        a dict with ``graph_id``, the first stage's ``queued`` operation ids
        and each stage's part count (``counts``)

    Raises:
        CSLError: as :func:`fiftyone_csl.compute_csl`; nothing was queued
    """
    workers = check_int("workers", workers, 1)
    view = samples.view()._serialize()
    graph = create_graph(samples, label_field, csl_field, embeddings_field, shards=workers, view=view, **kwargs)
    try:
        queued = queue_stage(graph, graph["first"], delegation_target)
    except Exception:
        cancel_graph(graph["_id"])
        raise
    return {"graph_id": graph["_id"], "queued": [str(op.id) for op in queued], "counts": graph["counts"]}

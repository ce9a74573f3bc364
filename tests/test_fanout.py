"""An audit fanned out over delegated workers (features by video, one
training per fold, replay by video, one merge) gives the same fields and
manifest whether 1, 2 or 4 worker processes run it, the same as one call in
this process; a graph whose labels change after queueing fails and writes
nothing."""

import os
import subprocess
import sys

import fiftyone_csl as fcsl
import numpy as np
import pytest
from _common import snapshot
from fiftyone_csl.plugin.core.errors import CSLError
from fiftyone_csl.plugin.runs.record import get_run_config, load_manifest

SETTINGS = dict(epochs=3, folds=2, seed=5, peer_scores=["aum"])

# what `fiftyone delegated launch` does: take queued operations until there are none
WORKER = """
import sys, time
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone_csl.plugin.audit import fanout

graph_id, dataset_name = sys.argv[1:3]
service = DelegatedOperationService()
while fanout.audit_graph(graph_id)["state"] == "running":
    if not service.execute_queued_operations(dataset_name=dataset_name, limit=1, log=True):
        time.sleep(0.2)
"""


def _run(dataset, graph_id, processes: int, **env):
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, graph_id, dataset.name],
            env=dict(os.environ, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for _ in range(processes)
    ]
    logs = [w.communicate(timeout=900)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n".join(log[-3000:] for log in logs)
    return [log.count("Running operation") for log in logs]


def _outputs(dataset, key):
    dataset.reload()
    manifest = load_manifest(dataset, get_run_config(dataset, key))
    errors = [
        [(d.label, tuple(d.support), d.suggested_label) for d in (e.detections if e else [])]
        for e in dataset.values(f"{key}_errors")
    ]
    return {
        "csl": dataset.values(f"frames.{key}"),
        "aum": dataset.values(f"frames.{key}_aum"),
        "max": dataset.values(f"{key}_max"),
        "errors": errors,
        "files": manifest.files,
        "checkpoints": manifest.checkpoints,
        "folds": manifest.folds,
        "trajectories": manifest.trajectories,
    }


def test_one_two_and_four_workers_give_the_fields_and_manifest_of_one_call(scratch):
    scratch.persistent = True  # the workers open it by name
    runs = {}
    for processes in (1, 2, 4):
        key = f"fan{processes}"
        graph = fcsl.compute_csl(scratch, "phase", key, workers=4, **SETTINGS)
        assert graph["counts"] == {"features": 4, "train": 2, "replay": 4, "merge": 1}
        assert len(graph["queued"]) == 4  # the features parts; each later stage is queued by the one before
        scratch.reload()
        assert key not in scratch.list_runs()  # nothing ran in this process
        per_worker = _run(scratch, graph["graph_id"], processes)
        state = fcsl.audit_graph(graph["graph_id"])
        assert state["state"] == "completed", state["error"]
        assert sum(per_worker) == 11
        assert {stage: sorted(done) for stage, done in state["done"].items()} == {
            "features": [0, 1, 2, 3], "train": [0, 1], "replay": [0, 1, 2, 3], "merge": [0]}  # fmt: skip
        runs[processes] = _outputs(scratch, key)
        assert not [n for n in os.listdir(os.path.dirname(get_run_config(scratch, key).run_dir))
                    if n.startswith(".fanout-")]  # fmt: skip
    fcsl.compute_csl(scratch, "phase", "inline", rounds=1, **SETTINGS)  # a graph trains one round
    inline = _outputs(scratch, "inline")
    for processes in (2, 4):
        assert runs[processes] == runs[1]
    for name in ("files", "checkpoints", "folds", "trajectories", "errors", "max"):
        assert inline[name] == runs[1][name], name
    for name in ("csl", "aum"):
        a = np.concatenate([np.asarray(v, float) for v in inline[name]])
        b = np.concatenate([np.asarray(v, float) for v in runs[1][name]])
        np.testing.assert_array_equal(a, b)
    assert scratch.count("frames.fan1") == scratch.count("frames.phase")


def test_a_graph_whose_labels_change_after_queueing_fails_and_writes_nothing(scratch):
    scratch.persistent = True
    graph = fcsl.compute_csl(scratch, "phase", "late", embeddings_field="emb", workers=2, **SETTINGS)
    sample = scratch.first()
    frame = sample.frames.first()
    frame["phase"].label = "phase_6" if frame["phase"].label != "phase_6" else "phase_1"
    sample.save()
    before = snapshot(scratch)
    _run(scratch, graph["graph_id"], 1)
    state = fcsl.audit_graph(graph["graph_id"])
    assert state["state"] == "failed" and "changed since" in state["error"]
    assert snapshot(scratch) == before
    assert "late" not in scratch.list_runs()
    # a new graph of the same key may be queued once this one has stopped; cancelling unqueues its parts
    again = fcsl.compute_csl(scratch, "phase", "late", embeddings_field="emb", workers=2, **SETTINGS)
    fcsl.cancel_graph(again["graph_id"])
    assert fcsl.audit_graph(again["graph_id"])["state"] == "cancelled"
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    left = DelegatedOperationService().list_operations(dataset_name=scratch.name, run_state=ExecutionRunState.QUEUED)
    assert not [op for op in left if str(op.id) in again["queued"]]


def test_a_part_fiftyone_cannot_run_fails_the_graph_and_writes_nothing(scratch, tmp_path):
    scratch.persistent = True
    graph = fcsl.compute_csl(scratch, "phase", "noplugin", embeddings_field="emb", workers=2, **SETTINGS)
    before = snapshot(scratch)
    _run(scratch, graph["graph_id"], 1, FIFTYONE_PLUGINS_DIR=str(tmp_path))  # a worker without the plugin
    state = fcsl.audit_graph(graph["graph_id"])
    assert state["state"] == "failed" and "does not exist" in state["error"], state
    assert snapshot(scratch) == before


def test_a_worker_killed_mid_part_leaves_the_previous_run_and_the_graph_can_be_cancelled(scratch):
    import signal
    import time

    from bson import ObjectId
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    scratch.persistent = True
    first = fcsl.compute_csl(scratch, "phase", "kept", embeddings_field="emb", **SETTINGS)
    before = snapshot(scratch)
    graph = fcsl.compute_csl(scratch, "phase", "kept", embeddings_field="emb", workers=2, overwrite=True,
                             **dict(SETTINGS, epochs=40))  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-c", WORKER, graph["graph_id"], scratch.name], env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    service = DelegatedOperationService()
    deadline = time.time() + 300
    while time.time() < deadline:  # a training part is running
        ops = fcsl.audit_graph(graph["graph_id"])["operations"]
        states = [service.get(ObjectId(op_id)).run_state for op_id in ops]
        if ExecutionRunState.RUNNING in states:
            break
        time.sleep(0.2)
    time.sleep(1.5)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert fcsl.audit_graph(graph["graph_id"])["state"] == "running"  # FiftyOne cannot tell the worker died
    assert snapshot(scratch) == before
    loaded = fcsl.load_csl_results(scratch, "kept")
    sid = next(iter(first.videos))
    np.testing.assert_array_equal(loaded.videos[sid].scores["csl"], first.videos[sid].scores["csl"])
    with pytest.raises(CSLError, match="in progress"):
        fcsl.compute_csl(scratch, "phase", "kept", embeddings_field="emb", workers=2, overwrite=True, **SETTINGS)
    fcsl.cancel_graph(graph["graph_id"])
    key_dir = os.path.dirname(get_run_config(scratch, "kept").run_dir)
    assert not [n for n in os.listdir(key_dir) if n.startswith(".fanout-")]
    again = fcsl.compute_csl(scratch, "phase", "kept", embeddings_field="emb", workers=2, overwrite=True, **SETTINGS)
    _run(scratch, again["graph_id"], 1)
    assert fcsl.audit_graph(again["graph_id"])["state"] == "completed"
    assert scratch.count("frames.kept") == scratch.count("frames.phase")


def test_bad_fan_out_options_fail_before_anything_is_queued(scratch):
    from fiftyone.operators.delegated import DelegatedOperationService

    service = DelegatedOperationService()
    queued = len(service.list_operations(dataset_name=scratch.name))
    for kwargs, message in [
        (dict(workers=0), "workers"),
        (dict(workers=2, simulation=True), "does not take"),
        (dict(workers=2, epochs=0), "epochs"),
        (dict(workers=2, folds=99), "folds"),
        (dict(workers=2, rounds=2), "one round"),
    ]:
        with pytest.raises(CSLError, match=message):
            fcsl.compute_csl(scratch, "phase", "bad", embeddings_field="emb", **kwargs)
    assert len(service.list_operations(dataset_name=scratch.name)) == queued


def test_a_sparse_label_audit_fans_out_as_one_call_does(scratch):
    import fiftyone as fo

    scratch.persistent = True
    ids, numbers, labels = scratch.values(["id", "frames.frame_number", "frames.phase.label"])
    sparse = {
        sid: {n: fo.Classification(label=x) if n % 10 == 1 and sid != ids[0] else None for n, x in zip(ns, ls)}
        for sid, ns, ls in zip(ids, numbers, labels)
    }  # fmt: skip
    scratch.set_values("frames.sparse", sparse, key_field="id")
    options = dict(epochs=3, folds=2, seed=5, embeddings_field="emb", sparse_labels=True, mgw_sigma=2.0)
    fcsl.compute_csl(scratch, "sparse", "inline", progress=False, **options)
    graph = fcsl.compute_csl(scratch, "sparse", "fanned", workers=2, **options)
    _run(scratch, graph["graph_id"], 1)
    assert fcsl.audit_graph(graph["graph_id"])["state"] == "completed"
    scratch.reload()
    for suffix in ("", "_predictions.label", "_propagated.label"):
        assert scratch.values(f"frames.fanned{suffix}") == scratch.values(f"frames.inline{suffix}")
    fanned, inline = fcsl.run_summary(scratch, "fanned"), fcsl.run_summary(scratch, "inline")
    assert fanned["labelled_fraction"] == inline["labelled_fraction"] and fanned["labelled_fraction"][ids[0]] == 0.0

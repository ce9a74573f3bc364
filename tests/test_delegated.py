"""A delegated audit runs in a separate worker process, as with
``fiftyone delegated launch``."""

import os
import subprocess
import sys

import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionRunState
from fiftyone_csl.plugin.runs.record import operator_uri

WORKER = (
    "from fiftyone.operators.delegated import DelegatedOperationService as Service; "
    "Service().execute_queued_operations(limit=1, log=True)"
)


def test_queued_audit_runs_in_a_worker_process(scratch):
    scratch.persistent = True  # the worker opens it by name
    audit = foo.get_operator(operator_uri("audit_video_labels"))
    queued = audit(scratch, "frames.phase", csl_field="dg", embeddings_field="emb", epochs=5, folds=2, delegate=True)
    assert queued.delegated
    service = DelegatedOperationService()
    ops = service.list_operations(dataset_name=scratch.name)
    assert len(ops) == 1 and ops[0].run_state == ExecutionRunState.QUEUED
    scratch.reload()
    assert "dg" not in scratch.list_runs()  # nothing ran in this process

    worker = subprocess.run(
        [sys.executable, "-c", WORKER], env=dict(os.environ), capture_output=True, text=True, timeout=900
    )
    assert worker.returncode == 0, worker.stderr[-3000:]

    op = service.get(ops[0].id)
    assert op.run_state == ExecutionRunState.COMPLETED, op.run_state
    assert op.result.result["run_key"] == "dg"
    scratch.reload()
    assert "dg" in scratch.list_runs()
    assert scratch.count("frames.dg") == scratch.count("frames.phase")
    assert "dg-suspect-clips" in scratch.list_saved_views()
    service.delete_operation(op.id)


def _worker(dataset_name):
    code = (
        "from fiftyone.operators.delegated import DelegatedOperationService as Service; "
        f"Service().execute_queued_operations(dataset_name={dataset_name!r}, log=True)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_replay_shards_run_by_two_workers_write_every_video_once(scratch):
    """A trained run's replay queued as 4 delegated shards and run by 2 worker
    processes at once gives the same frames, counts and manifest as one
    replay in this process."""
    import fiftyone_csl as fcsl

    scratch.persistent = True
    fcsl.train_checkpoints(scratch, "phase", "sh", embeddings_field="emb", epochs=3, folds=2)
    frames_before = scratch.count("frames")
    replay = foo.get_operator(operator_uri("replay_checkpoints"))
    out = replay(scratch, "sh", shards=4, peer_scores=["aum"])
    assert out.result["queued_shards"] == 4
    service = DelegatedOperationService()
    ops = service.list_operations(dataset_name=scratch.name, run_state=ExecutionRunState.QUEUED)
    assert len(ops) == 4
    shard_ids = [set(_shard_view(scratch, service.get(op.id)).values("id")) for op in ops]
    assert set().union(*shard_ids) == set(scratch.values("id"))
    assert sum(len(s) for s in shard_ids) == len(scratch)  # disjoint

    workers = [_worker(scratch.name) for _ in range(2)]
    logs = [w.communicate(timeout=900)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n".join(log[-3000:] for log in logs)
    print("shards run per worker:", [log.count("Running operation") for log in logs])

    states = [service.get(op.id).run_state for op in ops]
    errors = [getattr(service.get(op.id).result, "error", None) for op in ops]
    assert states == [ExecutionRunState.COMPLETED] * 4, (states, errors, logs)
    scratch.reload()
    assert scratch.count("frames") == frames_before  # no frame created or duplicated
    assert scratch.count("frames.sh") == scratch.count("frames.phase")
    assert scratch.count("frames.sh_aum") == scratch.count("frames.phase")
    from fiftyone_csl.plugin.runs.record import get_run_config, load_manifest

    manifest = load_manifest(scratch, get_run_config(scratch, "sh"))  # verified against the run record
    assert sorted(manifest.trajectories) == sorted(scratch.values("id"))
    assert all(manifest.verified_path(get_run_config(scratch, "sh").run_dir, r) for r in manifest.files)
    summary = fcsl.run_summary(scratch, "sh")
    assert summary["num_videos"] == len(scratch)
    assert summary["num_scored_frames"] == scratch.count("frames.phase")
    sharded = scratch.values("frames.sh")

    whole = fcsl.replay_checkpoints(scratch, "sh")  # one process, every video
    scratch.reload()
    assert scratch.values("frames.sh") == sharded
    assert summary["num_segments"] == len(whole.segments())


def _shard_view(dataset, op):
    import fiftyone.core.view as fov

    return fov.DatasetView._build(dataset, op.context.request_params["view"])

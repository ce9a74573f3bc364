"""A delegated audit runs in a separate worker process, as with
``fiftyone delegated launch``."""

import os
import subprocess
import sys

import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionRunState

WORKER = (
    "from fiftyone.operators.delegated import DelegatedOperationService as Service; "
    "Service().execute_queued_operations(limit=1, log=True)"
)


def test_queued_audit_runs_in_a_worker_process(scratch):
    scratch.persistent = True  # the worker opens it by name
    audit = foo.get_operator("@fiftyone-csl/csl/audit_video_labels")
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

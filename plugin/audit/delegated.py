"""FiftyOne delegated operations of this plugin: queueing one, and listing
the ones queued (what the App schedules and `fiftyone delegated launch` runs)."""

from bson import ObjectId

from ..runs.record import operator_uri


def queue_delegated(operator: str, label: str, dataset_name: str, view: list, params: dict, delegation_target=None):
    """Queues one delegated operation of ``operator`` over ``view`` (a
    serialized view of dataset ``dataset_name``) with ``params``; returns
    FiftyOne's queued operation document."""
    from fiftyone.operators.delegated import DelegatedOperationService  # lazy: importing FiftyOne is slow
    from fiftyone.operators.executor import ExecutionContext  # lazy: importing FiftyOne is slow

    request = dict(dataset_name=dataset_name, view=view, params=params, delegated=True,
                   delegation_target=delegation_target)  # fmt: skip
    return DelegatedOperationService().queue_operation(
        operator=operator, label=label, delegation_target=delegation_target,
        context=ExecutionContext(request_params=request).serialize(),
    )  # fmt: skip


PLUGIN_OPERATORS = operator_uri("")


def delegated_runs(samples, limit: int = 20) -> list:
    """This plugin's delegated operations on the collection's dataset,
    newest first: dicts with ``id``, ``operator`` (its name), ``state``
    (``queued``, ``scheduled``, ``running``, ``completed`` or ``failed``),
    ``progress`` (0-1 or None), ``label`` (the progress message),
    ``queued_at`` and ``finished_at`` (ISO strings or None) and ``error``.

    A queued operation runs once a worker (``fiftyone delegated launch``)
    takes it."""
    from fiftyone.operators.delegated import DelegatedOperationService  # lazy: importing FiftyOne is slow

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


def failed_operation(operation_ids: list) -> str | None:
    """The error of the first failed delegated operation among ``operation_ids``."""
    from fiftyone.operators.delegated import DelegatedOperationService  # lazy: importing FiftyOne is slow
    from fiftyone.operators.executor import ExecutionRunState  # lazy: importing FiftyOne is slow

    service = DelegatedOperationService()
    for op_id in operation_ids:
        try:
            op = service.get(ObjectId(op_id))
        except Exception:  # deleted by the user: not a failure of the graph
            continue
        if op is not None and op.run_state == ExecutionRunState.FAILED:
            error = getattr(op.result, "error", None) or "failed"
            return f"{op.label}: {str(error).strip().splitlines()[-1]}"
    return None

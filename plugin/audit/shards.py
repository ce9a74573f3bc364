"""Replay as delegated shards: one queued operation per group of videos,
for several workers to run side by side."""

from ..runs.record import get_run_config, operator_uri
from .delegated import queue_delegated
from .rescore import replay_shards

REPLAY_OPERATOR = operator_uri("replay_checkpoints")


def queue_replay_shards(
    samples, csl_field="csl", num_shards=2, delegation_target=None, operator_uri=REPLAY_OPERATOR, **kwargs
) -> list:
    """Queues one delegated replay per group of videos of ``samples``.

    The groups have about equal frame counts. Any number of workers may run
    them (``fiftyone delegated launch``), on this machine or on others that
    share the MongoDB database and the run directory; each shard writes only
    its own videos and merges into the run under a lock, so no write is lost
    or made twice.

    Args:
        samples: a video Dataset or DatasetView
        csl_field ("csl"): the run key of a trained run
        num_shards (2): how many delegated operations to queue (at most one
            per video)
        delegation_target (None): the orchestrator to queue them for
        **kwargs: ``peer_scores``, ``threshold``, ``precision``

    Returns:
        the queued operations (``DelegatedOperationDocument``)
    """
    get_run_config(samples._dataset, csl_field)  # a clear error before anything is queued
    groups = replay_shards(samples, num_shards)
    return [
        queue_delegated(
            operator_uri,
            f"CSL replay '{csl_field}' shard {i + 1}/{len(groups)} ({len(ids)} videos)",
            samples._dataset.name,
            samples.select(ids)._serialize(),
            dict(kwargs, csl_field=csl_field, shards=1),
            delegation_target,
        )  # fmt: skip
        for i, ids in enumerate(groups)
    ]

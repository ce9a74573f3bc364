"""fiftyone-csl: find wrong frame labels in annotated videos from training
dynamics (Cumulative Sample Loss).

This directory is both a FiftyOne plugin (see ``fiftyone.yml``; FiftyOne calls
:func:`register`) and the Python package ``fiftyone_csl``::

    import fiftyone_csl as fcsl

    results = fcsl.compute_csl(dataset, "phase")
    print(results.top_segments(5))

Every public function is documented where it is defined; this module only
gathers them.
"""

# pytest collects the repository root as a package when it runs the tests
# below it; if the checkout's folder name is not an identifier it imports this
# file with no parent package, and the SDK (imported as fiftyone_csl by the
# tests) is not needed there.
if __package__:
    from .operators.replay import queue_replay_shards
    from .plugin.access import (
        copy_csl_run,
        delegated_runs,
        delete_csl_run,
        export_suspects,
        load_csl_results,
        run_summary,
        suspect_table,
    )
    from .plugin.corrupt import inject_errors
    from .plugin.decisions import list_decisions, review_segment, review_segments, suspect_segments, undo_review
    from .plugin.evaluation import evaluate_detection
    from .plugin.fanout import audit_graph, cancel_graph, queue_audit
    from .plugin.labelling import LabellingRound, label_actively
    from .plugin.pipeline import CSLResults, compute_csl_arrays
    from .plugin.record import list_csl_runs
    from .plugin.rescore import changed_videos, flag_errors, refresh_scores, replay_checkpoints
    from .plugin.review import select_frames_for_review
    from .plugin.steps import compute_csl, compute_features, train_checkpoints
    from .plugin.utils import CSLError

__version__ = "0.1.0"


def register(p):
    from .operators import register_operators

    register_operators(p)


__all__ = [
    "CSLError",
    "CSLResults",
    "audit_graph",
    "cancel_graph",
    "changed_videos",
    "compute_csl",
    "compute_csl_arrays",
    "copy_csl_run",
    "compute_features",
    "delegated_runs",
    "delete_csl_run",
    "evaluate_detection",
    "export_suspects",
    "flag_errors",
    "inject_errors",
    "label_actively",
    "LabellingRound",
    "list_csl_runs",
    "list_decisions",
    "queue_audit",
    "queue_replay_shards",
    "select_frames_for_review",
    "suspect_segments",
    "suspect_table",
    "load_csl_results",
    "refresh_scores",
    "register",
    "replay_checkpoints",
    "review_segment",
    "review_segments",
    "run_summary",
    "train_checkpoints",
    "undo_review",
]

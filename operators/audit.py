"""One-click audit: features, training, replay, scores, flags and views."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.api import compute_csl
from ..plugin.core import rounds
from . import common


def _rounded(value, digits=3):
    return None if value is None else round(float(value), digits)


CALL_PARAMS = ("csl_field", *common.TRAINING_PARAMS, "peer_scores", "simulation", "target_precision", "threshold",
               "rounds")  # fmt: skip
# a simulation or a second round is passed on to the fan-out to be refused, not dropped
FANOUT_PARAMS = ("csl_field", *common.TRAINING_PARAMS, "peer_scores", "threshold", "simulation", "rounds")


class AuditVideoLabels(foo.Operator):
    @property
    def config(self):
        return common.long_running_config(
            "audit_video_labels",
            "CSL: audit video labels",
            "Find likely wrong frame labels by their Cumulative Sample Loss (features, training, replay, flags)",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.require_video(ctx, inputs) and common.label_field_input(ctx, inputs):
            common.target_inputs(ctx, inputs)
            if common.new_key_input(ctx, inputs):
                common.features_inputs(ctx, inputs)
                common.training_inputs(ctx, inputs)
                common.peer_inputs(ctx, inputs)
                common.simulation_inputs(ctx, inputs)
                common.rounds_input(ctx, inputs)
                common.threshold_input(ctx, inputs)
                inputs.int(
                    "workers", default=1, min=1, max=256, required=False, label="Workers",
                    description="More than 1 queues the audit as a graph of delegated operations (features and "
                    "replay by groups of videos, one training per fold, one merge) for that many workers "
                    "(`fiftyone delegated launch`) sharing this database and the run folder",
                )  # fmt: skip
                common.scheduling_notice(ctx, inputs, common.audit_estimate(ctx))
        return types.Property(inputs, view=types.View(label="CSL: audit video labels"))

    def execute(self, ctx):
        p = ctx.params
        workers = int(p.get("workers") or 1)
        if workers > 1:
            graph = compute_csl(
                ctx.target_view(),
                p["label_field"],
                workers=workers,
                delegation_target=ctx.request_params.get("delegation_target"),
                **common.rounds_param(common.engine_params(p, FANOUT_PARAMS)),
            )
            return {"run_key": p.get("csl_field") or "csl", "graph_id": graph["graph_id"],
                    "queued_parts": len(graph["queued"])}  # fmt: skip
        results = compute_csl(
            ctx.target_view(),
            p["label_field"],
            **common.rounds_param(common.engine_params(p, CALL_PARAMS)),
            progress=common.progress_callback(ctx),
        )
        common.reload_if_immediate(ctx)
        return {
            "run_key": results.run_key,
            "videos": len(results.videos),
            "suspect_segments": len(results.segments()),
            "threshold": round(results.threshold, 3),
            "estimated_precision": _rounded((results.simulation or {}).get("estimated_precision")),
            "second_round": rounds.describe(results.second_round),
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        common.present_outputs(ctx, outputs, (
            ("str", "run_key", "Run key"),
            ("int", "videos", "Videos scored"),
            ("int", "suspect_segments", "Suspect segments"),
            ("float", "threshold", "CSL threshold"),
            ("str", "graph_id", "Audit graph (queued for several workers; fcsl.audit_graph(id) tells its state)"),
            ("int", "queued_parts", "Parts queued now (each stage queues the next)"),
            ("float", "estimated_precision", "Estimated precision of the flags (from the simulation)"),
            ("str", "second_round", "Second round of training"),
        ))  # fmt: skip
        return types.Property(outputs)

    def __call__(
        self, sample_collection, label_field, csl_field="csl", embeddings_field=None, delegate=False, **kwargs
    ):
        """Audits the videos of ``sample_collection``: the SDK twin of the App's
        "CSL: audit video labels".

        Example::

            import fiftyone.operators as foo

            audit = foo.get_operator("@fiftyone-csl/csl/audit_video_labels")
            audit(dataset, "frames.phase", epochs=20)

        Args:
            sample_collection: a video Dataset or DatasetView
            label_field: frame-level Classification or sample-level TemporalDetections field
            csl_field ("csl"): run key and field prefix
            embeddings_field (None): frame-level vector field to use as features
            delegate (False): queue a delegated operation instead of running now
            **kwargs: ``backbone``, ``backbone_runtime``, ``model``,
                ``epochs``, ``folds``, ``cross_fit``, ``stride``, ``fps``,
                ``sparse_labels``, ``mgw_sigma``, ``rounds``, ``peer_scores``, ``simulation``, ``target_precision``,
                ``threshold``, ``overwrite`` as in
                :func:`fiftyone_csl.compute_csl`; ``workers=N`` (N > 1)
                queues the audit as a graph for N workers

        Returns:
            an ``ExecutionResult`` (for delegated runs, the queued operation)
        """
        params = dict(label_field=label_field, csl_field=csl_field, embeddings_field=embeddings_field, **kwargs)
        return common.execute_twin(self, sample_collection, params, delegate)

"""One-click audit: features, training, replay, scores, flags and views."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.core import compute_csl
from .common import audit_inputs, progress_callback, target_view


class AuditVideoLabels(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="audit_video_labels",
            label="CSL: audit video labels",
            description="Find likely wrong frame labels by their Cumulative Sample Loss",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        audit_inputs(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Audit video labels (CSL)"))

    def execute(self, ctx):
        p = ctx.params
        results = compute_csl(
            target_view(ctx),
            p["label_field"],
            p.get("csl_field") or "csl",
            p.get("embeddings_field") or None,
            backbone=p.get("backbone", "efficientnet-lite0"),
            model=p.get("model", "transformer"),
            epochs=p.get("epochs", 30),
            folds=p.get("folds", 5),
            stride=p.get("stride", 1),
            overwrite=p.get("overwrite", False),
            progress=progress_callback(ctx),
        )
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return {
            "run_key": results.run_key,
            "videos": len(results.videos),
            "suspect_segments": len(results.segments()),
            "threshold": results.threshold,
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("run_key", label="Run key")
        outputs.int("videos", label="Videos scored")
        outputs.int("suspect_segments", label="Suspect segments")
        outputs.float("threshold", label="CSL threshold")
        return types.Property(outputs)

    def __call__(
        self,
        sample_collection,
        label_field,
        csl_field="csl",
        embeddings_field=None,
        backbone="efficientnet-lite0",
        model="transformer",
        epochs=30,
        folds=5,
        stride=1,
        overwrite=False,
        delegate=False,
    ):
        """Runs the audit through FiftyOne's operator machinery.

        Example::

            import fiftyone.operators as foo

            audit = foo.get_operator("@fiftyone-csl/csl/audit_video_labels")
            audit(dataset, "frames.phase", epochs=20)

        Args:
            sample_collection: a video Dataset or DatasetView
            label_field: frame-level Classification or sample-level
                TemporalDetections field
            csl_field ("csl"): run key and field prefix
            embeddings_field (None): frame-level vector field to use as features
            backbone, model, epochs, folds, stride, overwrite: as in
                :func:`fiftyone_csl.compute_csl`
            delegate (False): queue a delegated operation instead of running now

        Returns:
            an ``ExecutionResult`` (or the delegated operation's record)
        """
        dataset = sample_collection._dataset
        view = sample_collection.view()
        ctx = dict(dataset=dataset, view=view)
        params = dict(
            label_field=label_field,
            csl_field=csl_field,
            embeddings_field=embeddings_field,
            backbone=backbone,
            model=model,
            epochs=epochs,
            folds=folds,
            stride=stride,
            overwrite=overwrite,
        )
        return foo.execute_operator(self.uri, ctx, params=params, request_delegation=delegate)

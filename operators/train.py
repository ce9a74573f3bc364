"""Train checkpoints (one per epoch) without scoring frames."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.api import train_checkpoints
from . import common


class TrainCheckpoints(foo.Operator):
    @property
    def config(self):
        return common.long_running_config(
            "train_checkpoints",
            "CSL: train checkpoints",
            "Train the temporal model with a checkpoint per epoch; replay them later on any view",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.require_video(ctx, inputs) and common.label_field_input(ctx, inputs):
            common.target_inputs(ctx, inputs)
            if common.new_key_input(ctx, inputs):
                common.features_inputs(ctx, inputs)
                common.training_inputs(ctx, inputs)
                common.scheduling_notice(ctx, inputs, common.audit_estimate(ctx))
        return types.Property(inputs, view=types.View(label="CSL: train checkpoints"))

    def execute(self, ctx):
        p = ctx.params
        params = common.engine_params(p, ("csl_field", *common.TRAINING_PARAMS))
        run_dir = train_checkpoints(
            ctx.target_view(), p["label_field"], **params, progress=common.progress_callback(ctx)
        )
        return {"run_key": params.get("csl_field", "csl"), "run_dir": run_dir}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("run_key", label="Run key")
        outputs.str("run_dir", label="Checkpoints in")
        return types.Property(outputs)

    def __call__(
        self, sample_collection, label_field, csl_field="csl", embeddings_field=None, delegate=False, **kwargs
    ):
        """Trains the checkpoints of run ``csl_field`` on ``sample_collection``.

        Args:
            sample_collection: a video Dataset or DatasetView
            label_field: frame-level Classification or sample-level TemporalDetections field
            csl_field ("csl"): run key
            embeddings_field (None): frame-level vector field to use as features
            delegate (False): queue a delegated operation instead of running now
            **kwargs: ``backbone``, ``backbone_runtime``, ``model``,
                ``epochs``, ``folds``, ``cross_fit``, ``stride``, ``fps``,
                ``sparse_labels``, ``mgw_sigma``, ``overwrite`` as in
                :func:`fiftyone_csl.compute_csl`
        """
        params = dict(label_field=label_field, csl_field=csl_field, embeddings_field=embeddings_field, **kwargs)
        return common.execute_twin(self, sample_collection, params, delegate)

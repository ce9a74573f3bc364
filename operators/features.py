"""Compute frame features with a pretrained backbone into a vector field."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..models.backbones import BACKBONES
from ..plugin.audit.encoders import RUNTIMES
from ..plugin.audit.steps import compute_features
from . import common


class ComputeFrameFeatures(foo.Operator):
    @property
    def config(self):
        return common.long_running_config(
            "compute_frame_features",
            "CSL: compute frame features",
            "Decode every n-th frame and store pretrained backbone features as a frame-level vector field",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.require_video(ctx, inputs):
            common.target_inputs(ctx, inputs)
            inputs.str("embeddings_field", default="csl_features", required=True, label="Embeddings field")
            default = lambda name: common.engine_default(compute_features, name)  # noqa: E731
            inputs.enum("backbone", sorted(BACKBONES), default=default("backbone"), label="Backbone")
            inputs.enum("backbone_runtime", list(RUNTIMES), default=default("backbone_runtime"), label="Runtime")
            inputs.float("fps", required=False, min=0.01, label="Frames per second of video (optional)")
            if not ctx.params.get("fps"):
                inputs.int("stride", default=default("stride"), min=1, max=1000, label="Frame stride")
            inputs.bool("overwrite", default=False, label="Overwrite the field if it exists")
        common.scheduling_notice(ctx, inputs)
        return types.Property(inputs, view=types.View(label="CSL: compute frame features"))

    def execute(self, ctx):
        p = ctx.params
        frames = compute_features(
            ctx.target_view(),
            p["embeddings_field"],
            **common.engine_params(p, ("backbone", "backbone_runtime", "stride", "fps", "overwrite")),
            progress=common.progress_callback(ctx),
        )
        common.reload_if_immediate(ctx)
        return {"embeddings_field": p["embeddings_field"], "frames": frames}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("embeddings_field", label="Field")
        outputs.int("frames", label="Frames written")
        return types.Property(outputs)

    def __call__(self, sample_collection, embeddings_field="csl_features", delegate=False, **kwargs):
        """Stores backbone features of every ``stride``-th frame in
        ``frames.<embeddings_field>``.

        Args:
            sample_collection: a video Dataset or DatasetView
            embeddings_field ("csl_features"): the frame-level field to write
            delegate (False): queue a delegated operation instead of running now
            **kwargs: ``backbone``, ``backbone_runtime``, ``stride``, ``fps``,
                ``overwrite``
        """
        params = dict(embeddings_field=embeddings_field, **kwargs)
        return common.execute_twin(self, sample_collection, params, delegate)

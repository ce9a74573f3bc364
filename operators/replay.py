"""Replay a run's checkpoints over a view and write CSL."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.core import replay_checkpoints
from . import common


class ReplayCheckpoints(foo.Operator):
    @property
    def config(self):
        return common.long_running_config(
            "replay_checkpoints",
            "CSL: replay checkpoints",
            "Score frames with a trained run's checkpoints (videos new to the run too)",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.require_video(ctx, inputs) and common.run_key_input(ctx, inputs):
            common.target_inputs(ctx, inputs)
            common.peer_inputs(ctx, inputs)
            common.threshold_input(ctx, inputs)
        return types.Property(inputs, view=types.View(label="CSL: replay checkpoints"))

    def execute(self, ctx):
        p = ctx.params
        results = replay_checkpoints(
            ctx.target_view(),
            p["csl_field"],
            peer_scores=p.get("peer_scores"),
            threshold=p.get("threshold"),
            progress=common.progress_callback(ctx),
        )
        common.reload_if_immediate(ctx)
        return {"run_key": results.run_key, "videos": len(results.videos), "suspect_segments": len(results.segments())}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("run_key", label="Run key")
        outputs.int("videos", label="Videos scored")
        outputs.int("suspect_segments", label="Suspect segments")
        return types.Property(outputs)

    def __call__(self, sample_collection, csl_field="csl", delegate=False, **kwargs):
        """Replays the checkpoints of run ``csl_field`` over ``sample_collection``.

        Args:
            sample_collection: a video Dataset or DatasetView
            csl_field ("csl"): the run key
            delegate (False): queue a delegated operation instead of running now
            **kwargs: ``peer_scores``, ``threshold``
        """
        params = dict(csl_field=csl_field, **kwargs)
        return common.execute_twin(self, sample_collection, params, delegate)

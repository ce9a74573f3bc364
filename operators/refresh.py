"""Score again the videos whose labels were corrected, with the run's
checkpoints (no training)."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.audit.rescore import changed_videos, refresh_scores
from . import common


class RefreshScores(foo.Operator):
    @property
    def config(self):
        return common.long_running_config(
            "refresh_scores",
            "CSL: refresh scores after fixes",
            "Score again, with the run's checkpoints, the videos whose labels changed since they were scored",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.require_video(ctx, inputs) and common.run_key_input(ctx, inputs):
            common.target_inputs(ctx, inputs)
            key = ctx.params.get("csl_field")
            if key:
                try:
                    count = len(changed_videos(ctx.target_view(), key))
                except Exception as e:  # shown in the form; execute raises it with the full message
                    inputs.view("problem", types.Warning(label=str(e)))
                else:
                    text = f"{count} video(s) changed since run '{key}' scored them"
                    inputs.view("changed", types.Notice(label=text if count else "No labels changed: nothing to do"))
        common.scheduling_notice(ctx, inputs)
        return types.Property(inputs, view=types.View(label="CSL: refresh scores after fixes"))

    def execute(self, ctx):
        results = refresh_scores(ctx.target_view(), ctx.params["csl_field"], progress=common.progress_callback(ctx))
        common.reload_if_immediate(ctx)
        return {"videos": len(results.videos), "suspect_segments": len(results.segments())}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("videos", label="Videos scored again")
        outputs.int("suspect_segments", label="Their suspect segments")
        return types.Property(outputs)

    def __call__(self, sample_collection, csl_field="csl", delegate=False):
        """Scores again the videos of ``sample_collection`` whose labels
        changed: the SDK twin of the App's "CSL: refresh scores after fixes".

        Example::

            import fiftyone.operators as foo

            refresh = foo.get_operator("@fiftyone-csl/csl/refresh_scores")
            refresh(dataset, "csl")

        Args:
            sample_collection: a video Dataset or DatasetView
            csl_field ("csl"): the run key
            delegate (False): queue a delegated operation instead of running now
        """
        return common.execute_twin(self, sample_collection, dict(csl_field=csl_field), delegate)

"""Re-flag suspect segments with another threshold (no model runs)."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.audit.rescore import flag_errors
from . import common


class FlagErrors(foo.Operator):
    @property
    def config(self):
        return common.quick_config(
            "flag_errors",
            "CSL: flag errors",
            "Flag frames above a CSL threshold and rebuild suspect segments and views",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.run_key_input(ctx, inputs, scored_only=True):
            common.target_inputs(ctx, inputs)
            common.threshold_input(ctx, inputs, common.current_threshold(ctx, ctx.params.get("csl_field")))
        return types.Property(inputs, view=types.View(label="CSL: flag errors"))

    def execute(self, ctx):
        p = ctx.params
        results = flag_errors(ctx.target_view(), p["csl_field"], **common.engine_params(p, ("threshold",)))
        ctx.trigger("reload_dataset")
        return {"suspect_segments": len(results.segments()), "threshold": round(results.threshold, 3)}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("suspect_segments", label="Suspect segments")
        outputs.float("threshold", label="CSL threshold")
        return types.Property(outputs)

    def __call__(self, sample_collection, csl_field="csl", threshold=None):
        """Re-flags the scored videos of ``sample_collection``.

        Args:
            sample_collection: a video Dataset or DatasetView
            csl_field ("csl"): the run key
            threshold (None): a CSL threshold; None for the automatic one
        """
        return common.execute_twin(self, sample_collection, dict(csl_field=csl_field, threshold=threshold))

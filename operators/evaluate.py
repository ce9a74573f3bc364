"""Evaluate a run's detection against a ground-truth error field."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.evaluation import evaluate_detection
from . import common


class EvaluateDetection(foo.Operator):
    @property
    def config(self):
        return common.quick_config(
            "evaluate_detection",
            "CSL: evaluate detection",
            "Frame AUROC and AP of CSL and its peers against known errors; stored in the run",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.run_key_input(ctx, inputs, scored_only=True):
            common.target_inputs(ctx, inputs)
            choices = common.frame_classification_choices(ctx.view)
            inputs.enum(
                "error_field",
                choices,
                required=True,
                default=next((c for c in choices if c.endswith("error")), choices[0] if choices else None),
                label="Ground-truth error field",
                description="Frame-level Classification: the error type on erroneous frames (inject_errors writes it)",
            )
            inputs.enum(
                "clean_field",
                choices,
                required=False,
                label="True labels (optional)",
                description="Frame-level Classification with the clean labels: also scores the segmenter",
            )
        return types.Property(inputs, view=types.View(label="CSL: evaluate detection"))

    def execute(self, ctx):
        p = ctx.params
        report = evaluate_detection(
            ctx.target_view(), p["csl_field"], p["error_field"], clean_field=p.get("clean_field") or None
        )
        rows = [
            f"| {score} | {kind} | {row['auroc']:.3f} | {row['ap']:.3f} | {row['errors']} |"
            for score, by_kind in report["scores"].items()
            for kind, row in by_kind.items()
            if isinstance(row, dict)
        ]
        table = "| score | errors | AUROC | AP | error frames |\n|---|---|---|---|---|\n" + "\n".join(rows)
        summary = (
            f"Segment EDA of CSL at the run's threshold: **{report['eda']:.3f}**; error type right for "
            f"**{report['type_accuracy']['accuracy']:.0%}** of {report['type_accuracy']['segments']} flagged "
            "segments that hit an error.\n\n"
        )
        return {"report": summary + table}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.md(ctx.results.get("report", ""), name="report")
        return types.Property(outputs)

    def __call__(self, sample_collection, csl_field="csl", error_field="phase_error", clean_field=None):
        """Evaluates run ``csl_field`` against ``frames.<error_field>``.

        Returns:
            an ``ExecutionResult``; the full report is in the run's results
            (:func:`fiftyone_csl.run_summary`)
        """
        params = dict(csl_field=csl_field, error_field=error_field, clean_field=clean_field)
        return common.execute_twin(self, sample_collection, params)

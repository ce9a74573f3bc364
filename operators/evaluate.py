"""Evaluate a run's detection against a ground-truth error field."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.audit.evaluation import evaluate_detection
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
        return {"report": segments_table(report["segments"]) + "\n\nFrame level:\n\n" + table}

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


def _percent(value):
    return "-" if value != value else f"{value:.0%}"


def segments_table(segments: dict) -> str:
    """The headline: what a reviewer receives, per error kind."""
    lines = [
        f"**{segments['flags']} suspect segments**, {_percent(segments['flag_precision'])} of them on an error.",
        "",
        "| errors | events | found | right type | right label | boundary off by (frames) |",
        "|---|---|---|---|---|---|",
    ]
    for kind, row in [("all", segments), *segments["by_kind"].items()]:
        off = "-" if row["boundary_error"] != row["boundary_error"] else f"{row['boundary_error']:.1f}"
        lines.append(
            f"| {kind} | {row['events']} | {_percent(row['event_recall'])} | {_percent(row['type_accuracy'])} "
            f"| {_percent(row['label_accuracy'])} | {off} |"
        )
    return "\n".join(lines)

"""Decide suspect segments (accept the suggestion, keep, relabel, mark
reviewed) and undo decisions."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.review.decisions import (
    ACTIONS,
    list_decisions,
    review_segment,
    review_segments,
    suspect_segments,
    undo_review,
)
from ..plugin.runs.record import get_run_config
from . import common

ACTION_LABELS = {
    "accept": "Accept the suggested label (write it on the segment's frames)",
    "keep": "Keep the given label (a false alarm)",
    "relabel": "Relabel as ...",
    "reviewed": "Mark reviewed (no verdict)",
}
MAX_CHOICES = 300


def segment_value(row) -> str:
    return f"{row['sample_id']}:{row['first_frame']}:{row['last_frame']}"


def segment_label(row) -> str:
    name = row["filepath"].rsplit("/", 1)[-1]
    suggestion = f" -> {row['suggested_label']}" if row["suggested_label"] not in (None, row["given_label"]) else ""
    return (
        f"{name} frames {row['first_frame']}-{row['last_frame']}: {row['error_type']}, "
        f"{row['given_label']}{suggestion} (CSL {row['mean_csl']:.2f})"
    )


class ReviewSegment(foo.Operator):
    @property
    def config(self):
        return common.quick_config(
            "review_segment",
            "CSL: review suspect segments",
            "Accept the suggested label, keep the given one, relabel, or mark suspect segments reviewed",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if not (common.require_video(ctx, inputs) and common.run_key_input(ctx, inputs, scored_only=True)):
            return types.Property(inputs, view=types.View(label="CSL: review suspect segments"))
        common.target_inputs(ctx, inputs)
        key = ctx.params.get("csl_field")
        scope = types.RadioGroup()
        scope.add_choice("one", label="One segment")
        scope.add_choice("all", label="Every undecided suspect segment in the target")
        inputs.enum("scope", scope.values(), default="one", label="Segments", view=scope)
        if ctx.params.get("scope", "one") == "one" and key:
            view = ctx.dataset.select(ctx.current_sample) if ctx.current_sample else ctx.target_view()
            rows = suspect_segments(view, key, include_reviewed=False)[:MAX_CHOICES]
            if not rows:
                inputs.view("none", types.Notice(label="No undecided suspect segment here"))
                return types.Property(inputs, view=types.View(label="CSL: review suspect segments"))
            choices = types.Dropdown()
            for row in rows:
                choices.add_choice(segment_value(row), label=segment_label(row))
            inputs.enum("segment", choices.values(), default=choices.values()[0], required=True,
                        label="Segment (worst first)", view=choices)  # fmt: skip
        actions = types.RadioGroup()
        for name in ACTIONS:
            actions.add_choice(name, label=ACTION_LABELS[name])
        inputs.enum("action", actions.values(), default="accept", required=True, label="Decision", view=actions)
        if ctx.params.get("action") == "relabel" and key:
            classes = get_run_config(ctx.dataset, key).classes
            label = ctx.params.get("label")
            inputs.enum(
                "label", classes, required=True, label="New label", invalid=label is not None and label not in classes,
                error_message="Choose one of the run's classes",
            )  # fmt: skip
        return types.Property(inputs, view=types.View(label="CSL: review suspect segments"))

    def execute(self, ctx):
        p = ctx.params
        key, action, label = p["csl_field"], p["action"], p.get("label") if p["action"] == "relabel" else None
        if p.get("scope", "one") == "all":
            decisions = review_segments(ctx.target_view(), key, action, label=label)
        elif not p.get("segment"):  # the form said there is none: nothing to decide, no error
            return {"decisions": 0, "labels_changed": 0, "message": "No undecided suspect segment here"}
        else:
            sid, first, last = p["segment"].split(":")
            decisions = [review_segment(ctx.dataset, key, sid, int(first), int(last), action, label)]
        ctx.trigger("reload_samples")
        return {"decisions": len(decisions), "labels_changed": sum(len(d["changed_frames"]) for d in decisions)}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("decisions", label="Segments decided")
        outputs.int("labels_changed", label="Frame labels changed")
        if ctx.results.get("message"):
            outputs.str("message", label="Note")
        return types.Property(outputs)

    def __call__(self, sample_collection, csl_field="csl", action="accept", segment=None, label=None):
        """Decides suspect segments: the SDK twin of the App's "CSL: review
        suspect segments".

        Example::

            import fiftyone.operators as foo

            review = foo.get_operator("@fiftyone-csl/csl/review_segment")
            review(dataset, "csl", "keep", segment=(sample_id, 12, 30))
            review(dataset.match_tags("checked"), "csl", "accept")  # every undecided one

        Args:
            sample_collection: a video Dataset or DatasetView
            csl_field ("csl"): the run key
            action ("accept"): ``"accept"``, ``"keep"``, ``"relabel"`` or ``"reviewed"``
            segment (None): ``(sample_id, first, last)``; None for every
                undecided suspect segment of ``sample_collection``
            label (None): the new class for ``"relabel"``
        """
        params = dict(csl_field=csl_field, action=action, label=label, scope="all" if segment is None else "one")
        if segment is not None:
            params["segment"] = ":".join(str(x) for x in segment)
        return common.execute_twin(self, sample_collection, params)


class UndoReview(foo.Operator):
    @property
    def config(self):
        return common.quick_config(
            "undo_review",
            "CSL: undo the last review decision",
            "Restore the labels the newest review decision changed and remove it",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.require_video(ctx, inputs) and common.run_key_input(ctx, inputs, scored_only=True):
            common.target_inputs(ctx, inputs)
        return types.Property(inputs, view=types.View(label="CSL: undo the last review decision"))

    def execute(self, ctx):
        if not list_decisions(ctx.target_view(), ctx.params["csl_field"]):  # nothing to undo is not an error
            return {"undone": "nothing: no review decision on these videos", "labels_restored": 0}
        d = undo_review(ctx.target_view(), ctx.params["csl_field"])
        ctx.trigger("reload_samples")
        return {
            "undone": f"{d['decision']} frames {d['first']}-{d['last']}",
            "labels_restored": len(d["changed_frames"]),
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("undone", label="Undone")
        outputs.int("labels_restored", label="Frame labels restored")
        return types.Property(outputs)

    def __call__(self, sample_collection, csl_field="csl"):
        """Undoes the newest review decision on ``sample_collection``.

        Args:
            sample_collection: a video Dataset or DatasetView
            csl_field ("csl"): the run key
        """
        return common.execute_twin(self, sample_collection, dict(csl_field=csl_field))

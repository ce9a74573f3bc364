"""Active sparse labelling: retrain from the frames labelled so far,
propagate, and queue the next frames to label (APU)."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.review.labelling import label_actively
from . import common
from .review import picks_table


class LabelActively(foo.Operator):
    @property
    def config(self):
        return common.long_running_config(
            "label_actively",
            "CSL: label frames actively",
            "Train from the frames labelled so far, propose labels for the others, and pick the next frames to label",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.require_video(ctx, inputs) and common.label_field_input(
            ctx, inputs, label="Label field (frame-level, partly labelled)"
        ):
            common.target_inputs(ctx, inputs)
            default = lambda name: common.engine_default(label_actively, name)  # noqa: E731
            inputs.str(
                "csl_field", default=default("csl_field"), required=True, label="Run key",
                description="Each round replaces this key's previous round: <key>_predictions, <key>_propagated, "
                "the saved view <key>-review-queue",
            )  # fmt: skip
            inputs.float(
                "budget", default=default("budget"), min=0.0, required=True, label="Frames to pick",
                description="In the unit below; 0 retrains and propagates only",
            )  # fmt: skip
            inputs.enum(
                "budget_unit", ["percent", "frames"], default=default("budget_unit"), required=True, label="Unit"
            )
            vectors = common.vector_field_choices(ctx.view)
            inputs.enum(
                "embeddings_field", vectors, required=False, label="Embeddings field (optional)",
                description="Frame-level vectors as features; leave empty to use the backbone",
            )  # fmt: skip
            common.count_input(ctx, inputs, "epochs", default("epochs"), "Epochs", 1, 1000)
            inputs.float(
                "mgw_sigma", default=default("mgw_sigma"), min=0.0, label="MGW sigma (frames)",
                description="Unlabelled frames train on their nearest label with weight exp(-d^2 / 2 sigma^2); "
                "0 ignores them (masking)",
            )  # fmt: skip
            inputs.float("lam", default=default("lam"), min=0.0, max=1.0, label="Lambda (uncertainty vs spread)")
            inputs.float("sigma", default=default("sigma"), min=0.0, label="Spread width (frames)")
            inputs.str(
                "tag", default=default("tag"), required=False, label="Tag",
                description="Tag the videos holding frames to label",
            )  # fmt: skip
        common.scheduling_notice(ctx, inputs)
        return types.Property(inputs, view=types.View(label="CSL: label frames actively"))

    def execute(self, ctx):
        p = ctx.params
        names = ("csl_field", "budget", "budget_unit", "embeddings_field", "epochs", "mgw_sigma", "lam", "sigma", "tag")
        # the target chooses videos; every frame of them counts (a view that filters frames, such as the
        # review queue, would hide the labels already given). Its own dataset: a clips view stays one and
        # is refused as such
        target = ctx.target_view()
        videos = target._dataset.select(target.values("id"))
        done = label_actively(
            videos, p["label_field"], **common.engine_params(p, names),
            progress=common.progress_callback(ctx),
        )  # fmt: skip
        common.reload_if_immediate(ctx)
        return {
            "labelled": f"{done.labelled_frames} of {done.frames} frames "
            f"({100 * done.labelled_frames / max(done.frames, 1):.1f}%)",
            "selected": len(done.picks),
            "view": done.view or "",
            "propagated": f"frames.{done.propagated_field}",
            "picks": picks_table(ctx.dataset, done.picks, "label"),
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        common.present_outputs(ctx, outputs, (
            ("str", "labelled", "Labelled"),
            ("int", "selected", "Frames to label next"),
            ("str", "view", "Saved view"),
            ("str", "propagated", "Proposed labels"),
        ))  # fmt: skip
        if ctx.results.get("picks"):
            outputs.md(ctx.results["picks"], name="picks")
        return types.Property(outputs)

    def __call__(self, sample_collection, label_field, csl_field="asl", budget=1.0, delegate=False, **kwargs):
        """One round of active sparse labelling on ``sample_collection``.

        Args:
            sample_collection: a video Dataset or DatasetView
            label_field: the frame-level Classification field being labelled
            csl_field ("asl"): the loop's run key
            budget (1.0): frames to pick next, in ``budget_unit`` (default percent)
            delegate (False): queue a delegated operation instead of running now
            **kwargs: ``budget_unit``, ``embeddings_field``, ``epochs``,
                ``mgw_sigma``, ``lam``, ``sigma``, ``tag``; see
                :func:`fiftyone_csl.label_actively`
        """
        params = dict(label_field=label_field, csl_field=csl_field, budget=budget, **kwargs)
        return common.execute_twin(self, sample_collection, params, delegate)

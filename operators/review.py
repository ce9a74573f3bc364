"""Select frames for review within a budget (APU) and save the review queue."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.review.queue import MODES, select_frames_for_review
from ..plugin.runs.record import RunNames
from . import common

MODE_LABELS = {
    "apu_csl": "APU + CSL: uncertain or suspect frames, spread over time",
    "apu": "APU: uncertain frames, spread over time",
    "csl": "Highest CSL first",
    "uncertainty": "Most uncertain first",
    "random": "Random frames",
    "equidistant": "Evenly spaced frames",
}


SHOWN_PICKS = 50


def picks_table(dataset, picks, purpose="review") -> str:
    """The first picks as a markdown table: priority, video, frame."""
    if not picks:
        return ""
    names = {sid: path.rsplit("/", 1)[-1] for sid, path in zip(*dataset.values(["id", "filepath"]))}
    lines = ["| priority | video | frame |", "|---:|---|---:|"]
    lines += [f"| {rank} | {names.get(sid, sid)} | {int(n)} |" for rank, (sid, n) in enumerate(picks[:SHOWN_PICKS], 1)]
    more = f"\n\n... and {len(picks) - SHOWN_PICKS} more in the saved view" if len(picks) > SHOWN_PICKS else ""
    return f"**Frames to {purpose}, most urgent first**\n\n" + "\n".join(lines) + more


class SelectFramesForReview(foo.Operator):
    @property
    def config(self):
        return common.long_running_config(
            "select_frames_for_review",
            "CSL: select frames for review",
            "Pick the frames most worth reviewing within a budget and save them as a review queue",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.require_video(ctx, inputs) and common.run_key_input(ctx, inputs, scored_only=True):
            common.target_inputs(ctx, inputs)
            default = lambda name: common.engine_default(select_frames_for_review, name)  # noqa: E731
            inputs.float("budget", default=default("budget"), min=0.0, required=True, label="Budget")
            inputs.enum(
                "budget_unit", ["percent", "frames"], default=default("budget_unit"), required=True,
                label="Budget unit",
            )  # fmt: skip
            mode = types.RadioGroup()
            for name in MODES:
                mode.add_choice(name, label=MODE_LABELS[name])
            inputs.enum("mode", mode.values(), default=default("mode"), required=True, label="Selection", view=mode)
            inputs.float(
                "lam", default=default("lam"), min=0.0, max=1.0, required=False,
                label="Lambda (informativeness vs spread)",
            )  # fmt: skip
            inputs.float(
                "sigma", default=default("sigma"), min=0.0, required=False, label="Sigma (spread width, in frames)"
            )
            inputs.int("passes", default=default("passes"), min=1, required=False, label="MC-dropout passes")
            inputs.str(
                "tag",
                required=False,
                label="Tag (optional)",
                description="Also tag the selected frames' labels and their videos with this tag",
            )
        common.scheduling_notice(ctx, inputs)
        return types.Property(inputs, view=types.View(label="CSL: select frames for review"))

    def execute(self, ctx):
        p = ctx.params
        picks = select_frames_for_review(
            ctx.target_view(),
            p["csl_field"],
            **common.engine_params(p, ("budget", "budget_unit", "mode", "lam", "sigma", "passes", "tag")),
            progress=common.progress_callback(ctx),
        )
        common.reload_if_immediate(ctx)
        return {
            "selected": len(picks),
            "videos": len({sid for sid, _ in picks}),
            "view": RunNames(p["csl_field"]).review_view,
            "picks": picks_table(ctx.dataset, picks),
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("selected", label="Frames selected")
        outputs.int("videos", label="Videos")
        outputs.str("view", label="Saved view")
        outputs.md(ctx.results.get("picks", ""), name="picks")
        return types.Property(outputs)

    def __call__(self, sample_collection, csl_field="csl", budget=5.0, delegate=False, **kwargs):
        """Selects frames of ``sample_collection`` for review and saves the
        queue as ``<csl_field>-review-queue``.

        Args:
            sample_collection: a video Dataset or DatasetView
            csl_field ("csl"): the run key (a scored run)
            budget (5.0): frames to select, in ``budget_unit`` (default percent)
            delegate (False): queue a delegated operation instead of running now
            **kwargs: ``budget_unit``, ``mode``, ``lam``, ``sigma``, ``passes``,
                ``tag``; see :func:`fiftyone_csl.select_frames_for_review`
        """
        params = dict(csl_field=csl_field, budget=budget, **kwargs)
        return common.execute_twin(self, sample_collection, params, delegate)

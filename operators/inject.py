"""Inject known label errors into a copy of a label field."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..plugin.audit.inject import inject_errors
from ..plugin.core.corrupt import ERROR_TYPES
from . import common


class InjectErrors(foo.Operator):
    @property
    def config(self):
        return common.quick_config(
            "inject_errors",
            "CSL: inject errors",
            "Copy a frame label field with known mislabel/disorder/boundary errors and their ground truth",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        choices = common.frame_classification_choices(ctx.view)
        if not common.require_video(ctx, inputs):
            return types.Property(inputs)
        if not choices:
            inputs.view("no_labels", types.Warning(label="Needs a frame-level Classification field"))
            return types.Property(inputs)
        common.target_inputs(ctx, inputs)
        inputs.enum("label_field", choices, required=True, default=choices[0], label="Clean label field")
        inputs.str("out_field", default="noisy", required=True, label="Field for the labels with errors")
        inputs.str("error_field", required=False, label="Ground-truth field (default <out_field>_error)")
        inputs.list(
            "kinds", types.Enum(list(ERROR_TYPES)), default=list(common.engine_default(inject_errors, "kinds")),
            label="Error types",
            view=common.choices_view(list(ERROR_TYPES)),
        )  # fmt: skip
        inputs.float(
            "rate", default=common.engine_default(inject_errors, "rate"), min=0.001, max=0.9,
            label="Fraction of frames to corrupt",
        )  # fmt: skip
        inputs.int("seed", default=common.engine_default(inject_errors, "seed"), label="Seed")
        inputs.bool("overwrite", default=False, label="Overwrite the fields if they exist")
        return types.Property(inputs, view=types.View(label="CSL: inject errors"))

    def execute(self, ctx):
        p = ctx.params
        counts = inject_errors(
            ctx.target_view(),
            p["label_field"],
            p["out_field"],
            p.get("error_field") or None,
            **common.engine_params(p, ("kinds", "rate", "seed", "overwrite")),
        )
        ctx.trigger("reload_dataset")
        return {"corrupted_frames": sum(counts.values()), "by_type": common.counts_text(counts)}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("corrupted_frames", label="Corrupted frames")
        outputs.str("by_type", label="By error type")
        return types.Property(outputs)

    def __call__(self, sample_collection, label_field, out_field="noisy", error_field=None, **kwargs):
        """Writes ``frames.<out_field>`` (labels with errors) and
        ``frames.<error_field>`` (ground truth); ``label_field`` is unchanged.

        Args:
            **kwargs: ``kinds``, ``rate``, ``seed``, ``overwrite`` as in
                :func:`fiftyone_csl.inject_errors`
        """
        params = dict(label_field=label_field, out_field=out_field, error_field=error_field, **kwargs)
        return common.execute_twin(self, sample_collection, params)

"""Form builders shared by the operators."""

import fiftyone.core.fields as fof
import fiftyone.core.labels as fol
import fiftyone.operators.types as types

from ..models import HEADS
from ..models.backbones import BACKBONES


def label_field_choices(view) -> list:
    """Frame-level Classification fields and sample-level TemporalDetections fields."""
    frame_fields = view.get_frame_field_schema(embedded_doc_type=fol.Classification) or {}
    sample_fields = view.get_field_schema(embedded_doc_type=fol.TemporalDetections)
    return [f"frames.{f}" for f in sorted(frame_fields)] + sorted(sample_fields)


def vector_field_choices(view) -> list:
    schema = view.get_frame_field_schema(ftype=(fof.VectorField, fof.ListField)) or {}
    return sorted(schema)


def target_view(ctx):
    """The view the operator runs on: dataset, current view or selection."""
    return ctx.target_view()


def target_inputs(ctx, inputs):
    inputs.view_target(ctx)


def progress_callback(ctx):
    """A ``progress`` callable for engine calls that updates delegated runs."""
    if not ctx.delegated:
        return False

    def callback(state):
        ctx.set_progress(progress=state.progress, label=state.label)

    return callback


def audit_inputs(ctx, inputs) -> bool:
    """Adds the audit form; returns False when the view has no usable field."""
    view = ctx.view
    if view.media_type != "video":
        inputs.view("warning", types.Warning(label="This operator audits video datasets"))
        return False
    choices = label_field_choices(view)
    if not choices:
        inputs.view(
            "warning",
            types.Warning(
                label="No label field",
                description="Needs a frame-level Classification or a sample-level TemporalDetections field",
            ),
        )
        return False
    target_inputs(ctx, inputs)
    inputs.enum("label_field", choices, required=True, label="Label field", default=choices[0])
    inputs.str(
        "csl_field",
        default="csl",
        required=True,
        label="Run key / field prefix",
        description="Writes frames.<key>, <key>_max, <key>_mean, <key>_errors and saved views",
    )
    key = ctx.params.get("csl_field") or "csl"
    if not key.isidentifier():
        inputs.view("bad_key", types.Error(label="The run key must be a valid identifier (letters, digits, _)"))
        return False
    vectors = vector_field_choices(view)
    inputs.enum(
        "embeddings_field",
        vectors,
        required=False,
        label="Embeddings field (optional)",
        description="Frame-level vectors to use as features; leave empty to compute them with a backbone",
    )
    inputs.enum("backbone", sorted(BACKBONES), default="efficientnet-lite0", label="Backbone")
    inputs.enum("model", sorted(HEADS), default="transformer", label="Temporal model")
    inputs.int("epochs", default=30, min=1, max=1000, label="Epochs (one checkpoint each)")
    inputs.int("folds", default=5, min=2, max=50, label="Cross-fitting folds")
    inputs.int("stride", default=1, min=1, max=1000, label="Frame stride")
    inputs.bool("overwrite", default=False, label="Overwrite an existing run with this key")
    return True

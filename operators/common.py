"""Form builders and helpers shared by the operators."""

import inspect

import fiftyone.core.fields as fof
import fiftyone.core.labels as fol
import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..models import HEADS
from ..models.backbones import BACKBONES
from ..plugin.audit.encoders import RUNTIMES, resolve_runtime
from ..plugin.audit.plan import plan_audit
from ..plugin.core.flags import resolve_threshold
from ..plugin.core.scores import SCORES
from ..plugin.core.train import TrainConfig
from ..plugin.runs.record import RunNames, get_run_config, list_csl_runs

RUN_STORE = "csl_timeline"  # the execution store where the panel remembers the chosen run


def label_field_choices(view) -> list:
    """Frame-level Classification fields and sample-level TemporalDetections
    fields, except those a CSL run wrote (its proposed labels, its suspects):
    an audit of a run's own output is not what a user means by default."""
    dataset = view._dataset
    owned = {p for k in list_csl_runs(dataset) for p in RunNames.of(get_run_config(dataset, k)).paths()}
    frame_fields = view.get_frame_field_schema(embedded_doc_type=fol.Classification) or {}
    sample_fields = view.get_field_schema(embedded_doc_type=fol.TemporalDetections)
    paths = [f"frames.{f}" for f in sorted(frame_fields)] + sorted(sample_fields)
    return [p for p in paths if p not in owned]


def frame_classification_choices(view) -> list:
    return sorted(view.get_frame_field_schema(embedded_doc_type=fol.Classification) or {})


def vector_field_choices(view) -> list:
    schema = view.get_frame_field_schema(ftype=(fof.VectorField, fof.ListField)) or {}
    return sorted(schema)


def progress_callback(ctx):
    """A ``progress`` callable for engine calls that updates delegated runs."""
    if not ctx.delegated:
        return False

    def callback(state):
        ctx.set_progress(progress=state.progress, label=state.label)

    return callback


def reload_if_immediate(ctx):
    if not ctx.delegated:
        ctx.trigger("reload_dataset")


def long_running_config(name, label, description):
    return foo.OperatorConfig(
        name=name,
        label=label,
        description=description,
        dynamic=True,
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=True,
    )


def quick_config(name, label, description):
    return foo.OperatorConfig(name=name, label=label, description=description, dynamic=True)


def execute_twin(operator, sample_collection, params, delegate=False):
    """What every operator's ``__call__`` does: run through FiftyOne's
    operator machinery on the collection (a dataset or a view)."""
    ctx = dict(dataset=sample_collection._dataset, view=sample_collection.view())
    return foo.execute_operator(operator.uri, ctx, params=params, request_delegation=delegate)


def require_video(ctx, inputs) -> bool:
    if ctx.view.media_type != "video":
        inputs.view("not_video", types.Warning(label="fiftyone-csl works on video datasets"))
        return False
    return True


def label_field_input(ctx, inputs, name="label_field", label="Label field") -> bool:
    choices = label_field_choices(ctx.view)
    if not choices:
        inputs.view(
            "no_labels",
            types.Warning(
                label="No label field",
                description="Needs a frame-level Classification or a sample-level TemporalDetections field",
            ),
        )
        return False
    inputs.enum(name, choices, required=True, label=label, default=choices[0])
    return True


def new_key_input(ctx, inputs, name="csl_field", default="csl") -> bool:
    """A run key input that must be an identifier and, unless 'overwrite' is
    ticked, not an existing run: a bad key is marked on the field itself and
    the form cannot be executed."""
    key = ctx.params.get(name) or default
    problem = None
    if not key.isidentifier():
        problem = "The run key must be a valid identifier (letters, digits, _)"
    elif key in ctx.dataset.list_runs() and not ctx.params.get("overwrite"):
        problem = f"Run '{key}' exists: tick 'overwrite' below to replace it, or choose another key"
    inputs.str(
        name,
        default=default,
        required=True,
        label="Run key / field prefix",
        description="Writes frames.<key>, <key>_max, <key>_mean, <key>_errors and saved views <key>-...",
        invalid=problem is not None,
        error_message=problem or "",
    )
    inputs.bool("overwrite", default=False, label="Replace an existing run with this key (only what it created)")
    if problem is not None:
        inputs.view("bad_key", types.Error(label=problem))
    return key.isidentifier()


# rates on a 2-core CPU, only for the forms' duration estimates: decode and
# backbone in frames/s by runtime (benchmarks/backbone.py, end to end; ONNX
# Runtime scaled from its backbone-only rate), and training plus replay in
# frames x epochs x folds per second (about 3 minutes for 90,000 frames at 30
# epochs and 5 folds; benchmarks/speed.py)
BACKBONE_FPS = {"torch": 48.0, "openvino": 124.0, "onnxruntime": 115.0}
FRAME_EPOCH_FOLDS_PER_S = 75_000.0


def estimated_seconds(num_frames, epochs, folds, stride=1, backbone=True, fps=None) -> float:
    """A rough duration of an audit of ``num_frames`` video frames on a
    2-core CPU (cached features count as free; ``fps`` assumes 25 fps video)."""

    scored = num_frames / max(1, stride) if not fps else num_frames * min(1.0, fps / 25.0)
    rate = BACKBONE_FPS[resolve_runtime("auto", "cpu")]
    return (scored / rate if backbone else 0.0) + scored * epochs * folds / FRAME_EPOCH_FOLDS_PER_S + 10


def scheduling_notice(ctx, inputs, seconds=None) -> None:
    """Tells the user when the App cannot schedule delegated runs, and how
    long an immediate run would take."""
    import fiftyone as fo  # lazy: importing FiftyOne is slow

    if getattr(fo.config, "allow_legacy_orchestrators", True):
        return
    took = f"An immediate run takes about {_duration(seconds)} on a 2-core CPU. " if seconds else ""
    inputs.view(
        "no_scheduling",
        types.Notice(
            label="Scheduling is not available in this App",
            description=f"{took}FiftyOne stops immediate runs after 600 s. To queue runs, start the App with "
            "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true and a worker with 'fiftyone delegated launch' "
            "(see the README).",
        ),
    )


def audit_estimate(ctx) -> float | None:
    """The estimated duration of the audit or training the form describes."""
    try:
        frames = ctx.target_view().count("frames")
    except Exception:  # an estimate is not worth a failing form
        return None
    p = ctx.params
    return estimated_seconds(
        frames, p.get("epochs") or _audit_default("epochs"), p.get("folds") or _audit_default("folds"),
        p.get("stride") or 1, backbone=not p.get("embeddings_field"), fps=p.get("fps"),
    )  # fmt: skip


def current_threshold(ctx, key):
    """The CSL threshold run ``key`` flags at now, or None."""

    try:
        config = get_run_config(ctx.dataset, key)
        return resolve_threshold(config.threshold, len(config.classes))
    except Exception:
        return None


def _duration(seconds) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def run_key_input(ctx, inputs, name="csl_field", scored_only=False) -> bool:
    keys = list_csl_runs(ctx.dataset)
    if scored_only:
        keys = [k for k in keys if ctx.dataset.get_run_info(k).config.state == "scored"]
    if not keys:
        inputs.view(
            "no_runs",
            types.Warning(
                label="No CSL run" + (" with scores" if scored_only else ""),
                description="Run 'CSL: audit video labels' (or train and replay checkpoints) first",
            ),
        )
        return False
    remembered = remembered_run(ctx)
    inputs.enum(name, keys, required=True, default=remembered if remembered in keys else keys[0], label="Run key")
    return True


def remembered_run(ctx):
    """The run last chosen in the CSL timeline panel on this dataset, or None."""
    try:
        return ctx.store(RUN_STORE).get("run_key")
    except Exception:  # no execution store (an old FiftyOne): the first run
        return None


def engine_default(function, name):
    """The engine's default for ``name``: a keyword of ``function`` or a
    training setting. Forms show it; only the engine defines it."""

    parameter = inspect.signature(function).parameters.get(name)
    if parameter is not None and parameter.default is not inspect.Parameter.empty:
        return parameter.default
    return getattr(TrainConfig(), name)


def _audit_default(name):

    return engine_default(plan_audit, name)


def features_inputs(ctx, inputs):
    vectors = vector_field_choices(ctx.view)
    inputs.enum(
        "embeddings_field",
        vectors,
        required=False,
        label="Embeddings field (optional)",
        description="Frame-level vectors to use as features; leave empty to compute them with a backbone",
    )
    if not ctx.params.get("embeddings_field"):  # a backbone only runs without an embeddings field
        inputs.enum("backbone", sorted(BACKBONES), default=_audit_default("backbone"), label="Backbone")
        inputs.enum(
            "backbone_runtime", list(RUNTIMES), default=_audit_default("backbone_runtime"), required=False,
            label="Backbone runtime", description="auto: OpenVINO or ONNX Runtime when installed (CPU), else PyTorch",
        )  # fmt: skip
    of = " of the embeddings field" if ctx.params.get("embeddings_field") else ""
    inputs.float(
        "fps", required=False, min=0.01, label="Frames per second of video (optional)",
        description="Score this many frames per second of each video, whatever its frame rate (1 or 2 for long "
        "videos); leave empty to use the stride",
    )  # fmt: skip
    if not ctx.params.get("fps"):
        inputs.int(
            "stride", default=_audit_default("stride"), min=1, max=1000, label="Frame stride",
            description=f"Score every n-th frame{of}",
        )  # fmt: skip


def training_inputs(ctx, inputs):
    inputs.enum("model", sorted(HEADS), default=_audit_default("model"), label="Temporal model")
    count_input(ctx, inputs, "epochs", _audit_default("epochs"), "Epochs (one checkpoint each)", 1, 1000)
    count_input(ctx, inputs, "folds", _audit_default("folds"), "Cross-fitting folds", 2, 50)
    inputs.bool(
        "cross_fit", default=_audit_default("cross_fit"),
        label="Cross-fit (score each video with models that never saw it)",
    )  # fmt: skip
    inputs.bool(
        "sparse_labels", default=_audit_default("sparse_labels"), label="Sparse labels (only some frames labelled)",
        description="Train on every frame of each video, labelled or not; scores go to the labelled frames, "
        "predictions to every frame (<key>_predictions, <key>_propagated)",
    )  # fmt: skip
    if ctx.params.get("sparse_labels"):
        inputs.float(
            "mgw_sigma", default=_audit_default("mgw_sigma"), min=0, label="MGW sigma (frames)",
            description="An unlabelled frame trains on its nearest label with weight exp(-d^2 / 2 sigma^2); "
            "0 ignores unlabelled frames (masking)",
        )  # fmt: skip


ROUNDS = {"auto": "auto", "1": 1, "2": 2}


def rounds_input(ctx, inputs):
    inputs.enum(
        "rounds", list(ROUNDS), default=str(_audit_default("rounds")), label="Training rounds",
        view=types.RadioGroup(choices=[
            types.Choice("auto", label="auto: a second round where the first fits the labels it keeps"),
            types.Choice("1", label="1"),
            types.Choice("2", label="2: the decoder reads models trained without the suspects' frames"),
        ]),
        description="A second round trains the folds again with the frames the first round's suspects would "
        "change left out, and the suspects, <key>_corrected and <key>_wrong_prob come from it; CSL stays the "
        "first round's. One round over several workers",
    )  # fmt: skip


def rounds_param(params: dict) -> dict:
    """``params`` with the form's ``rounds`` choice as the engine takes it."""
    if "rounds" in params:
        params = dict(params, rounds=ROUNDS.get(str(params["rounds"]), params["rounds"]))  # else the engine says why
    return params


def choices_view(values):
    """A multiple choice among ``values`` that lists them (an autocomplete
    without choices lists nothing)."""
    return types.AutocompleteView(
        choices=[types.Choice(v, label=v) for v in values], allow_user_input=False, allow_duplicates=False
    )


def peer_inputs(ctx, inputs):
    peers = sorted(set(SCORES) - {"csl"})
    inputs.list(
        "peer_scores",
        types.Enum(peers),
        default=[],
        required=False,
        label="Peer scores to write",
        view=choices_view(peers),
    )


def present_outputs(ctx, outputs, fields) -> None:
    """Declares the outputs among ``fields`` (``(kind, name, label)``) that
    the results hold: a form never shows "No value provided"."""
    results = ctx.results or {}
    for kind, name, label in fields:
        if results.get(name) not in (None, ""):
            getattr(outputs, kind)(name, label=label)


def counts_text(counts: dict) -> str:
    """``{"a": 3, "b": 1}`` -> ``"a: 3, b: 1"``."""
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


def count_input(ctx, inputs, name, default, label, low, high):
    """An int input checked here, with a message that names the bound (the
    App's own for ``min`` reads as off by one)."""
    value = ctx.params.get(name)
    bad = isinstance(value, (int, float)) and not low <= value <= high
    extra = dict(invalid=True, error_message=f"{label}: between {low} and {high}") if bad else {}
    inputs.int(name, default=default, label=label, **extra)


TRAINING_PARAMS = ("embeddings_field", "backbone", "backbone_runtime", "model", "epochs", "folds", "cross_fit",
                   "stride", "fps", "sparse_labels", "mgw_sigma", "overwrite")  # fmt: skip


def engine_params(p, names) -> dict:
    """The engine keyword arguments among ``names`` that the user set: empty
    inputs are left out, so the engine's defaults apply (they live there only)."""
    return {name: p[name] for name in names if p.get(name) not in (None, "", [], ())}


def simulation_inputs(ctx, inputs):
    inputs.bool(
        "simulation",
        default=_audit_default("simulation"),
        label="Simulation: learn from a copy with known errors (about doubles the time)",
        description="Writes <key>_error_prob, estimates the precision of the flags and, with an automatic "
        "threshold, flags at the lowest one whose estimated precision reaches the target",
    )
    if ctx.params.get("simulation"):
        inputs.float(
            "target_precision", default=_audit_default("target_precision"), min=0.05, max=0.99,
            label="Target precision of the flags",
        )  # fmt: skip


def threshold_input(ctx, inputs, current=None):
    """The threshold input; ``current``: the run's threshold, shown beside it."""
    now = f" Now {current:.2f}." if isinstance(current, (int, float)) else ""
    inputs.float(
        "threshold",
        required=False,
        min=0.0,
        label="CSL threshold (empty: automatic: ln(number of classes), or aimed at the target precision "
        "when the run has a simulation)",
        description=f"Frames above it are flagged.{now}",
    )


def target_inputs(ctx, inputs):
    """Opts the form into FiftyOne's view-target choice (dataset, current
    view or selected samples), which resolving the target adds."""
    ctx.target_view()

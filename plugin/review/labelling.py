"""Active sparse labelling: label a few frames, train, propagate, and ask for
the next frames to label (after "Active Sparse Labeling", NeurIPS 2022).

One round of :func:`label_actively`:

1. trains a temporal model on every frame of every video from the frames
   that carry a label (``sparse_labels=True``, one model over all videos:
   ``cross_fit=False``, unlabelled frames weighed by the max-Gaussian
   weights of ``mgw_sigma``); videos with no label yet are predicted too;
2. writes the model's class and confidence on every frame
   (``frames.<key>_predictions``) and on the unlabelled ones the labels it
   proposes (``frames.<key>_propagated``), never into the label field, and
   the in-sample CSL of the given labels (``frames.<key>``; a high value on
   a frame just labelled is worth a second look);
3. picks the next ``budget`` frames to label by APU: MC-dropout uncertainty
   of the new model plus the temporal spread from frames already labelled or
   picked, across videos; writes their priority
   (``frames.<key>_review_priority``), tags their videos and saves the view
   ``<key>-review-queue`` (the videos, showing only the frames to label),
   ready for ``view.annotate(...)``.

Label the picked frames in the label field (in the App, or with
``annotate()`` / ``load_annotations()``), then call it again: the next round
retrains on the new labels and asks for more. ``budget=0`` retrains and
propagates only.
"""

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

from ..audit.steps import run_audit
from ..core.checks import check_float, check_identifier, check_int
from ..core.errors import CSLError
from ..runs import labels as fclabels
from ..runs.record import RunNames, get_run_config, unowned_outputs
from .queue import check_options, check_tag, resolve_budget, select_frames_for_review

logger = logging.getLogger(__name__)


@dataclass
class LabellingRound:
    """What a round of :func:`label_actively` did.

    Attributes:
        run_key: the run holding the model, predictions and queue
        labelled_frames, frames: frames that carry a label, and every
            modelled frame, over the collection
        labelled_fraction: ``{sample_id: share of its frames labelled}``
        picks: ``[(sample_id, frame_number), ...]``, the frames to label next,
            most urgent first
        predictions_field, propagated_field: the frame fields written
        view: the saved view of the frames to label (None without picks)
    """

    run_key: str
    labelled_frames: int
    frames: int
    labelled_fraction: dict
    picks: list = field(default_factory=list)
    predictions_field: str = ""
    propagated_field: str = ""
    view: str | None = None

    def __repr__(self):
        share = self.labelled_frames / max(self.frames, 1)
        return (
            f"<LabellingRound '{self.run_key}': {self.labelled_frames} of {self.frames} frames labelled "
            f"({100 * share:.1f}%), {len(self.picks)} frames to label next in '{self.view}'>"
        )


def label_actively(
    samples,
    label_field: str,
    csl_field: str = "asl",
    budget: float = 1.0,
    budget_unit: str = "percent",
    embeddings_field: str | None = None,
    mgw_sigma: float = 0.0,
    lam: float = 0.5,
    sigma: float = 10.0,
    passes: int = 10,
    tag: str | None = "to_label",
    epochs: int = 30,
    seed: int = 51,
    device: str = "auto",
    progress=None,
    **kwargs,
) -> LabellingRound:
    """One round of active sparse labelling (see the module's docstring).

    Args:
        samples: a video Dataset or view; some of its frames labelled
        label_field: the frame-level ``Classification`` field being labelled
        csl_field ("asl"): the run key of the loop; a round replaces the
            previous round's run of this key (only a labelling run: an
            audit's key is refused)
        budget (1.0): frames to pick for labelling, in ``budget_unit``; 0
            picks none (retrain and propagate only)
        budget_unit ("percent"): ``"percent"`` of the modelled frames, or
            ``"frames"``
        embeddings_field (None): frame vectors as features; else the backbone
        mgw_sigma (0.0): the max-Gaussian weight width in frames for
            unlabelled frames (0 ignores them: masking; see the README's
            labelling benchmark for what each does)
        lam (0.5), sigma (10.0), passes (10): APU's weight of uncertainty
            against spread, the spread's width in frames, MC-dropout passes
        tag ("to_label"): tag the videos that hold frames to label (None: no
            tag)
        epochs (30), seed (51), device ("auto"), progress (None): as in
            :func:`fiftyone_csl.compute_csl`
        **kwargs: more of :func:`fiftyone_csl.compute_csl`'s options
            (``backbone``, ``stride``, ``fps``, ``model``, ``run_dir``, ...)

    Returns:
        a :class:`LabellingRound`

    Raises:
        CSLError: bad input (nothing written), or no frame labelled yet
    """
    check_identifier("csl_field", csl_field)
    dataset = samples._dataset
    for name in ("sparse_labels", "cross_fit", "overwrite", "simulation"):
        if name in kwargs:
            raise CSLError(f"label_actively() sets {name} itself")
    if fclabels.label_field_kind(samples, label_field) != "frames":
        raise CSLError("label_actively() labels a frame-level Classification field")
    name = fclabels.strip_frames_prefix(label_field)
    if not samples.count(f"frames.{name}"):
        raise CSLError(
            f"no frame of '{name}' is labelled yet: label a few frames of at least two classes first "
            "(a frame or two in some videos), then each round asks for the next ones"
        )
    if budget != 0:
        resolve_budget(budget, budget_unit, 1 << 62)  # a bad budget fails before the training
    check_tag(tag)
    check_options("apu", check_float("lam", lam), check_float("sigma", sigma), 0.5)
    check_int("passes", passes, 1)
    replace, owner = False, None
    if dataset.has_run(csl_field):
        config = get_run_config(samples, csl_field)
        if not (config.features or {}).get("sparse_labels") or (config.train or {}).get("cross_fit", True):
            raise CSLError(f"run '{csl_field}' is not a labelling run; choose another csl_field")
        if config.label_field.removeprefix("frames.") != label_field.removeprefix("frames."):
            raise CSLError(f"run '{csl_field}' labels '{config.label_field}', not '{label_field}'")
        replace, owner = True, RunNames.of(config)
    taken = unowned_outputs(dataset, RunNames(csl_field, sparse=True, decoded=True).with_review(), owner)
    if taken:  # the queue's names too, before the training
        raise CSLError(f"csl_field '{csl_field}' would write into {taken}, which no run of this key created")
    results = run_audit(
        samples, label_field, csl_field, embeddings_field, True, "label_actively",
        _share(progress, 0.0, 0.85 if budget else 1.0), sparse_labels=True, cross_fit=False, mgw_sigma=mgw_sigma,
        epochs=epochs, seed=seed, device=device, overwrite=replace, **kwargs,
    )  # fmt: skip
    modelled = {sid: v.predictions for sid, v in results.videos.items()}  # every video of a sparse run has them
    fractions = {sid: round(float(p.labelled.mean()), 6) for sid, p in modelled.items()}
    frames = sum(len(p.frame_numbers) for p in modelled.values())
    labelled = sum(int(p.labelled.sum()) for p in modelled.values())
    names = RunNames(csl_field, sparse=True, decoded=True)
    picks = []
    if budget != 0:
        picks = select_frames_for_review(
            samples, csl_field, budget, budget_unit, mode="apu", lam=lam, sigma=sigma, passes=passes, tag=tag,
            seed=seed, device=device, cache_dir=kwargs.get("cache_dir"), exclude_labelled=True,
            progress=_share(progress, 0.85, 1.0),
        )  # fmt: skip
    logger.info("labelling round of '%s': %d of %d frames labelled, %d picked", csl_field, labelled, frames, len(picks))
    return LabellingRound(
        csl_field, labelled, frames, fractions, picks, names.predictions_field, names.propagated_field,
        names.review_view if picks else None,
    )  # fmt: skip


def _share(progress, low: float, high: float):
    """``progress`` (FiftyOne style) with a callable's fractions mapped into
    ``[low, high]``, so two steps report one rising bar."""
    if not callable(progress):
        return progress

    def report(state):
        done = bool(getattr(state, "complete", False)) and high >= 1.0
        progress(SimpleNamespace(progress=low + (high - low) * state.progress, label=state.label, complete=done))

    return report

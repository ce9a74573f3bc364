"""One video's timeline as the review sees it now: its CSL, the labels its
label field holds at this moment (not those the run scored), what the run
proposes, its suspects with their decisions, and the frames the review queue
picked. What the App's timeline panel draws. Reads only, and only the
video's own documents: its cost does not grow with the dataset."""

import math
from dataclasses import dataclass, field

from ..core.errors import CSLError
from ..runs.access import load_csl_results
from ..runs.labels import label_field_kind, strip_frames_prefix
from ..runs.record import RunNames, get_run_config
from .segments import suspect_segments


@dataclass
class Timeline:
    """What the panel draws for one video (frame-aligned lists).

    Attributes:
        frame_numbers: the scored frames
        csl: their CSL
        given: the label each holds in the label field now (None where none)
        proposed: the class the run proposes for each (the decoder's label,
            else the models' most likely class; None where unknown)
        queued: frames the review queue picked
        rows: the video's suspects (as :func:`suspect_segments` returns them,
            with their ``review`` state)
        threshold, classes: the run's
    """

    frame_numbers: list
    csl: list
    given: list
    proposed: list
    queued: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    threshold: float = 0.0
    classes: list = field(default_factory=list)


def video_timeline(dataset, csl_field: str, sample_id: str) -> Timeline | None:
    """The :class:`Timeline` of one video of run ``csl_field``, or None if
    the run has not scored it."""
    config = get_run_config(dataset, csl_field)
    if config.state != "scored":
        raise CSLError(f"run '{csl_field}' has no scores yet")
    names = RunNames.of(config)
    view = dataset.select(sample_id)
    if not len(view):
        return None
    paths = ["frames.frame_number", f"frames.{names.score_field('csl')}"]
    frame_labels = label_field_kind(dataset, config.label_field) == "frames"
    if frame_labels:
        paths.append(f"frames.{strip_frames_prefix(config.label_field)}.label")
    if names.decoded:
        paths.append(f"frames.{names.corrected_field}.label")
    if names.review and dataset.has_frame_field(names.review_priority_field):
        paths.append(f"frames.{names.review_priority_field}")
    values = dict(zip(paths, (v[0] or [] for v in view.values(paths))))
    numbers, scores = values[paths[0]], values[paths[1]]
    keep = [i for i, s in enumerate(scores) if s is not None]
    if not keep:
        return None
    pick = lambda path: [values[path][i] for i in keep] if path in values else [None] * len(keep)  # noqa: E731
    given = pick(paths[2]) if frame_labels else _scored_labels(view, csl_field, sample_id, len(keep))
    proposed = pick(f"frames.{names.corrected_field}.label") if names.decoded else [None] * len(keep)
    queued = []
    if f"frames.{names.review_priority_field}" in values:
        queued = [int(numbers[i]) for i in keep if values[f"frames.{names.review_priority_field}"][i] is not None]
    return Timeline(
        frame_numbers=[int(numbers[i]) for i in keep], csl=[float(scores[i]) for i in keep], given=given,
        proposed=proposed, queued=queued, rows=suspect_segments(view, csl_field),
        threshold=_number(config.threshold, len(config.classes)), classes=list(config.classes),
    )  # fmt: skip


def _number(threshold, num_classes) -> float:
    try:
        return float(threshold)
    except (TypeError, ValueError):  # "auto" before the first scoring
        return math.log(num_classes)


def _scored_labels(view, csl_field, sample_id, n) -> list:
    """The labels the run scored (a sample-level TemporalDetections field:
    the review does not change it)."""
    video = load_csl_results(view, csl_field).videos.get(sample_id)
    if video is None:
        return [None] * n
    classes = get_run_config(view, csl_field).classes
    return [classes[int(c)] for c in video.labels][:n]

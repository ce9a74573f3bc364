"""From frame scores to flags: a threshold, suspect segments, error types and
suggested labels."""

from dataclasses import dataclass

import numpy as np

from .errors import CSLError


def auto_threshold(num_classes: int) -> float:
    """The default threshold, which needs no ground truth: ``ln(C)``.

    A frame is flagged when, averaged over training, the models gave its
    given label less probability than a uniform guess over the ``C`` classes
    would (cross-entropy above ``ln C``).
    """
    return float(np.log(num_classes))


MIN_EXCESS = 2.0
"""Least evidence of a suspect segment: its CSL above the threshold summed
over its frames (nats x frames). On the hard benchmark it cut the flags that
lie on no error by half for a loss of 1-2 points of event recall."""


def resolve_threshold(threshold, num_classes: int) -> float:
    if threshold in (None, "auto"):
        return auto_threshold(num_classes)
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise CSLError(f"threshold must be 'auto' or a number; got {threshold!r}") from None
    if not np.isfinite(value):
        raise CSLError(f"threshold must be finite; got {threshold!r}")
    return value


@dataclass
class SuspectSegment:
    """A run of flagged frames in one video.

    ``first``/``last`` are frame numbers (inclusive); ``start``/``stop`` index
    the video's scored frames (``stop`` exclusive). For a ``boundary``
    segment, ``suggested_boundary`` is the frame number where the models
    place the change of label: the first frame of the later phase.
    ``proposed`` (suspects of the decoder) holds the label it proposes for
    each of its frames; ``evidence`` ranks suspects, strongest first.
    """

    sample_id: str
    first: int
    last: int
    start: int
    stop: int
    mean_score: float
    max_score: float
    given_label: str
    suggested_label: str
    error_type: str
    suggested_boundary: int | None = None
    proposed: np.ndarray | None = None  # the decoder's class index of each scored frame in [start, stop)
    partner: tuple | None = None  # a disorder's other half (first, last) when it is another suspect
    evidence: float | None = None  # how strongly the labels are wrong (nats); ranks suspects

    @classmethod
    def over(cls, sample_id, frame_numbers, start, stop, scores, classes, given, suggested, error_type,
             boundary=None, **extra) -> "SuspectSegment":  # fmt: skip
        """The suspect on the scored frames ``[start, stop)`` of a video, its
        mean and max score read from ``scores``; ``given`` and ``suggested``
        are class indices."""
        seg_scores = scores[start:stop]
        return cls(
            sample_id=sample_id,
            first=int(frame_numbers[start]),
            last=int(frame_numbers[stop - 1]),
            start=int(start),
            stop=int(stop),
            mean_score=float(seg_scores.mean()),
            max_score=float(seg_scores.max()),
            given_label=classes[given],
            suggested_label=classes[suggested],
            error_type=error_type,
            suggested_boundary=boundary,
            **extra,
        )


def _runs(mask: np.ndarray, max_gap: int):
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return []
    runs, begin, prev = [], idx[0], idx[0]
    for i in idx[1:]:
        if i - prev > max_gap + 1:
            runs.append((begin, prev + 1))
            begin = i
        prev = i
    runs.append((begin, prev + 1))
    return runs


def _label_runs(labels: np.ndarray):
    change = np.flatnonzero(np.diff(labels)) + 1
    bounds = np.concatenate([[0], change, [len(labels)]])
    return list(zip(bounds[:-1], bounds[1:]))


def model_boundary(labels, probs, start, stop, given, suggested, reach) -> int:
    """Where the models place a change of label near a segment: the index in
    ``[start - reach, stop + reach]`` that best splits the predicted classes
    (argmax of ``probs``) into the earlier class then the later one (fewest
    disagreeing frames; the earliest such index on ties)."""
    if start > 0 and labels[start - 1] == suggested:
        earlier, later = suggested, given
    else:
        earlier, later = given, suggested
    lo, hi = max(0, start - reach), min(len(labels), stop + reach)
    predicted = probs[lo:hi].argmax(1)
    before = np.concatenate([[0], np.cumsum(predicted != earlier)])  # disagreements before each split
    after = np.concatenate([np.cumsum((predicted != later)[::-1])[::-1], [0]])  # ... from each split on
    return lo + int(np.argmin(before + after))


def suspect_segments(
    sample_id: str,
    frame_numbers: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    probs: np.ndarray,
    classes: list,
    threshold: float,
    max_gap: int = 2,
    boundary_tolerance: int = 3,
    min_excess: float | None = None,
) -> list:
    """Groups a video's flagged frames into :class:`SuspectSegment` objects.

    Frames with ``scores > threshold`` are flagged; flagged runs separated by
    at most ``max_gap`` unflagged frames are merged. A segment is kept when
    its evidence, the score above the threshold summed over its frames, is at
    least ``min_excess`` (default :data:`MIN_EXCESS`): a frame or two barely
    above the threshold, most often next to a change of phase, is not
    reported. The suggested label is the class of highest mean probability
    over the segment.

    Error type (a heuristic over the given labels):

    - ``boundary``: the segment touches a change of given label (within
      ``boundary_tolerance`` frames) and the suggested label is the label on
      the other side of that change;
    - ``mislabel`` when the segment is an island inside one phase: the given
      labels just before and after its run are the same class;
    - ``disorder``: the segment covers most (80%+) of a run of one given label
      and suggests another class, and either that class is not the label of
      either neighbouring run (the phase belongs elsewhere in the video) or
      another suspect segment of the video pairs with it (its given label is
      this one's suggestion, or its suggestion this one's given label: two
      phases swapped, of which phases that look alike often show one side);
    - ``mislabel``: otherwise.
    """
    min_excess = MIN_EXCESS if min_excess is None else float(min_excess)
    flagged = scores > threshold
    runs = _runs(flagged, max_gap)
    runs = [(a, b) for a, b in runs if np.clip(scores[a:b] - threshold, 0, None).sum() >= min_excess]
    label_runs = _label_runs(labels)
    segments = []
    for start, stop in runs:
        given = int(np.bincount(labels[start:stop], minlength=len(classes)).argmax())
        suggested = int(probs[start:stop].mean(0).argmax())
        whole = None  # the run of given label the segment covers most of, if any
        for a, b in label_runs:
            if labels[a] == given and max(0, min(stop, b) - max(start, a)) >= 0.8 * (b - a):
                whole = (a, b)
                break
        segments.append([start, stop, given, suggested, whole])
    out = []
    for start, stop, given, suggested, whole in segments:
        error_type = "mislabel"
        for a, b in label_runs:
            near_left = a > 0 and abs(start - a) <= boundary_tolerance and labels[a - 1] == suggested
            near_right = b < len(labels) and abs(stop - b) <= boundary_tolerance and labels[b] == suggested
            covers = a <= start < b or a < stop <= b
            if covers and (near_left or near_right) and (stop - start) < 0.8 * (b - a):
                error_type = "boundary"
                break
        if error_type == "mislabel" and whole is not None and suggested != given:
            a, b = whole
            island = a > 0 and b < len(labels) and labels[a - 1] == labels[b]
            partner = any((o[0], o[1]) != (start, stop) and (o[2] == suggested or o[3] == given) for o in segments)
            elsewhere = suggested not in (labels[a - 1] if a > 0 else -1, labels[b] if b < len(labels) else -1)
            if not island and (partner or elsewhere):
                error_type = "disorder"
        boundary = None
        if error_type == "boundary":
            reach = (stop - start) + boundary_tolerance
            index = model_boundary(labels, probs, start, stop, given, suggested, reach)
            boundary = int(frame_numbers[min(index, len(frame_numbers) - 1)])
        out.append(
            SuspectSegment.over(
                sample_id, frame_numbers, start, stop, scores, classes, given, suggested, error_type, boundary
            )
        )
    return out

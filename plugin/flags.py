"""From frame scores to flags: a threshold, suspect segments, error types and
suggested labels."""

from dataclasses import dataclass

import numpy as np

from .utils import CSLError


def auto_threshold(num_classes: int) -> float:
    """The default threshold, which needs no ground truth: ``ln(C)``.

    A frame is flagged when, averaged over training, the models gave its
    given label less probability than a uniform guess over the ``C`` classes
    would (cross-entropy above ``ln C``).
    """
    return float(np.log(num_classes))


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
) -> list:
    """Groups a video's flagged frames into :class:`SuspectSegment` objects.

    Frames with ``scores > threshold`` are flagged; flagged runs separated by
    at most ``max_gap`` unflagged frames are merged. The suggested label is
    the class of highest mean probability over the segment.

    Error type (a heuristic over the given labels):

    - ``boundary``: the segment touches a change of given label (within
      ``boundary_tolerance`` frames) and the suggested label is the label on
      the other side of that change;
    - ``disorder``: the segment covers most (80%+) of a run of one given label,
      and another flagged segment of the same video is its mirror image: its
      given label is this one's suggested label and the other way round
      (the labels of two phases swapped);
    - ``mislabel``: otherwise.
    """
    flagged = scores > threshold
    runs = _runs(flagged, max_gap)
    label_runs = _label_runs(labels)
    segments = []
    for start, stop in runs:
        given = int(np.bincount(labels[start:stop], minlength=len(classes)).argmax())
        suggested = int(probs[start:stop].mean(0).argmax())
        segments.append([start, stop, given, suggested])
    pairs = {(g, sug) for _, _, g, sug in segments}
    out = []
    for start, stop, given, suggested in segments:
        error_type = "mislabel"
        for a, b in label_runs:
            near_left = a > 0 and abs(start - a) <= boundary_tolerance and labels[a - 1] == suggested
            near_right = b < len(labels) and abs(stop - b) <= boundary_tolerance and labels[b] == suggested
            covers = a <= start < b or a < stop <= b
            if covers and (near_left or near_right) and (stop - start) < 0.8 * (b - a):
                error_type = "boundary"
                break
        if error_type == "mislabel" and suggested != given and (suggested, given) in pairs:
            for a, b in label_runs:
                overlap = max(0, min(stop, b) - max(start, a))
                if labels[a] == given and overlap >= 0.8 * (b - a):
                    error_type = "disorder"
                    break
        seg_scores = scores[start:stop]
        boundary = None
        if error_type == "boundary":
            reach = (stop - start) + boundary_tolerance
            index = model_boundary(labels, probs, start, stop, given, suggested, reach)
            boundary = int(frame_numbers[min(index, len(frame_numbers) - 1)])
        out.append(
            SuspectSegment(
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
            )
        )
    return out

"""Field values for FiftyOne, written with bulk ``set_values``.

The names come from the run record
(:class:`~fiftyone_csl.plugin.record.RunNames`); what to write, and when, from
:mod:`~fiftyone_csl.plugin.writeback`.
"""

import numpy as np


def spread_to_labelled_frames(
    sampled_numbers: np.ndarray, values: np.ndarray, labelled_numbers: np.ndarray
) -> np.ndarray:
    """Gives every labelled frame the value of the nearest sampled frame
    (ties go to the earlier frame)."""
    if len(sampled_numbers) == len(labelled_numbers) and np.array_equal(sampled_numbers, labelled_numbers):
        return values
    right = np.clip(np.searchsorted(sampled_numbers, labelled_numbers), 0, len(sampled_numbers) - 1)
    left = np.clip(right - 1, 0, len(sampled_numbers) - 1)
    use_left = np.abs(labelled_numbers - sampled_numbers[left]) <= np.abs(sampled_numbers[right] - labelled_numbers)
    return values[np.where(use_left, left, right)]


def label_path(dataset, label_field: str) -> str:
    """``label_field`` as FiftyOne label paths name it: ``frames.x`` for a
    frame-level field, ``x`` for a sample-level one."""
    name = label_field.removeprefix("frames.")
    return f"frames.{name}" if name in (dataset.get_frame_field_schema() or {}) else name


def write_frame_scores(dataset, field: str, per_sample: dict) -> None:
    """``per_sample``: ``{sample_id: (frame_numbers, values)}`` -> ``frames.<field>``."""
    values = {sid: {int(f): float(v) for f, v in zip(numbers, vals)} for sid, (numbers, vals) in per_sample.items()}
    dataset.set_values(f"frames.{field}", values, key_field="id")


def write_sample_values(dataset, field: str, per_sample: dict) -> None:
    dataset.set_values(field, per_sample, key_field="id")


def proposed_labels(segment, frame_numbers: np.ndarray, classes: list) -> list | None:
    """The decoder's label for every frame ``first..last`` of a suspect (a
    frame between scored ones takes the nearest scored frame's), or None for
    a suspect of the CSL rules."""
    if segment.proposed is None:
        return None
    scored = np.asarray(frame_numbers[segment.start : segment.stop], dtype=np.int64)
    every = np.arange(segment.first, segment.last + 1, dtype=np.int64)
    values = spread_to_labelled_frames(scored, np.asarray(segment.proposed), every)
    return [classes[int(c)] for c in values]


def flagged_labels(segment, frame_numbers: np.ndarray, labels: np.ndarray, classes: list) -> list:
    """The given label of every frame ``first..last`` of a suspect when it
    was flagged (None on a frame that was not scored): what a review
    decision on it judged (:mod:`~fiftyone_csl.plugin.review.segments`)."""
    out = [None] * (segment.last - segment.first + 1)
    for f, c in zip(frame_numbers[segment.start : segment.stop], labels[segment.start : segment.stop]):
        out[int(f) - segment.first] = classes[int(c)]
    return out


def suspect_detections(segments: list, frame_numbers=None, classes=None, labels=None):
    """Suspect segments of one video -> ``TemporalDetections`` (with the
    video's scored ``frame_numbers`` and the run's ``classes``, the
    decoder's per-frame ``proposed_labels``; with the scored ``labels`` too,
    ``flagged_labels``)."""
    import fiftyone as fo  # lazy: importing FiftyOne is slow

    def attributes(s):
        out = {}
        if labels is not None and frame_numbers is not None:
            out["flagged_labels"] = flagged_labels(s, frame_numbers, labels, classes)
        if s.proposed is not None and frame_numbers is not None:
            out["proposed_labels"] = proposed_labels(s, frame_numbers, classes)
            out["evidence"] = float(s.evidence)
            out["partner"] = list(s.partner) if s.partner is not None else None
        return out

    return fo.TemporalDetections(
        detections=[
            fo.TemporalDetection(
                label=s.error_type,
                support=[s.first, s.last],
                mean_csl=s.mean_score,
                max_csl=s.max_score,
                given_label=s.given_label,
                suggested_label=s.suggested_label,
                suggested_boundary=s.suggested_boundary,
                **attributes(s),
            )
            for s in segments
        ]
    )


def delete_outputs(dataset, fields: list) -> None:
    """Deletes the given ``frames.x``/``x`` fields where they exist."""
    frame_schema = dataset.get_frame_field_schema() or {}
    sample_schema = dataset.get_field_schema()
    for f in fields:
        if f.startswith("frames."):
            if f[len("frames.") :] in frame_schema:
                dataset.delete_frame_field(f[len("frames.") :])
        elif f in sample_schema:
            dataset.delete_sample_field(f)


def write_injected(dataset, out_field: str, out_values: dict, error_field: str, error_values: dict,
                   replace=()) -> None:  # fmt: skip
    """Writes labels with injected errors and their per-frame ground truth
    (both frame-level Classification fields), replacing the fields in ``replace``."""
    import fiftyone as fo  # lazy: importing FiftyOne is slow

    for f in replace:
        dataset.delete_frame_field(f)
    dataset.set_values(f"frames.{out_field}", out_values, key_field="id")
    dataset.add_frame_field(error_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    dataset.set_values(f"frames.{error_field}", error_values, key_field="id")


def write_embeddings(samples, embeddings_field: str, sequences: list) -> None:
    """Stores each sequence's features as a frame-level vector field."""
    values = {s.sample_id: {int(f): v for f, v in zip(s.frame_numbers, s.features)} for s in sequences}
    samples.set_values(f"frames.{embeddings_field}", values, key_field="id")

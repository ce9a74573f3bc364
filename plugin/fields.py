"""Write-back of scores and flags to FiftyOne, with bulk ``set_values``.

Every output field name derives from the run key (``csl_field``) here, in one
place: :func:`output_fields`.
"""

import numpy as np


def score_field(csl_field: str, name: str) -> str:
    """The frame field of score ``name``: ``csl`` -> ``<csl_field>``,
    ``csl_smooth`` -> ``<csl_field>_smooth``, ``aum`` -> ``<csl_field>_aum``."""
    if name == "csl":
        return csl_field
    return f"{csl_field}_{name.removeprefix('csl_')}"


def output_fields(csl_field: str, peer_scores=()) -> dict:
    """``{"frames": [...], "samples": [...]}``: every field a run writes."""
    frames = [score_field(csl_field, name) for name in ["csl", *peer_scores]]
    if "mistakenness" in peer_scores:  # the brain scores predictions stored here
        frames.append(f"{csl_field}_predictions")
    samples = [f"{csl_field}_max", f"{csl_field}_mean", f"{csl_field}_errors"]
    return {"frames": frames, "samples": samples}


def existing_outputs(dataset, csl_field: str, peer_scores=()) -> list:
    """The output fields that already exist on ``dataset`` (as ``frames.x`` or ``x``)."""
    return existing_outputs_of(dataset, output_fields(csl_field, peer_scores))


def existing_outputs_of(dataset, fields: dict) -> list:
    """Which of ``fields`` (``{"frames": [...], "samples": [...]}``) exist."""
    frame_schema = dataset.get_frame_field_schema() or {}
    sample_schema = dataset.get_field_schema()
    found = [f"frames.{f}" for f in fields["frames"] if f in frame_schema]
    found += [f for f in fields["samples"] if f in sample_schema]
    return found


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


def suspect_detections(segments: list):
    """Suspect segments of one video -> ``TemporalDetections``."""
    import fiftyone as fo

    return fo.TemporalDetections(
        detections=[
            fo.TemporalDetection(
                label=s.error_type,
                support=[s.first, s.last],
                mean_csl=s.mean_score,
                max_csl=s.max_score,
                given_label=s.given_label,
                suggested_label=s.suggested_label,
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

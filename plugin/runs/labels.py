"""Reading a dataset's label fields: their kind and their raw values."""

import numpy as np

from ..core.errors import CSLError


def label_field_kind(samples, label_field: str) -> str:
    """Returns ``"frames"`` (frame-level Classification) or ``"temporal"``
    (sample-level TemporalDetections); raises :class:`CSLError` otherwise."""
    import fiftyone.core.labels as fol  # lazy: importing FiftyOne is slow

    if samples.media_type != "video":
        raise CSLError(f"fiftyone-csl audits videos; this collection's media type is '{samples.media_type}'")
    frame_schema = samples.get_frame_field_schema() or {}
    sample_schema = samples.get_field_schema()
    name = label_field[len("frames.") :] if label_field.startswith("frames.") else label_field
    if name in frame_schema:
        doc_type = getattr(frame_schema[name], "document_type", None)
        if doc_type is fol.Classification:
            return "frames"
        raise CSLError(
            f"frames.{name} holds {doc_type.__name__ if doc_type else frame_schema[name]}; "
            "label_field must be a frame-level Classification field or a "
            "sample-level TemporalDetections field"
        )
    if name in sample_schema and not label_field.startswith("frames."):
        doc_type = getattr(sample_schema[name], "document_type", None)
        if doc_type is fol.TemporalDetections:
            return "temporal"
        raise CSLError(
            f"'{name}' holds {doc_type.__name__ if doc_type else sample_schema[name]}; "
            "label_field must be a frame-level Classification field or a "
            "sample-level TemporalDetections field"
        )
    raise CSLError(
        f"label_field '{label_field}' does not exist on this collection "
        "(neither as a frame field nor as a sample field)"
    )


def strip_frames_prefix(label_field: str) -> str:
    return label_field[len("frames.") :] if label_field.startswith("frames.") else label_field


def read_raw_labels(samples, label_field: str):
    """Reads labels as ``[(sample_id, filepath, frame_numbers, label_names)]``.

    Frames without a label are left out. For TemporalDetections, a frame inside
    two detections keeps the label of the first one.
    """
    kind = label_field_kind(samples, label_field)
    name = strip_frames_prefix(label_field)
    raw = []
    if kind == "frames":
        ids, paths, fns, labels = samples.values(["id", "filepath", "frames.frame_number", f"frames.{name}.label"])
        for sid, path, fn, lab in zip(ids, paths, fns, labels):
            pairs = [(f, l) for f, l in zip(fn or [], lab or []) if l is not None]
            pairs.sort()
            raw.append((sid, path, np.array([p[0] for p in pairs], dtype=np.int64), [p[1] for p in pairs]))
    else:
        ids, paths, supports, labels = samples.values(
            ["id", "filepath", f"{name}.detections.support", f"{name}.detections.label"]
        )
        for sid, path, sup, lab in zip(ids, paths, supports, labels):
            per_frame = {}
            for (first, last), label in zip(sup or [], lab or []):
                if label is None:
                    continue
                for f in range(int(first), int(last) + 1):
                    per_frame.setdefault(f, label)
            fns = sorted(per_frame)
            raw.append((sid, path, np.array(fns, dtype=np.int64), [per_frame[f] for f in fns]))
    return raw

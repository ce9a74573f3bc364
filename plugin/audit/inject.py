"""Error injection into a dataset's label field, with exact ground truth."""

import numpy as np

from ..core.corrupt import ERROR_TYPES, inject_into_sequences
from ..core.errors import CSLError
from ..runs import fields as fcfields
from ..runs.labels import label_field_kind, strip_frames_prefix
from ..runs.locks import dataset_lock
from ..runs.record import runs_owning
from .prepare import check_collection


def inject_errors(
    samples,
    label_field: str,
    out_field: str,
    error_field: str | None = None,
    kinds=("mislabel", "disorder"),
    rate: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Writes a copy of a frame-level label field with injected errors.

    ``label_field`` is left as it is (it keeps the clean labels);
    ``frames.<out_field>`` gets the labels with errors and
    ``frames.<error_field>`` (default ``<out_field>_error``) the error type of
    every corrupted frame (a Classification; None on clean frames), which
    :func:`fiftyone_csl.evaluate_detection` reads as ground truth.

    Errors go into randomly chosen videos, one per video and cycling through
    ``kinds``, until ``rate`` of the labelled frames are corrupted (videos are
    reused when every video has one). The same ``seed`` gives the same errors.

    Returns:
        ``{error type: number of corrupted frames}``
    """
    import fiftyone as fo  # lazy: importing FiftyOne is slow

    check_collection(samples)  # not a clips or frames view, whose samples are not the dataset's videos
    dataset = samples._dataset
    if label_field_kind(samples, label_field) != "frames":
        raise CSLError("inject_errors works on a frame-level Classification field")
    unknown = sorted(set(kinds) - set(ERROR_TYPES))
    if unknown or not kinds:
        raise CSLError(f"kinds must be a non-empty subset of {ERROR_TYPES}; got {list(kinds)}")
    if not 0 < float(rate) < 1:
        raise CSLError(f"rate must be in (0, 1); got {rate}")
    error_field = error_field or f"{out_field}_error"
    for f in (out_field, error_field):
        if not isinstance(f, str) or not f.isidentifier():
            raise CSLError(f"field names must be valid identifiers; got {f!r}")
    name = strip_frames_prefix(label_field)
    if name in (out_field, error_field):
        raise CSLError("out_field and error_field must differ from label_field")
    for f in (out_field, error_field):
        owners = runs_owning(dataset, f"frames.{f}")
        if owners:
            raise CSLError(f"frames.{f} belongs to run '{owners[0]}'; choose another field (nothing was written)")
        if f in dataset.get_field_schema():
            raise CSLError(f"{f} is a sample field of the dataset; choose another name (nothing was written)")
    schema = dataset.get_frame_field_schema() or {}
    existing = [f for f in (out_field, error_field) if f in schema]
    if existing and not overwrite:
        raise CSLError(f"frames.{existing} exist; pass overwrite=True to replace them")
    for f in existing:  # overwrite replaces only what an injection could have written
        if getattr(schema[f], "document_type", None) is not fo.Classification:
            raise CSLError(f"frames.{f} is not a Classification field; it is never replaced (nothing was written)")

    ids, fns, labels = samples.values(["id", "frames.frame_number", f"frames.{name}.label"])
    classes = sorted({label for video in labels for label in video or [] if label is not None})
    index = {c: i for i, c in enumerate(classes)}
    videos = []
    for sid, fn, lab in zip(ids, fns, labels):
        pairs = sorted((f, l) for f, l in zip(fn or [], lab or []) if l is not None)
        if pairs:
            videos.append((sid, np.array([p[0] for p in pairs]), np.array([index[p[1]] for p in pairs])))
    if not videos:
        raise CSLError("no labelled frames to corrupt")
    corrupted, types_list = inject_into_sequences(
        [v[2] for v in videos], kinds, rate, len(classes), np.random.default_rng(seed)
    )
    videos = [(sid, numbers, given, types) for (sid, numbers, _), given, types in zip(videos, corrupted, types_list)]
    out_values, error_values, counts = {}, {}, {}
    for sid, numbers, given, types in videos:
        out_values[sid] = {int(f): fo.Classification(label=classes[c]) for f, c in zip(numbers, given)}
        errors = {int(f): fo.Classification(label=t) for f, t in zip(numbers, types) if t}
        if errors:  # FiftyOne's frame-dict syntax rejects empty dicts
            error_values[sid] = errors
        for t in types:
            if t:
                counts[t] = counts.get(t, 0) + 1
    with dataset_lock(dataset):
        fcfields.write_injected(dataset, out_field, out_values, error_field, error_values, replace=existing)
    return counts

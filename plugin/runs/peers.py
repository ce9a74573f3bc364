"""Peer scores that need FiftyOne: fiftyone-brain's mistakenness.

The last checkpoint's (out-of-fold) predictions are written as frame-level
Classifications with logits, then ``fiftyone.brain.compute_mistakenness``
scores the given labels against them, as a FiftyOne user would do by hand.
"""

import numpy as np

from ..core.errors import CSLError
from .labels import label_field_kind, strip_frames_prefix


def brain_mistakenness(samples, names, label_field: str, videos: dict, classes: list) -> dict:
    """Runs fiftyone-brain's mistakenness on the scored frames of ``videos``.

    Writes ``frames.<key>_predictions`` and (through the brain)
    ``frames.<key>_mistakenness`` plus a brain run of that key (names from
    ``names``, a :class:`~fiftyone_csl.plugin.record.RunNames`). Returns
    ``{sample_id: (T,) mistakenness}`` on each video's scored frames.
    """
    import fiftyone as fo  # lazy: importing FiftyOne is slow
    import fiftyone.brain as fob  # lazy: importing FiftyOne is slow

    if label_field_kind(samples, label_field) != "frames":
        raise CSLError("the 'mistakenness' peer needs a frame-level Classification label field")
    dataset = samples._dataset
    pred_field = names.predictions_field
    values = {}
    for sid, video in videos.items():
        probs = np.clip(video.trajectory.final_probs, 1e-12, 1.0)
        values[sid] = {
            int(f): fo.Classification(
                label=classes[int(p.argmax())], confidence=float(p.max()), logits=np.log(p).tolist()
            )
            for f, p in zip(video.frame_numbers, probs)
        }
    dataset.set_values(f"frames.{pred_field}", values, key_field="id")
    key = names.brain_key
    if key in dataset.list_brain_runs():
        dataset.delete_brain_run(key)
    scored = dataset.select(list(videos))
    fob.compute_mistakenness(
        scored,
        f"frames.{pred_field}",
        f"frames.{strip_frames_prefix(label_field)}",
        mistakenness_field=key,
        use_logits=True,
        progress=False,
    )
    return read_mistakenness(samples, names, videos)


def read_mistakenness(samples, names, videos: dict) -> dict:
    """``{sample_id: (T,) mistakenness}`` on each video's scored frames, as
    the brain stored it (0 where a frame has none)."""
    field = names.brain_key
    ids, fns, values = samples.select(list(videos)).values(["id", "frames.frame_number", f"frames.{field}"])
    lookup = {sid: dict(zip(fn, val)) for sid, fn, val in zip(ids, fns, values)}
    return {
        sid: np.array([lookup.get(sid, {}).get(int(f)) or 0.0 for f in video.frame_numbers], dtype=np.float32)
        for sid, video in videos.items()
    }


def delete_brain_outputs(dataset, brain_key: str) -> None:
    """Deletes the brain run ``brain_key`` (the brain removes its own field)."""
    if brain_key in dataset.list_brain_runs():
        dataset.delete_brain_run(brain_key)

"""Saved views of a run: ranked videos, suspect frames, suspect clips.

Their names come from the run record (:class:`~fiftyone_csl.plugin.record.RunNames`).
"""

import json


def build_views(dataset, names, threshold: float, clips: bool = True) -> dict:
    """The run's views by name (not yet saved), with their descriptions
    (the clips view only with ``clips``: making one builds its clips)."""
    from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

    key = names.key
    scored = dataset.exists(names.max_field)
    views = {
        names.ranked_view: (
            scored.sort_by(names.max_field, reverse=True),
            f"Videos by their highest frame {key}",
        ),
        names.suspect_frames_view: (
            scored.match_frames(F(key) > threshold).sort_by(names.max_field, reverse=True),
            f"Only frames with {key} > {threshold:.3g}",
        ),
    }
    if clips:  # built here, not in the literal above: making the view generates its clips
        views[names.suspect_clips_view] = (
            dataset.to_clips(names.errors_field).sort_by(F(f"{names.errors_field}.mean_csl"), reverse=True),
            f"One clip per suspect segment in {names.errors_field}, worst first",
        )
    return views


def save_views(dataset, names, threshold: float) -> list:
    """Saves the run's views; a clips view saved before with the same
    definition is not built again: its clips (a dataset FiftyOne generated)
    are dropped, and FiftyOne builds them from the fields as they are now
    when the view is next loaded (a refresh of one video does not pay for
    the clips of every video)."""
    views = build_views(dataset, names, threshold, clips=not _drop_saved_clips(dataset, names))
    for name, (view, description) in views.items():
        dataset.save_view(name, view, description=description, overwrite=True)
    return [names.ranked_view, names.suspect_frames_view, names.suspect_clips_view]  # saved, or kept


def _drop_saved_clips(dataset, names) -> bool:
    """Drops the generated clips of the run's saved clips view if it is the
    view this version saves (clips of the errors field of the whole dataset,
    worst first); False, changing nothing, if it is not."""
    import fiftyone.core.dataset as fod  # lazy: importing FiftyOne is slow

    if names.suspect_clips_view not in dataset.list_saved_views():
        return False
    try:
        stages = [json.loads(s) for s in dataset._get_saved_view_doc(names.suspect_clips_view).view_stages]
        clips, order = (dict(map(tuple, s["kwargs"])) for s in stages)
        state = clips["_state"]
        expected = (
            [s["_cls"] for s in stages] == ["fiftyone.core.stages.ToClips", "fiftyone.core.stages.SortBy"]
            and clips["field_or_expr"] == names.errors_field and state["stages"] == []
            and state["dataset_id"] == str(dataset._doc.id)
            and order["field_or_expr"] == f"{names.errors_field}.mean_csl" and order["reverse"] is True
        )  # fmt: skip
        name = state["name"]
    except (ValueError, KeyError, TypeError):
        return False
    if not expected:
        return False
    if fod.dataset_exists(name):
        backing = fod.load_dataset(name)
        if not (backing._is_clips and backing._doc.sample_collection_name.startswith("clips.")):
            return False  # not the clips FiftyOne generated: left alone, the view is saved again
        backing.delete()
    return True


def delete_views(dataset, view_names) -> None:
    saved = set(dataset.list_saved_views())
    for name in view_names:
        if name in saved:
            dataset.delete_saved_view(name)

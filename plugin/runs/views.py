"""Saved views of a run: ranked videos, suspect frames, suspect clips.

Their names come from the run record (:class:`~fiftyone_csl.plugin.record.RunNames`).
"""


def build_views(dataset, names, threshold: float) -> dict:
    """The run's views by name (not yet saved), with their descriptions."""
    from fiftyone import ViewField as F  # lazy: importing FiftyOne is slow

    key = names.key
    scored = dataset.exists(names.max_field)
    return {
        names.ranked_view: (
            scored.sort_by(names.max_field, reverse=True),
            f"Videos by their highest frame {key}",
        ),
        names.suspect_frames_view: (
            scored.match_frames(F(key) > threshold).sort_by(names.max_field, reverse=True),
            f"Only frames with {key} > {threshold:.3g}",
        ),
        names.suspect_clips_view: (
            dataset.to_clips(names.errors_field).sort_by(F(f"{names.errors_field}.mean_csl"), reverse=True),
            f"One clip per suspect segment in {names.errors_field}, worst first",
        ),
    }


def save_views(dataset, names, threshold: float) -> list:
    views = build_views(dataset, names, threshold)
    for name, (view, description) in views.items():
        dataset.save_view(name, view, description=description, overwrite=True)
    return list(views)


def delete_views(dataset, view_names) -> None:
    saved = set(dataset.list_saved_views())
    for name in view_names:
        if name in saved:
            dataset.delete_saved_view(name)

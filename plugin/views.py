"""Saved views of a run: ranked videos, suspect frames, suspect clips."""


def view_names(csl_field: str) -> list:
    return [f"{csl_field}-ranked", f"{csl_field}-suspect-frames", f"{csl_field}-suspect-clips"]


def existing_views(dataset, csl_field: str) -> list:
    """The run's saved views that exist, the review queue included."""
    saved = set(dataset.list_saved_views())
    return [name for name in [*view_names(csl_field), f"{csl_field}-review-queue"] if name in saved]


def build_views(dataset, csl_field: str, threshold: float) -> dict:
    """The run's views by name (not yet saved)."""
    from fiftyone import ViewField as F

    ranked_name, frames_name, clips_name = view_names(csl_field)
    scored = dataset.exists(f"{csl_field}_max")
    return {
        ranked_name: scored.sort_by(f"{csl_field}_max", reverse=True),
        frames_name: scored.match_frames(F(csl_field) > threshold).sort_by(f"{csl_field}_max", reverse=True),
        clips_name: dataset.to_clips(f"{csl_field}_errors").sort_by(F(f"{csl_field}_errors.mean_csl"), reverse=True),
    }


def save_views(dataset, csl_field: str, threshold: float, overwrite: bool = False) -> list:
    views = build_views(dataset, csl_field, threshold)
    descriptions = {
        f"{csl_field}-ranked": f"Videos by their highest frame {csl_field}",
        f"{csl_field}-suspect-frames": f"Only frames with {csl_field} > {threshold:.3g}",
        f"{csl_field}-suspect-clips": f"One clip per suspect segment in {csl_field}_errors, worst first",
    }
    for name, view in views.items():
        dataset.save_view(name, view, description=descriptions[name], overwrite=overwrite)
    return list(views)


def delete_views(dataset, csl_field: str) -> None:
    for name in existing_views(dataset, csl_field):
        dataset.delete_saved_view(name)

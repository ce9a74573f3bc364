"""Constants and helpers shared by the tests."""

# Small but real: 8 videos cut from bikes.mp4 (about 100 frames each), with
# one injected error in 5 of them.
SMALL = dict(num_videos=8, mislabel_videos=3, disorder_videos=2, seed=3, scale=0.5, persistent=False)
FAST = dict(epochs=20, folds=4, seed=7)


def snapshot(dataset):
    """Everything a failed call must leave unchanged."""
    dataset.reload()
    return (
        sorted(dataset.get_field_schema()),
        sorted(dataset.get_frame_field_schema()),
        sorted(dataset.list_runs()),
        sorted(dataset.list_saved_views()),
        dataset.values("frames.phase.label"),
    )


def broken_first_call(monkeypatch, module, name) -> list:
    """Makes ``module.name`` raise a ``ValueError`` on its first call and
    work after it; returns the list of its calls (one entry each)."""
    original, calls = getattr(module, name), []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("cannot infer a type")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, broken_once)
    return calls

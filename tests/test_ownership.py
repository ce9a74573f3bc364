"""A run owns exactly what it created: its fields, views and files, under
its dataset's id and its key. Nothing else is read, replaced or deleted."""

import os

import fiftyone as fo
import fiftyone_csl as fcsl
import numpy as np
import pytest
from fiftyone_csl.plugin.core import stages as pipeline
from fiftyone_csl.plugin.runs.record import get_run_config

TINY = dict(embeddings_field="emb", epochs=2, folds=2, seed=1)


def _csl(dataset, key="k"):
    dataset.reload()
    return dataset.values(f"frames.{key}")


def test_scores_never_replace_the_label_field(scratch):
    labels = scratch.values("frames.phase.label")
    with pytest.raises(fcsl.CSLError, match="label field"):
        fcsl.compute_csl(scratch, "phase", csl_field="phase", overwrite=True, **TINY)
    assert scratch.values("frames.phase.label") == labels


def test_a_clone_never_touches_the_original_runs_files(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    before = _csl(scratch)
    clone = scratch.clone()
    try:
        assert get_run_config(clone, "k").run_dir == get_run_config(scratch, "k").run_dir  # inherited record
        with pytest.raises(fcsl.CSLError, match="inherited from another dataset"):
            fcsl.load_csl_results(clone, "k")
        other = scratch.clone()
        fcsl.delete_csl_run(other, "k")  # deletes the clone's fields and record, not the original's files
        other.delete()
        assert len(fcsl.load_csl_results(scratch, "k").videos) == len(scratch)
        assert _csl(scratch) == before
        own = fcsl.copy_csl_run(clone, "k")  # the documented way to give a clone its run
        assert str(clone._doc.id) in own and own != get_run_config(scratch, "k").run_dir
        assert len(fcsl.load_csl_results(clone, "k").videos) == len(clone)
        fcsl.delete_csl_run(clone, "k")
        assert not os.path.exists(own)
        assert len(fcsl.load_csl_results(scratch, "k").videos) == len(scratch)
    finally:
        clone.delete()


def test_datasets_whose_names_look_alike_keep_separate_runs(scratch):
    a = scratch.clone("p5/x")
    b = scratch.clone("p5-x")
    try:
        for d in (a, b):
            for key in fcsl.list_csl_runs(d):
                d.delete_run(key)
        ra = fcsl.compute_csl(a, "phase", "k", **TINY)
        rb = fcsl.compute_csl(b, "phase", "k", **dict(TINY, seed=2))
        assert os.path.dirname(ra.run_dir) != os.path.dirname(rb.run_dir)
        la, lb = fcsl.load_csl_results(a, "k"), fcsl.load_csl_results(b, "k")
        for sid, video in la.videos.items():
            np.testing.assert_array_equal(video.scores["csl"], ra.videos[sid].scores["csl"])
        for sid, video in lb.videos.items():
            np.testing.assert_array_equal(video.scores["csl"], rb.videos[sid].scores["csl"])
    finally:
        a.delete()
        b.delete()


def test_a_key_never_loads_another_keys_files(scratch):
    ra = fcsl.compute_csl(scratch, "phase", "ka", **TINY)
    rb = fcsl.compute_csl(
        scratch, "phase", "kb", run_dir=os.path.dirname(os.path.dirname(os.path.dirname(ra.run_dir))), **TINY
    )
    assert os.path.dirname(ra.run_dir) != os.path.dirname(rb.run_dir)
    config = get_run_config(scratch, "kb")
    config.run_dir, config.manifest_sha256 = ra.run_dir, get_run_config(scratch, "ka").manifest_sha256
    scratch.update_run_config("kb", config)  # a record pointed at another key's files
    with pytest.raises(fcsl.CSLError, match="belongs to run 'ka', not 'kb'"):
        fcsl.load_csl_results(scratch, "kb")


def test_overwrite_replaces_only_what_the_run_owns(scratch):
    fcsl.compute_csl(scratch, "phase", "k", peer_scores=["aum"], **TINY)
    scratch.add_sample_field("k_note", fo.StringField)  # the user's, with the run's prefix
    scratch.set_values("k_note", ["mine"] * len(scratch))
    scratch.save_view("k-mine", scratch.limit(1))
    fcsl.compute_csl(scratch, "phase", "k", overwrite=True, **TINY)  # no peers now
    scratch.reload()
    assert "k_aum" not in scratch.get_frame_field_schema()  # the old run's, gone with it
    assert scratch.values("k_note") == ["mine"] * len(scratch)
    assert "k-mine" in scratch.list_saved_views()
    assert "emb" in scratch.get_frame_field_schema() and "phase" in scratch.get_frame_field_schema()
    fcsl.delete_csl_run(scratch, "k")
    scratch.reload()
    assert "k_note" in scratch.get_field_schema() and "k-mine" in scratch.list_saved_views()
    assert [v for v in scratch.list_saved_views() if v.startswith("k-") and v != "k-mine"] == []


def test_a_failing_overwrite_leaves_the_previous_run(scratch, monkeypatch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    before, config = _csl(scratch), get_run_config(scratch, "k")
    key_dir = os.path.dirname(config.run_dir)

    def crash(*args, **kwargs):
        raise RuntimeError("the machine ran out of something")

    monkeypatch.setattr(pipeline.Replayer, "trajectory", crash)
    with pytest.raises(RuntimeError):
        fcsl.compute_csl(scratch, "phase", "k", overwrite=True, **dict(TINY, seed=2))
    monkeypatch.undo()
    assert _csl(scratch) == before
    assert get_run_config(scratch, "k").run_dir == config.run_dir
    assert len(fcsl.load_csl_results(scratch, "k").videos) == len(scratch)
    assert os.listdir(key_dir) == [os.path.basename(config.run_dir)]  # no staging left
    for name in ("k-ranked", "k-suspect-frames", "k-suspect-clips"):
        assert name in scratch.list_saved_views()


def _backing(dataset, view_name):
    """The dataset FiftyOne generated for a saved clips view."""
    import json

    stages = [json.loads(s) for s in dataset._get_saved_view_doc(view_name).view_stages]
    clips = next(s for s in stages if s["_cls"].endswith("ToClips"))
    return dict(map(tuple, clips["kwargs"]))["_state"]["name"]


def test_the_saved_clips_follow_new_flags_and_a_foreign_clips_view_is_saved_again(scratch, monkeypatch):
    import fiftyone.core.dataset as fod
    from fiftyone import ViewField as F

    results = fcsl.compute_csl(scratch, "phase", "k", **TINY)
    first = len(scratch.load_saved_view("k-suspect-clips"))
    assert first == scratch.count("k_errors.detections") > 0
    old = _backing(scratch, "k-suspect-clips")
    from fiftyone_csl.plugin.runs.access import load_videos

    threshold = next(t for t in (results.threshold * 3, results.threshold * 10, 1e6)
                     if sum(len(v.segments) for v in load_videos(scratch, "k", t).values()) != first)  # fmt: skip
    import fiftyone.core.clips as focl

    made, make = [], focl.make_clips_dataset
    monkeypatch.setattr(focl, "make_clips_dataset", lambda *a, **k: made.append(1) or make(*a, **k))
    fcsl.flag_errors(scratch, "k", threshold=threshold)
    monkeypatch.undo()
    assert made == []  # the commit generates no clips: the view's next load does
    scratch.reload()
    assert not fod.dataset_exists(old)  # the stale clips are gone, not left behind
    clips = scratch.load_saved_view("k-suspect-clips")
    assert len(clips) == scratch.count("k_errors.detections") != first  # built from the new flags
    assert _backing(scratch, "k-suspect-clips") == old  # under the saved name: the view loads again

    # a view of another definition saved under the run's name (here: one video's clips) is not
    # emptied: it is saved again as the run's view
    scratch.save_view("k-suspect-clips", scratch.limit(1).to_clips("k_errors").sort_by(
        F("k_errors.mean_csl"), reverse=True), overwrite=True)  # fmt: skip
    foreign = _backing(scratch, "k-suspect-clips")
    fcsl.flag_errors(scratch, "k", threshold=results.threshold)
    scratch.reload()
    assert len(scratch.load_saved_view("k-suspect-clips")) == scratch.count("k_errors.detections") == first
    assert _backing(scratch, "k-suspect-clips") != foreign

"""Every bad input a hostile user tried gets a clear CSLError before any
write: the dataset, its runs and the run folders are exactly as before."""

import json
import os
import shutil

import fiftyone as fo
import fiftyone_csl as fcsl
import numpy as np
import pytest
from _common import snapshot

TINY = dict(embeddings_field="emb", epochs=2, folds=2, seed=1)


def _run_files():
    root = os.path.join(os.environ["FIFTYONE_CSL_DIR"], "runs")
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files) if os.path.isdir(root) else []


def _refused(samples, match, call=None, **kwargs):
    dataset = samples._root_dataset  # a clips or frames view's source videos
    before, files = snapshot(dataset), _run_files()
    call = call or (lambda: fcsl.compute_csl(samples, "phase", **{**TINY, **kwargs}))
    with pytest.raises(fcsl.CSLError, match=match):
        call()
    assert snapshot(dataset) == before, "a refused call changed the dataset"
    assert _run_files() == files, "a refused call left files behind"


# (what the user passed, the error it must get)
BAD_OPTIONS = [
    (dict(csl_field="phase", overwrite=True), "label field"),
    (dict(csl_field="emb", overwrite=True), "embeddings field"),
    (dict(csl_field="_id"), "valid identifier|reserves"),
    (dict(csl_field="id"), "reserves"),
    (dict(csl_field="frame_number"), "reserves"),
    (dict(csl_field="bad-key"), "valid identifier"),
    (dict(threshold=-1), "threshold must be >= 0"),
    (dict(threshold=True), "threshold must be a number"),
    (dict(threshold=float("nan")), "threshold must be finite"),
    (dict(epochs=2.7), "epochs must be an integer"),
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(lr=-1), "lr must be > 0"),
    (dict(lr="fast"), "lr must be a number"),
    (dict(folds=1), "folds >= 2"),
    (dict(folds=20), "cannot be split into 20 folds"),
    (dict(stride=0), "stride must be >= 1"),
    (dict(device="tpu"), "device must be"),
    (dict(precision="fp8"), "unknown precision"),
    (dict(model="lstm"), "unknown model"),
    (dict(model_kwargs={"depth_of_field": 3}), "model_kwargs"),
    (dict(peer_scores=["vibes"]), "unknown peer score"),
    (dict(peer_scores="aum"), "must be a list"),
    (dict(epochz=3), "unknown argument"),
    (dict(overwrite="yes"), "overwrite must be True or False"),
    (dict(run_dir="/"), "filesystem root"),
    (dict(store_embeddings_field="phase", embeddings_field=None), "label field|exists"),
]


@pytest.mark.parametrize("kwargs,match", BAD_OPTIONS, ids=[str(k) for k, _ in BAD_OPTIONS])
def test_bad_option_is_refused_before_any_write(scratch, kwargs, match):
    _refused(scratch, match, **kwargs)


def test_bad_options_of_the_other_steps_are_refused(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    _refused(scratch, "threshold must be >= 0", lambda: fcsl.flag_errors(scratch, "k", threshold=-1))
    _refused(scratch, "device must be", lambda: fcsl.replay_checkpoints(scratch, "k", device="tpu"))
    _refused(scratch, "no CSL run", lambda: fcsl.replay_checkpoints(scratch, "nope"))
    _refused(scratch, "reserves", lambda: fcsl.compute_features(scratch, "frame_number"))
    _refused(scratch, "not a vector field", lambda: fcsl.compute_features(scratch, "phase", overwrite=True))
    _refused(scratch, "passes must be >= 1", lambda: fcsl.select_frames_for_review(scratch, "k", passes=0))
    _refused(
        scratch, "train_checkpoints\\(\\) got unknown", lambda: fcsl.train_checkpoints(scratch, "phase", "t", lr_=1)
    )


def test_views_whose_samples_are_not_the_videos_are_refused(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    clips = scratch.to_clips("k_errors")
    _refused(clips, "clips, frames or patches view", lambda: fcsl.compute_csl(clips, "phase", "k2", **TINY))
    frames = scratch.to_frames(sample_frames=False)
    _refused(frames, "clips, frames or patches view", lambda: fcsl.replay_checkpoints(frames, "k"))


def test_group_slices_are_refused():
    grouped = fo.Dataset()
    try:
        grouped.add_group_field("group", default="left")
        group = fo.Group()
        sample = fo.Sample(filepath="/nonexistent/a.mp4", group=group.element("left"))
        grouped.add_samples([sample, fo.Sample(filepath="/nonexistent/a.jpg", group=group.element("right"))])
        view = grouped.select_group_slices("left")
        files = _run_files()
        with pytest.raises(fcsl.CSLError, match="grouped collections"):
            fcsl.compute_csl(view, "phase", **TINY)
        assert grouped.list_runs() == [] and _run_files() == files
    finally:
        grouped.delete()


def test_a_fold_that_would_train_on_one_frame_is_refused(scratch):
    """Two videos, folds=2: the fold that holds out the long video trains on
    the other one's single labelled frame (a NaN normalisation before)."""
    ids = scratch.values("id")
    keep = scratch.select(ids[:2])
    short = keep.first()
    for number in list(short.frames.keys())[1:]:
        short.frames[number]["phase"] = None
    short.save()
    _refused(keep, "fold \\d would train on 1 frame", lambda: fcsl.compute_csl(keep, "phase", **TINY))


def test_an_unreadable_or_truncated_video_is_named(scratch, tmp_path):
    sample = scratch.first()
    broken = str(tmp_path / "broken.mp4")
    with open(sample.filepath, "rb") as f:
        data = f.read()
    with open(broken, "wb") as f:
        f.write(data[: len(data) // 3])  # truncated: the header survives, most frames do not
    sample.filepath = broken
    sample.save()
    kwargs = dict(TINY, embeddings_field=None, cache_dir=str(tmp_path / "cache"))
    _refused(scratch, "broken.mp4", lambda: fcsl.compute_csl(scratch, "phase", **kwargs))
    with open(broken, "wb") as f:
        f.write(b"not a video at all")
    _refused(scratch, "broken.mp4", lambda: fcsl.compute_csl(scratch, "phase", **kwargs))


def test_an_altered_manifest_is_refused_on_load(scratch):
    results = fcsl.compute_csl(scratch, "phase", "k", **TINY)
    path = os.path.join(results.run_dir, "manifest.json")
    saved = open(path).read()
    manifest = json.loads(saved)
    manifest["classes"] = manifest["classes"][::-1]  # would silently change suggested labels
    with open(path, "w") as f:
        json.dump(manifest, f)
    for call in (
        lambda: fcsl.load_csl_results(scratch, "k"),
        lambda: fcsl.flag_errors(scratch, "k", 1.0),
        lambda: fcsl.replay_checkpoints(scratch, "k"),
    ):
        _refused(scratch, "does not match the sha256 in the run record", call)
    with open(path, "w") as f:
        f.write("{ not json")
    _refused(scratch, "does not match|not a valid manifest", lambda: fcsl.load_csl_results(scratch, "k"))
    with open(path, "w") as f:
        f.write(saved)
    assert len(fcsl.load_csl_results(scratch, "k").videos) == len(scratch)


def test_a_class_in_one_video_is_marked_not_flagged_as_mislabel(scratch):
    """Held out with its only video, a class is never seen in training: its
    frames are marked unseen_class (with a warning), never NaN."""
    sample = scratch.first()
    for number in list(sample.frames.keys())[:20]:
        sample.frames[number]["phase"] = fo.Classification(label="rare")
    sample.save()
    results = fcsl.compute_csl(scratch, "phase", "k", **TINY)
    assert any("'rare'" in w for w in results.warnings)
    assert any("'rare'" in w for w in fcsl.run_summary(scratch, "k")["warnings"])
    rare = [s for s in results.segments() if s.given_label == "rare"]
    assert rare and all(s.error_type == "unseen_class" for s in rare)
    assert all(np.isfinite(v.scores["csl"]).all() for v in results.videos.values())
    scratch.reload()
    values = [x for frames in scratch.values("frames.k") for x in frames if x is not None]
    assert np.isfinite(values).all() and len(values) == scratch.count("frames.phase")


def test_the_tests_use_their_own_database_server():
    import fiftyone.core.odm as foo

    uri = os.environ["FIFTYONE_DATABASE_URI"]
    host, port = foo.get_db_client().address
    assert uri.endswith(f":{port}") and port != 27017
    assert fo.config.database_uri == uri


def test_run_folder_of_a_dead_staging_is_never_outside_the_run(scratch, tmp_path):
    """Cleanup removes dead staging in the run's own folder, nothing beside it."""
    root = tmp_path / "runs"
    neighbour = root / "keep-me"
    neighbour.mkdir(parents=True)
    (neighbour / "file").write_text("not ours")
    results = fcsl.compute_csl(scratch, "phase", "k", run_dir=str(root), **TINY)
    key_dir = os.path.dirname(results.run_dir)
    dead = os.path.join(key_dir, ".staging-deadbeef")
    os.makedirs(dead)
    with open(os.path.join(dead, "owner.json"), "w") as f:
        json.dump({"host": "gone", "pid": 1, "time": 0}, f)
    fcsl.compute_csl(scratch, "phase", "k", run_dir=str(root), overwrite=True, **TINY)
    assert not os.path.exists(dead)
    assert (neighbour / "file").read_text() == "not ours"
    assert [n for n in os.listdir(key_dir) if not n.startswith("v")] == []
    shutil.rmtree(root)

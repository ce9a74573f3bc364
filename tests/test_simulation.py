"""The simulation beside a run (error probabilities, the estimated precision
of the flags, the threshold aimed at a target precision) and refreshing the
scores of videos whose labels were fixed, on datasets (the array-level
simulation: tests/core/test_simulation_arrays.py)."""

import fiftyone_csl as fcsl
import numpy as np
import pytest
from _common import FAST, snapshot
from fiftyone import ViewField as F
from fiftyone_csl.plugin.core import metrics


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(simulation="yes"), "simulation must be True or False"),
        (dict(simulation=True, target_precision=1.5), "target_precision must be in"),
        (dict(simulation=True, target_precision="high"), "target_precision must be a number"),
    ],
)
def test_bad_simulation_options_change_nothing(scratch, kwargs, message):
    before = snapshot(scratch)
    with pytest.raises(fcsl.CSLError, match=message):
        fcsl.compute_csl(scratch, "phase", "sim", embeddings_field="emb", **kwargs, **FAST)
    assert snapshot(scratch) == before


def test_train_checkpoints_takes_no_simulation(scratch):
    with pytest.raises(fcsl.CSLError, match="scores nothing"):
        fcsl.train_checkpoints(scratch, "phase", "sim", embeddings_field="emb", simulation=True, **FAST)


def test_simulation_on_a_dataset_writes_error_prob_and_the_estimated_precision(scratch):
    results = fcsl.compute_csl(scratch, "phase", "sim", embeddings_field="emb", simulation=True, **FAST)
    scratch.reload()
    assert "sim_error_prob" in scratch.get_frame_field_schema()
    labelled = scratch.count("frames.phase")
    assert scratch.count("frames.sim_error_prob") == labelled
    scores, types = metrics.frame_ground_truth(
        scratch,
        "phase_error",
        results,
    )
    probs = np.concatenate([results.videos[sid].scores["error_prob"] for sid in results.videos])
    assert metrics.frame_auroc_ap(probs, types != "")["auroc"] > 0.8
    summary = fcsl.run_summary(scratch, "sim")
    assert summary["threshold"] == pytest.approx(results.threshold)
    assert summary["simulation"]["estimated_precision"] == pytest.approx(results.simulation["estimated_precision"])
    loaded = fcsl.load_csl_results(scratch, "sim")
    sid = next(iter(results.videos))
    assert np.allclose(loaded.videos[sid].scores["error_prob"], results.videos[sid].scores["error_prob"])

    report = fcsl.evaluate_detection(scratch, "sim", "phase_error")
    assert report["segments"]["estimated_precision"] == pytest.approx(results.simulation["estimated_precision"])

    # re-flagging at ln C and back at "auto" (the aimed threshold); the estimate follows the threshold
    fcsl.flag_errors(scratch, "sim", threshold=float(np.log(len(results.classes))))
    assert fcsl.run_summary(scratch, "sim")["threshold"] == pytest.approx(np.log(len(results.classes)))
    again = fcsl.flag_errors(scratch, "sim", threshold="auto")
    assert again.threshold == pytest.approx(results.simulation["aimed_threshold"])

    # a replay (labels may have changed) drops what the simulation learnt, and only that
    fcsl.replay_checkpoints(scratch, "sim")
    scratch.reload()
    assert "sim_error_prob" not in scratch.get_frame_field_schema()
    assert "sim" in scratch.get_frame_field_schema()
    assert fcsl.run_summary(scratch, "sim")["simulation"] is None


def test_refresh_scores_rescores_only_the_videos_whose_labels_were_fixed(scratch):
    """A reviewer fixes one video's wrong labels: refreshing scores that video
    again with the run's checkpoints (its fixed frames' CSL falls) and leaves
    every other video's scores as they were."""
    results = fcsl.compute_csl(scratch, "phase", "r", embeddings_field="emb", **FAST)
    assert fcsl.changed_videos(scratch, "r") == []
    before = snapshot(scratch)
    assert len(fcsl.refresh_scores(scratch, "r").videos) == 0
    assert snapshot(scratch) == before  # nothing to do, nothing written

    sample = scratch.match(F("injected") == "mislabel").first()
    wrong = [f.frame_number for f in sample.frames.values() if f["phase_error"] is not None]
    assert wrong
    csl_before = {n: sample.frames[n]["r"] for n in wrong}
    other_scores = dict(zip(*scratch.exclude([sample.id]).values(["id", "frames.r"])))
    for n in wrong:  # the reviewer's fix
        frame = sample.frames[n]
        frame["phase"].label = frame["phase_clean"].label
    sample.save()
    assert fcsl.changed_videos(scratch, "r") == [sample.id]

    refreshed = fcsl.refresh_scores(scratch, "r")
    assert list(refreshed.videos) == [sample.id]
    sample.reload()
    assert np.mean([sample.frames[n]["r"] for n in wrong]) < np.mean(list(csl_before.values()))
    assert dict(zip(*scratch.exclude([sample.id]).values(["id", "frames.r"]))) == other_scores
    assert fcsl.changed_videos(scratch, "r") == []
    assert len(fcsl.load_csl_results(scratch, "r").videos) == len(results.videos)


def _relabel_one_frame(sample):
    classes = sorted(set(sample._dataset.distinct("frames.phase.label")))
    frame = sample.frames[sorted(sample.frames.keys())[3]]
    frame["phase"].label = next(c for c in classes if c != frame["phase"].label)
    sample.save()


def test_a_refresh_parses_the_run_manifest_once_unless_another_commit_replaced_it(scratch, monkeypatch):
    """A large run's manifest takes a tenth of a second to parse: a refresh
    reads it once (the changes, the replay, the merge, the write-back and the
    cleanup share it). If another call commits between the refresh's check
    and its write, the refresh reads the new version and keeps its videos."""
    import json

    from fiftyone_csl.plugin.audit import rescore

    fcsl.compute_csl(scratch, "phase", "r", embeddings_field="emb", **FAST)
    parsed, real = [], json.load

    def load(f, *args, **kwargs):
        if f.name.endswith("manifest.json"):
            parsed.append(f.name)
        return real(f, *args, **kwargs)

    monkeypatch.setattr(json, "load", load)
    one, two = scratch.take(2, seed=0)
    _relabel_one_frame(one)
    assert list(fcsl.refresh_scores(scratch, "r").videos) == [one.id]
    assert len(parsed) == 1, parsed

    real_changed = rescore._changed

    def changed_then_another_commit(samples, key):
        found = real_changed(samples, key)
        monkeypatch.setattr(rescore, "_changed", real_changed)
        _relabel_one_frame(two)  # another reviewer's refresh commits meanwhile
        assert list(fcsl.refresh_scores(scratch.select(two.id), "r").videos) == [two.id]
        return found

    _relabel_one_frame(one)
    monkeypatch.setattr(rescore, "_changed", changed_then_another_commit)
    assert list(fcsl.refresh_scores(scratch.select(one.id), "r").videos) == [one.id]
    assert fcsl.changed_videos(scratch, "r") == []  # both commits' videos are in the version that stayed
    assert len(fcsl.load_csl_results(scratch, "r").videos) == len(scratch)


def test_changed_videos_reads_the_kept_digests_not_the_trajectories(scratch, monkeypatch):
    """Which videos changed is told by the digest of each video's labels the
    run kept: no trajectory is opened, and a label changed on a frame the
    stride did not score counts too (its video is scored again, cheaply)."""
    from fiftyone_csl.plugin.core.manifest import Manifest

    fcsl.compute_csl(scratch, "phase", "r", embeddings_field="emb", stride=2, **FAST)
    opened = []
    real = Manifest.verified_path
    monkeypatch.setattr(Manifest, "verified_path", lambda self, d, rel: opened.append(rel) or real(self, d, rel))
    assert fcsl.changed_videos(scratch, "r") == []
    sample = scratch.first()
    even = next(n for n in sorted(sample.frames.keys()) if n % 2 == 0)  # not on the stride-2 grid
    classes = sorted(set(scratch.distinct("frames.phase.label")))
    frame = sample.frames[even]
    frame["phase"].label = next(c for c in classes if c != frame["phase"].label)
    sample.save()
    assert fcsl.changed_videos(scratch, "r") == [sample.id]
    assert not [rel for rel in opened if rel.startswith("trajectories/")]
    frame["phase"].label = None  # a label removed
    sample.save()
    assert fcsl.changed_videos(scratch, "r") == [sample.id]

"""A process killed (SIGKILL) at any stage of a run leaves the dataset
readable and the previous run loadable; the next call works and leaves no
debris; a killed training resumes from its last verified checkpoint."""

import json
import logging
import os
import signal
import subprocess
import sys

import fiftyone_csl as fcsl
import numpy as np
import pytest
import torch
from _common import broken_first_call
from fiftyone_csl.plugin.runs.record import get_run_config, load_manifest

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = dict(label_field="phase", csl_field="k", embeddings_field="emb", epochs=3, folds=2, seed=1)


def run_child(dataset, call, kill_at, kwargs, barrier=None, wait=True):
    args = [sys.executable, os.path.join(HERE, "_child.py"), dataset.name, call, kill_at, json.dumps(kwargs)]
    proc = subprocess.Popen(
        args + ([barrier] if barrier else []), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if not wait:
        return proc
    out = proc.communicate(timeout=900)[0]
    return proc.returncode, out


def fields_match_files(dataset, key):
    """The frame scores in the dataset are those of the run's files."""
    dataset.reload()
    results = fcsl.load_csl_results(dataset, key)
    ids, numbers, values = dataset.values(["id", "frames.frame_number", f"frames.{key}"])
    for sid, fns, vals in zip(ids, numbers, values):
        video = results.videos[sid]
        stored = dict(zip(fns, vals))
        np.testing.assert_allclose([stored[int(f)] for f in video.frame_numbers], video.scores["csl"], rtol=1e-6)
    maxima = dict(zip(*dataset.values(["id", f"{key}_max"])))
    errors = dict(zip(*dataset.values(["id", f"{key}_errors"])))
    for sid, video in results.videos.items():
        assert maxima[sid] == pytest.approx(float(video.scores["csl"].max()), rel=1e-6)
        assert [(d.support, d.label) for d in errors[sid].detections] == [
            ([s.first, s.last], s.error_type) for s in video.segments
        ]
    return results


def debris(dataset, key):
    key_dir = os.path.dirname(get_run_config(dataset, key).run_dir)
    return [n for n in os.listdir(key_dir) if not n.startswith("v")], len(os.listdir(key_dir))


# where the overwrite dies, and whether the new run was committed by then
STAGES = [
    ("features", False),
    ("training", False),
    ("replay", False),
    ("promote", False),
    ("write-back", True),
    ("cleanup", True),
]


@pytest.mark.parametrize("stage,committed", STAGES, ids=[s for s, _ in STAGES])
def test_a_kill_at_any_stage_leaves_a_loadable_run(scratch, stage, committed, tmp_path):
    scratch.persistent = True  # the child loads it by name
    labels = scratch.values("frames.phase.label")
    first = fcsl.compute_csl(scratch, **TINY)
    before = {sid: v.scores["csl"] for sid, v in first.videos.items()}
    overwrite = dict(TINY, overwrite=True, seed=2)
    if stage == "features":  # the backbone path, with a cache of this test's own
        overwrite.update(embeddings_field=None, cache_dir=str(tmp_path / "cache"))
    code, out = run_child(scratch, "compute_csl", stage, overwrite)
    assert code == -signal.SIGKILL, out[-3000:]

    scratch.reload()
    assert scratch.first() is not None and scratch.values("frames.phase.label") == labels
    results = fields_match_files(scratch, "k")  # finishes a committed write-back first
    seed = get_run_config(scratch, "k").train["seed"]
    assert seed == (2 if committed else 1)
    if not committed:
        for sid, values in before.items():
            np.testing.assert_array_equal(results.videos[sid].scores["csl"], values)
    assert sorted(scratch.list_saved_views()) == ["k-ranked", "k-suspect-clips", "k-suspect-frames"]

    again = fcsl.compute_csl(scratch, **dict(TINY, overwrite=True, seed=3))
    assert len(again.videos) == len(scratch)
    fields_match_files(scratch, "k")
    assert debris(scratch, "k") == ([], 1), "the run folder keeps one version and nothing else"


def test_a_killed_replay_with_other_labels_leaves_the_run_loadable(scratch):
    scratch.persistent = True
    scratch.clone_frame_field("phase", "phase2")
    fcsl.compute_csl(scratch, **TINY)
    before = _scores(fcsl.load_csl_results(scratch, "k"))
    code, out = run_child(scratch, "replay_checkpoints", "replay", dict(csl_field="k", label_field="phase2"))
    assert code == -signal.SIGKILL, out[-3000:]
    assert _scores(fields_match_files(scratch, "k")) == before
    code, out = run_child(scratch, "replay_checkpoints", "write-back", dict(csl_field="k", label_field="phase2"))
    assert code == -signal.SIGKILL, out[-3000:]
    fields_match_files(scratch, "k")  # the committed replay is finished by the next reader
    fcsl.replay_checkpoints(scratch, "k")
    assert debris(scratch, "k") == ([], 1)


def test_a_killed_reflag_is_finished_by_the_next_reader(scratch):
    """flag_errors writes only flags; killed before writing them, the new
    threshold is committed and the next load writes the flags it implies."""
    scratch.persistent = True
    first = fcsl.compute_csl(scratch, **TINY)
    assert first.segments(), "the audit needs suspects for a new threshold to change"
    # a threshold no frame reaches: no frame may change, so no suspect is left
    code, out = run_child(scratch, "flag_errors", "flags", dict(csl_field="k", threshold=first.threshold * 50))
    assert code == -signal.SIGKILL, out[-3000:]
    results = fields_match_files(scratch, "k")  # flags written at the committed threshold
    assert results.threshold == pytest.approx(first.threshold * 50)
    assert [s.first for s in results.segments()] != [s.first for s in first.segments()]  # the flags did change
    assert debris(scratch, "k") == ([], 1)


def _relabel_one_frame(dataset):
    """Changes the label of one frame of the first video; returns the video's id."""
    sample = dataset.first()
    frame = sample.frames[2]
    classes = sorted(set(dataset.distinct("frames.phase.label")))
    frame["phase"].label = next(c for c in classes if c != frame["phase"].label)
    sample.save()
    return sample.id


def test_a_refresh_killed_while_its_version_adopts_the_trajectories_is_finished_by_the_next_reader(scratch):
    """A refresh moves the other videos' trajectories into the new version as
    one folder after its journal entry: killed in the middle of that move,
    the next reader finishes it and every video loads with its files."""
    scratch.persistent = True
    first = fcsl.compute_csl(scratch, **TINY)
    before = _scores(first)
    sid = _relabel_one_frame(scratch)
    code, out = run_child(scratch, "refresh_scores", "adopt", dict(csl_field="k"))
    assert code == -signal.SIGKILL, out[-3000:]
    results = fields_match_files(scratch, "k")  # the journal's move finished, every file verified
    assert fcsl.changed_videos(scratch, "k") == []  # the relabelled video was scored again
    assert {k: v for k, v in _scores(results).items() if k != sid} == {k: v for k, v in before.items() if k != sid}
    manifest = load_manifest(scratch, get_run_config(scratch, "k"))
    folder = os.path.join(get_run_config(scratch, "k").run_dir, "trajectories")
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(r) for r in manifest.trajectories.values())
    assert debris(scratch, "k") == ([], 1)


def test_a_refresh_that_cannot_be_written_gives_the_trajectories_back(scratch, monkeypatch):
    from fiftyone_csl.plugin.runs import outputs

    first = fcsl.compute_csl(scratch, **TINY)
    before = _scores(first)
    _relabel_one_frame(scratch)
    broken_first_call(monkeypatch, outputs, "write_flags")  # after the folder moved: it must go back
    with pytest.raises(fcsl.CSLError, match="the previous run is restored"):
        fcsl.refresh_scores(scratch, "k")
    monkeypatch.undo()
    assert get_run_config(scratch, "k").run_dir == first.run_dir
    assert _scores(fields_match_files(scratch, "k")) == before  # every file of the previous version verified
    manifest = load_manifest(scratch, get_run_config(scratch, "k"))
    folder = os.path.join(first.run_dir, "trajectories")  # its own files back, and no others
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(r) for r in manifest.trajectories.values())
    assert fcsl.changed_videos(scratch, "k") != []  # the relabelled video is still to refresh
    fcsl.refresh_scores(scratch, "k")
    assert fcsl.changed_videos(scratch, "k") == [] and debris(scratch, "k") == ([], 1)


def _scores(results):
    return {sid: v.scores["csl"].tolist() for sid, v in results.videos.items()}


def test_a_killed_training_resumes_and_gives_the_same_checkpoints(scratch, caplog, monkeypatch):
    from fiftyone_csl.plugin.core import train

    scratch.persistent = True
    kwargs = dict(TINY, epochs=4, seed=5)
    kwargs.pop("label_field")
    code, out = run_child(scratch, "train_checkpoints", "training", dict(kwargs, label_field="phase"))
    assert code == -signal.SIGKILL, out[-3000:]
    assert "k" not in scratch.list_runs()  # nothing committed
    saved = []
    save = train._atomic_torch_save

    def counting_save(obj, path):
        saved.append(os.path.basename(path))
        return save(obj, path)

    monkeypatch.setattr(train, "_atomic_torch_save", counting_save)
    with caplog.at_level(logging.INFO, logger="fiftyone_csl"):
        resumed_dir = fcsl.train_checkpoints(scratch, "phase", **kwargs)
    monkeypatch.undo()
    assert "resuming run 'k'" in caplog.text
    # killed after fold 0's second checkpoint, before its state was saved: epochs 2-4 of fold 0
    # and 1-4 of fold 1 are trained again, epoch 1 of fold 0 is not
    assert sum(n.startswith("epoch_") for n in saved) == 2 * 4 - 1
    fresh_dir = fcsl.train_checkpoints(scratch, "phase", **dict(kwargs, csl_field="fresh"))
    resumed = load_manifest(scratch, get_run_config(scratch, "k"))
    fresh = load_manifest(scratch, get_run_config(scratch, "fresh"))
    assert [len(c) for c in resumed.checkpoints] == [4, 4]
    for a, b in zip(sum(resumed.checkpoints, []), sum(fresh.checkpoints, [])):
        sa = torch.load(os.path.join(resumed_dir, a), weights_only=True)
        sb = torch.load(os.path.join(fresh_dir, b), weights_only=True)
        for name in sa:
            assert torch.equal(sa[name], sb[name]), (a, name)
    assert not [r for r in resumed.files if r.endswith("resume.pt")]
    assert debris(scratch, "k") == ([], 1)

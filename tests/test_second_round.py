"""The second round of training on a dataset: its checkpoints are the run's
files (verified, removed with it), a refresh decodes a changed video with
them, the calls that train one round refuse ``rounds=2`` before any work, and
a run killed in the second round resumes from its verified checkpoints."""

import os
import signal

import fiftyone_csl as fcsl
import numpy as np
import pytest
import torch
from _common import snapshot
from fiftyone_csl.plugin.core.errors import CSLError
from fiftyone_csl.plugin.core.rounds import PREFIX
from fiftyone_csl.plugin.runs.record import get_run_config, load_manifest
from test_faults import run_child

TINY = dict(embeddings_field="emb", epochs=3, folds=2, seed=1, progress=False)


def _round_two(dataset, key):
    manifest = load_manifest(dataset, get_run_config(dataset, key))
    return manifest, sum(manifest.second_round["checkpoints"], [])


def test_a_second_round_is_the_runs_and_leaves_csl_as_one_round_gives_it(scratch):
    one = fcsl.compute_csl(scratch, "phase", "one", rounds=1, **TINY)
    two = fcsl.compute_csl(scratch, "phase", "two", rounds=2, **TINY)
    assert one.second_round["ran"] is False and one.second_round["reason"] == "rounds=1"
    assert two.second_round["ran"] is True and two.second_round["masked_frames"] > 0
    assert fcsl.run_summary(scratch, "two")["second_round"] == two.second_round
    manifest, checkpoints = _round_two(scratch, "two")
    assert len(checkpoints) == 2 * 3 and all(c.startswith(PREFIX) for c in checkpoints)
    run_dir = get_run_config(scratch, "two").run_dir
    for relpath in checkpoints:  # each one listed with its sha256 and loadable as weights only
        torch.load(manifest.verified_path(run_dir, relpath), weights_only=True)
    loaded = fcsl.load_csl_results(scratch, "two")
    for sid, video in loaded.videos.items():
        np.testing.assert_allclose(video.scores["csl"], one.videos[sid].scores["csl"], rtol=1e-5)
        trajectory = video.trajectory
        assert trajectory.decode_probs is not None
        assert not np.allclose(trajectory.decode_probs, trajectory.mean_probs)
    two_wrong, one_wrong = (np.concatenate(scratch.values(f"frames.{k}_wrong_prob")) for k in ("two", "one"))
    assert not np.allclose(two_wrong, one_wrong)  # the decoder read the second round
    fcsl.delete_csl_run(scratch, "two")
    assert not os.path.exists(run_dir)


def test_a_planted_checkpoint_of_the_second_round_is_refused(scratch):
    fcsl.compute_csl(scratch, "phase", "k", rounds=2, **TINY)
    manifest, checkpoints = _round_two(scratch, "k")
    run_dir = get_run_config(scratch, "k").run_dir
    torch.save({"planted": torch.zeros(1)}, os.path.join(run_dir, checkpoints[0]))
    with pytest.raises(CSLError, match="sha256"):
        fcsl.replay_checkpoints(scratch, "k")


def test_a_refresh_decodes_the_changed_video_with_the_second_round(scratch):
    fcsl.compute_csl(scratch, "phase", "k", rounds=2, **TINY)
    sample = scratch.first()
    frame = sample.frames[2]
    classes = sorted(set(scratch.distinct("frames.phase.label")))
    frame["phase"].label = next(c for c in classes if c != frame["phase"].label)
    sample.save()
    _, before = _round_two(scratch, "k")
    refreshed = fcsl.refresh_scores(scratch, "k")
    assert list(refreshed.videos) == [sample.id]
    trajectory = fcsl.load_csl_results(scratch, "k").videos[sample.id].trajectory
    assert trajectory.decode_probs is not None
    assert not np.allclose(trajectory.decode_probs, trajectory.mean_probs)
    manifest, after = _round_two(scratch, "k")
    assert manifest.second_round["trained"] and after == before  # replayed, not trained again


def test_the_calls_that_train_one_round_refuse_a_second_before_any_work(scratch):
    from fiftyone.operators.delegated import DelegatedOperationService

    service = DelegatedOperationService()
    queued = len(service.list_operations(dataset_name=scratch.name))
    before = snapshot(scratch)
    with pytest.raises(CSLError, match="one round"):
        fcsl.compute_csl(scratch, "phase", "k", workers=2, rounds=2, **TINY)
    with pytest.raises(CSLError, match="train_checkpoints trains one round"):
        fcsl.train_checkpoints(scratch, "phase", "k", rounds=2, **TINY)
    for bad in (3, 0, True, "twice"):
        with pytest.raises(CSLError, match="rounds must be"):
            fcsl.compute_csl(scratch, "phase", "k", rounds=bad, **TINY)
    assert snapshot(scratch) == before
    assert len(service.list_operations(dataset_name=scratch.name)) == queued


def _killed_in_the_second_round(dataset) -> dict:
    """Runs ``compute_csl(rounds=2)`` of key ``k`` in a child killed once its
    second round saved epoch 2 of fold 0 (before the manifest listed it);
    returns the call's keyword arguments."""
    dataset.persistent = True  # the child opens it by name
    kwargs = dict(TINY, rounds=2)
    kwargs.pop("progress")
    code, out = run_child(dataset, "compute_csl", "second-round", dict(kwargs, label_field="phase", csl_field="k"))
    assert code == -signal.SIGKILL, out[-3000:]
    return kwargs


def test_a_run_killed_in_its_second_round_resumes_it(scratch, monkeypatch):
    from fiftyone_csl.plugin.core import train

    kwargs = _killed_in_the_second_round(scratch)
    assert "k" not in scratch.list_runs()  # nothing committed
    saved = []
    save = train._atomic_torch_save

    def counting_save(obj, path):
        saved.append(path)
        return save(obj, path)

    monkeypatch.setattr(train, "_atomic_torch_save", counting_save)
    fcsl.compute_csl(scratch, "phase", "k", **kwargs)
    monkeypatch.undo()
    # killed after epoch 2 of fold 0 was saved, before the manifest listed it: the first round and
    # epoch 1 of the second round's fold 0 are not trained again
    epochs = [p for p in saved if os.path.basename(p).startswith("epoch_")]
    assert epochs and all(PREFIX in p for p in epochs)
    assert len(epochs) == 2 * 3 - 1
    fresh = fcsl.compute_csl(scratch, "phase", "fresh", **kwargs)
    assert fresh.second_round["ran"]
    resumed_dir, fresh_dir = (get_run_config(scratch, k).run_dir for k in ("k", "fresh"))
    for a, b in zip(_round_two(scratch, "k")[1], _round_two(scratch, "fresh")[1]):
        sa = torch.load(os.path.join(resumed_dir, a), weights_only=True)
        sb = torch.load(os.path.join(fresh_dir, b), weights_only=True)
        for name in sa:
            assert torch.equal(sa[name], sb[name]), (a, name)


def test_a_second_round_on_sparse_labels_leaves_out_labelled_frames_only(scratch, monkeypatch):
    from fiftyone_csl.plugin.core import rounds
    from test_sparse import _sparsify

    _sparsify(scratch, 3)
    seen = []
    masked_sequence = rounds.masked_sequence

    def spy(sequence, video, mask):
        out = masked_sequence(sequence, video, mask)
        ignored = out.labels == rounds.IGNORE_INDEX
        seen.append((int(mask.sum()), int(ignored.sum()), bool((ignored & ~sequence.labelled).any())))
        return out

    monkeypatch.setattr(rounds, "masked_sequence", spy)
    results = fcsl.compute_csl(scratch, "sparse", "k", sparse_labels=True, rounds=2, **TINY)
    assert results.second_round["ran"] and results.second_round["masked_frames"] > 0
    assert len(seen) == len(scratch)
    assert all(masked == ignored and not outside for masked, ignored, outside in seen)
    assert sum(masked for masked, _, _ in seen) == results.second_round["masked_frames"]
    trajectory = fcsl.load_csl_results(scratch, "k").videos[scratch.first().id].trajectory
    assert trajectory.decode_probs is not None and len(trajectory.decode_probs) == len(trajectory.loss)


def test_a_symbolic_link_planted_in_a_killed_runs_training_folder_is_never_written_through(scratch, tmp_path):
    import glob
    import shutil

    from fiftyone_csl.plugin.runs.store import base_dir

    kwargs = _killed_in_the_second_round(scratch)
    [staging] = glob.glob(os.path.join(base_dir(), "runs", str(scratch._doc.id), "k", ".train-*"))
    elsewhere = tmp_path / "elsewhere"
    shutil.move(os.path.join(staging, "round_2"), elsewhere)
    os.symlink(elsewhere, os.path.join(staging, "round_2"))  # anyone who can write under the runs root
    before = sorted(p.name for p in elsewhere.rglob("*"))
    stamps = {p: p.stat().st_mtime_ns for p in elsewhere.rglob("*")}
    dataset_before = snapshot(scratch)
    with pytest.raises(CSLError, match="symbolic link"):
        fcsl.compute_csl(scratch, "phase", "k", **kwargs)
    assert sorted(p.name for p in elsewhere.rglob("*")) == before
    assert {p: p.stat().st_mtime_ns for p in elsewhere.rglob("*")} == stamps
    assert os.path.islink(os.path.join(staging, "round_2"))  # not removed either
    assert snapshot(scratch) == dataset_before

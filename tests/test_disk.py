"""Disk space: what a run needs is estimated and checked before any work,
and a disk that fills up half-way leaves the previous run as it was."""

import errno
import os
from collections import namedtuple

import fiftyone_csl as fcsl
import pytest
from _common import snapshot
from fiftyone_csl.plugin.audit import rescore, steps
from fiftyone_csl.plugin.audit.options import FeatureSpec
from fiftyone_csl.plugin.audit.prepare import prepare
from fiftyone_csl.plugin.core import stages
from fiftyone_csl.plugin.core.manifest import Manifest
from fiftyone_csl.plugin.core.train import TrainConfig
from fiftyone_csl.plugin.runs import store as fcstore
from fiftyone_csl.plugin.runs.record import get_run_config

TINY = dict(embeddings_field="emb", epochs=3, folds=2, seed=1)
Usage = namedtuple("Usage", "total used free")


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def test_the_estimate_bounds_what_a_run_writes(scratch):
    """The version folder of a finished run holds no more than the estimate
    checked before it started, and not less than a third of it (the estimate
    means something)."""
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    config = get_run_config(scratch, "k")
    manifest = Manifest.load(config.run_dir)
    prepared = prepare(scratch, "phase", manifest.classes, FeatureSpec.from_dict(manifest.features))
    need = stages.run_bytes(
        prepared.sequences, manifest.in_dim, len(manifest.classes), TrainConfig(**manifest.config), len(manifest.folds)
    )
    written = folder_bytes(config.run_dir)
    assert need["total"] / 3 <= written <= need["total"], (written, need)


@pytest.mark.parametrize("call", ["compute_csl", "replay_checkpoints"])
def test_too_little_space_is_refused_before_any_work_and_changes_nothing(scratch, monkeypatch, call):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    before, run_dir = snapshot(scratch), get_run_config(scratch, "k").run_dir
    monkeypatch.setattr(fcstore.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 10**6, 10**6))
    monkeypatch.setattr(steps, "train_into", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(rescore, "replay_and_score", lambda *a, **k: pytest.fail("replay started"))
    with pytest.raises(fcsl.CSLError, match=r"needs about .* free: short by") as e:
        if call == "compute_csl":
            fcsl.compute_csl(scratch, "phase", "k", overwrite=True, **TINY)
        else:
            fcsl.replay_checkpoints(scratch, "k")
    assert os.path.dirname(run_dir) in str(e.value)
    assert snapshot(scratch) == before and get_run_config(scratch, "k").run_dir == run_dir
    assert sorted(os.listdir(os.path.dirname(run_dir))) == [os.path.basename(run_dir)]


def test_a_disk_full_half_way_leaves_the_previous_run_loadable(scratch, monkeypatch):
    """The third trajectory of a replacing run meets a full disk: a clear
    error, no staging folder left, and the previous run still loads with the
    same scores."""
    first = fcsl.compute_csl(scratch, "phase", "k", **TINY)
    before, run_dir = snapshot(scratch), get_run_config(scratch, "k").run_dir
    real, calls = stages.atomic_save_npz, []

    def fill_up(path, **arrays):
        calls.append(path)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(path, **arrays)

    monkeypatch.setattr(stages, "atomic_save_npz", fill_up)
    with pytest.raises(fcsl.CSLError, match="filled up"):
        fcsl.compute_csl(scratch, "phase", "k", overwrite=True, **{**TINY, "seed": 2})
    monkeypatch.undo()
    assert len(calls) >= 3
    assert snapshot(scratch) == before and get_run_config(scratch, "k").run_dir == run_dir
    assert sorted(os.listdir(os.path.dirname(run_dir))) == [os.path.basename(run_dir)]
    again = fcsl.load_csl_results(scratch, "k")
    assert {s: v.scores["csl"].tolist() for s, v in again.videos.items()} == {
        s: v.scores["csl"].tolist() for s, v in first.videos.items()
    }

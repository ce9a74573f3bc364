"""Several processes writing one dataset: different keys at once all land
and the dataset stays readable; the same key twice at once gives one run
and one clear CSLError, never a silent loss."""

import glob
import os
import time

import fiftyone_csl as fcsl
import pytest
from test_faults import fields_match_files, run_child

TINY = dict(label_field="phase", embeddings_field="emb", epochs=3, folds=2, seed=1)


def _together(dataset, calls, tmp_path, trial, commit_together=False):
    """Runs the calls in child processes that start at once; with
    ``commit_together`` their commits also begin at the same moment."""
    barrier = str(tmp_path / f"go-{trial}")
    commit_barrier = str(tmp_path / f"commit-{trial}")
    if commit_together:
        os.environ["FCSL_COMMIT_BARRIER"] = commit_barrier
    try:
        procs = [run_child(dataset, call, "none", kwargs, barrier, wait=False) for call, kwargs in calls]
    finally:
        os.environ.pop("FCSL_COMMIT_BARRIER", None)
    open(barrier, "w").close()
    if commit_together:
        deadline = time.time() + 600
        while len(glob.glob(commit_barrier + ".*")) < len(procs) and time.time() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        open(commit_barrier, "w").close()
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    return [o.strip().splitlines()[-1] for o in outs]


@pytest.mark.parametrize("trial", range(3))
def test_processes_with_different_keys_committing_at_once_all_land(scratch, tmp_path, trial):
    scratch.persistent = True
    calls = [("compute_csl", dict(TINY, csl_field=f"{c}{trial}", peer_scores=["aum"])) for c in "abc"]
    assert _together(scratch, calls, tmp_path, trial, commit_together=True) == ["OK"] * 3
    scratch.reload()
    assert scratch.first() is not None
    for sample in scratch.iter_samples():  # every document readable against the schema
        assert sample.frames.first() is not None
    for key in (f"a{trial}", f"b{trial}", f"c{trial}"):
        assert scratch.count(f"frames.{key}") == scratch.count("frames.phase")
        fields_match_files(scratch, key)
        assert f"{key}-ranked" in scratch.list_saved_views()


@pytest.mark.parametrize("trial", range(2))
def test_the_same_key_twice_at_once_gives_one_run_and_one_clear_error(scratch, tmp_path, trial):
    scratch.persistent = True
    calls = [("compute_csl", dict(TINY, csl_field="same", epochs=12, overwrite=True))] * 2
    outs = _together(scratch, calls, tmp_path, trial)
    assert sorted(o.split(":")[0] for o in outs) == ["CSLError", "OK"], outs
    assert "is in progress in another process" in [o for o in outs if o != "OK"][0]
    fields_match_files(scratch, "same")
    views = [v for v in scratch.list_saved_views() if v.startswith("same-")]
    assert sorted(views) == ["same-ranked", "same-suspect-clips", "same-suspect-frames"]
    fcsl.delete_csl_run(scratch, "same")
    scratch.reload()
    assert not [v for v in scratch.list_saved_views() if v.startswith("same-")]
    assert "same" not in scratch.get_frame_field_schema()
    assert not os.path.exists(os.path.join(os.environ["FIFTYONE_CSL_DIR"], "runs", str(scratch._doc.id), "same"))

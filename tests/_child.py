"""A second process for the fault and concurrency tests.

    python _child.py <dataset> <call> <kill_at> <json kwargs> [<barrier file>]

``call`` is an SDK function (``compute_csl``, ``replay_checkpoints``, ``review_segment``, ...);
``kill_at`` names the point where the process SIGKILLs itself (``none``: run
to the end). The process prints ``OK`` on success or ``CSLError: ...``. With
a barrier file, it waits for the file to exist before the call, so two
children start together.
"""

import json
import os
import signal
import sys
import time


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _after(module, name, count=1):
    """Makes ``module.name`` kill the process after its ``count``-th call returns."""
    original = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= count:
            _die()
        return out

    setattr(module, name, wrapper)


def install(kill_at: str) -> None:
    from fiftyone_csl.plugin.audit import features, steps
    from fiftyone_csl.plugin.core import stages as pipeline
    from fiftyone_csl.plugin.core import train
    from fiftyone_csl.plugin.runs import fields, store, writeback

    if kill_at == "features":  # the backbone has featurised the first video
        _after(features, "video_features")
    elif kill_at == "training":  # two checkpoints exist
        _after(train, "_atomic_torch_save", 3)
    elif kill_at == "second-round":  # the second round saved epoch 1 of fold 0, its resume state and epoch 2
        save, calls = train._atomic_torch_save, {"n": 0}

        def second_round_save(obj, path):
            save(obj, path)
            calls["n"] += "round_2" in path
            if calls["n"] >= 3:
                _die()

        train._atomic_torch_save = second_round_save
    elif kill_at == "replay":  # the first video's trajectory is saved
        _after(pipeline, "save_trajectory")
    elif kill_at == "promote":  # the new version exists, no journal yet
        _after(store.RunStore, "promote")
    elif kill_at == "write-back":  # the journal exists; the first score field is half the story
        _after(fields, "write_frame_scores")
    elif kill_at == "flags":  # the journal of a re-flag exists; no flag written yet
        fields.write_sample_values = lambda *args, **kwargs: _die()
    elif kill_at == "cleanup":  # everything written but the old version not yet removed
        original = store.RunStore.cleanup

        def cleanup(self, keep=(), known=None):
            _die()
            return original(self, keep, known)

        store.RunStore.cleanup = cleanup
    elif kill_at == "adopt":  # a refresh's journal exists; the old trajectories moved in, the new ones not yet

        def adopt(current, version):
            os.rename(os.path.join(version, store.TRAJECTORIES), os.path.join(version, store.ARRIVING))
            os.rename(os.path.join(current, store.TRAJECTORIES), os.path.join(version, store.TRAJECTORIES))
            _die()

        writeback.adopt_trajectories = adopt
    elif kill_at == "decision":  # the decision's journal entry exists; no label changed yet
        writeback._apply_decision = lambda *args, **kwargs: _die()
    elif kill_at != "none":
        raise SystemExit(f"unknown kill point {kill_at}")
    del steps, writeback


def _hold(module, name, barrier):
    """Makes ``module.name`` wait, once called, until ``barrier`` exists
    (announcing itself with ``<barrier>.<pid>``)."""
    original = getattr(module, name)

    def held(*args, **kwargs):
        open(f"{barrier}.{os.getpid()}", "w").close()
        while not os.path.exists(barrier):
            time.sleep(0.005)
        return original(*args, **kwargs)

    setattr(module, name, held)


def hold_commits(barrier):
    """Makes every commit wait, once it is ready, until ``barrier`` exists,
    so two processes commit at the same moment."""
    if barrier:
        from fiftyone_csl.plugin.runs import writeback

        _hold(writeback, "commit", barrier)


def hold_decisions(barrier):
    """Makes a review decision wait, once it is about to write, until
    ``barrier`` exists."""
    if barrier:
        from fiftyone_csl.plugin.runs import writeback

        _hold(writeback, "_apply_decision", barrier)


def main():
    name, call, kill_at, kwargs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    barrier = sys.argv[5] if len(sys.argv) > 5 else None
    import fiftyone as fo
    import fiftyone_csl as fcsl

    install(kill_at)
    hold_commits(os.environ.get("FCSL_COMMIT_BARRIER"))
    hold_decisions(os.environ.get("FCSL_DECISION_BARRIER"))
    dataset = fo.load_dataset(name)
    if barrier:
        while not os.path.exists(barrier):
            time.sleep(0.01)
    try:
        getattr(fcsl, call)(dataset, **kwargs)
    except fcsl.CSLError as e:
        print(f"CSLError: {e}", flush=True)
        return
    print("OK", flush=True)


if __name__ == "__main__":
    main()

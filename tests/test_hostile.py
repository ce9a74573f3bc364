"""Hostile use of what came after the audit: review decisions, tags,
deletes, injection and temporary files never lose or touch what is not
theirs, and every refusal comes before the first write."""

import os

import fiftyone_csl as fcsl
import numpy as np
import pytest
from _common import broken_first_call, snapshot
from fiftyone import ViewField as F
from fiftyone_csl.plugin.audit.fanout import get_graph
from fiftyone_csl.plugin.review.segments import decision_order
from fiftyone_csl.plugin.runs import outputs
from fiftyone_csl.plugin.runs.record import get_run_config

TINY = dict(embeddings_field="emb", epochs=3, folds=2, seed=1, progress=False)


def _labels(dataset):
    dataset.reload()
    return dataset.values("frames.phase.label")


def _suggested(dataset, key="k"):
    rows = [r for r in fcsl.suspect_segments(dataset, key) if r["suggested_label"] not in (None, r["given_label"])]
    assert rows, "the audit needs a suspect with a suggestion"
    return rows[0]


def test_a_sparse_run_over_a_dense_one_on_fully_labelled_frames_commits(scratch):
    """Every frame labelled leaves no proposal: the fields are declared, not inferred."""
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    fcsl.compute_csl(scratch, "phase", "k", sparse_labels=True, overwrite=True, **TINY)
    assert fcsl.run_summary(scratch, "k")["labelled_fraction"]
    assert len(fcsl.load_csl_results(scratch, "k").videos) == len(scratch)
    assert scratch.count("frames.k_propagated") == 0  # nothing to propose: every frame carries a label


def test_a_commit_that_cannot_be_written_rolls_back_to_the_previous_run(scratch, monkeypatch):
    first = fcsl.compute_csl(scratch, "phase", "k", **TINY)
    before = scratch.values("frames.k")

    # after the new scores are written: the old ones must come back
    calls = broken_first_call(monkeypatch, outputs, "write_flags")
    with pytest.raises(fcsl.CSLError, match="the previous run is restored"):
        fcsl.compute_csl(scratch, "phase", "k", overwrite=True, **dict(TINY, seed=2))
    monkeypatch.undo()
    assert len(calls) == 2  # the restore wrote the previous run's flags
    assert get_run_config(scratch, "k").run_dir == first.run_dir
    assert len(fcsl.load_csl_results(scratch, "k").videos) == len(scratch)  # the key still works
    assert fcsl.run_summary(scratch, "k")
    scratch.reload()
    assert scratch.values("frames.k") == before
    fcsl.compute_csl(scratch, "phase", "k", overwrite=True, **TINY)  # and can be replaced


def test_decisions_keep_the_order_they_were_written_in_whatever_their_time_and_id():
    same_second = "2026-12-03T08:00:00+00:00"
    older = dict(seq=1, decided_at=same_second, decision_id="f" * 24)
    newer = dict(seq=2, decided_at=same_second, decision_id="0" * 24)
    legacy = dict(decided_at="2030-01-01T00:00:00+00:00", decision_id="1" * 24)
    assert sorted([newer, legacy, older], key=decision_order) == [legacy, older, newer]


def test_undo_refuses_a_decision_on_another_label_field(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    row = _suggested(scratch)
    fcsl.review_segment(scratch, "k", row["sample_id"], row["first_frame"], row["last_frame"], "accept")
    decided = _labels(scratch)
    scratch.clone_frame_field("phase", "phase2")
    fcsl.compute_csl(scratch, "phase2", "k", overwrite=True, **TINY)
    phase2 = scratch.values("frames.phase2.label")
    with pytest.raises(fcsl.CSLError, match="changed the label field 'phase'"):
        fcsl.undo_review(scratch, "k")
    assert scratch.values("frames.phase2.label") == phase2 and _labels(scratch) == decided


def test_a_stale_verdict_on_frames_that_are_no_longer_a_suspect_is_refused(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    row = fcsl.suspect_segments(scratch, "k")[0]
    first, last = row["first_frame"], row["last_frame"]
    before = snapshot(scratch)
    for action in ("keep", "accept"):
        with pytest.raises(fcsl.CSLError, match="no suspect segment"):
            fcsl.review_segment(scratch, "k", row["sample_id"], first + 1, last, action)
    assert snapshot(scratch) == before


def test_a_suspect_found_again_on_labels_a_decision_wrote_is_open_again(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    row = _suggested(scratch)
    fcsl.review_segment(scratch, "k", row["sample_id"], row["first_frame"], row["last_frame"], "accept")
    decided = {(r["sample_id"], r["first_frame"]): r["review"] for r in fcsl.suspect_segments(scratch, "k")}
    assert decided[(row["sample_id"], row["first_frame"])] == "accepted"
    # the same frames flagged again, now with the label the decision wrote as the given one
    sample = scratch[row["sample_id"]]
    now = [sample.frames[n]["phase"].label for n in range(1, len(sample.frames) + 1)]
    dets = sample["k_errors"].detections
    for d in dets:
        if [int(x) for x in d.support] == [row["first_frame"], row["last_frame"]]:
            d["given_label"] = row["suggested_label"]
            d["flagged_labels"] = now[row["first_frame"] - 1 : row["last_frame"]]
    sample.save()
    reopened = {(r["sample_id"], r["first_frame"]): r["review"] for r in fcsl.suspect_segments(scratch, "k")}
    assert reopened[(row["sample_id"], row["first_frame"])] is None
    assert fcsl.list_decisions(scratch, "k")  # its history stays


def test_a_decision_on_a_view_that_hides_frames_changes_only_the_frames_it_shows(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    row = _suggested(scratch)
    sid, first, last = row["sample_id"], row["first_frame"], row["last_frame"]
    middle = (first + last) // 2
    view = scratch.match_frames(F("frame_number") <= middle)
    numbers, labels = scratch.select(sid).values(["frames.frame_number", "frames.phase.label"])
    before = dict(zip(numbers[0], labels[0]))
    decision = fcsl.review_segment(view, "k", sid, first, last, "accept")
    assert decision["changed_frames"] and max(decision["changed_frames"]) <= middle
    numbers, labels = scratch.select(sid).values(["frames.frame_number", "frames.phase.label"])
    after = dict(zip(numbers[0], labels[0]))
    assert all(after[f] == before[f] for f in after if f > middle)
    fcsl.undo_review(scratch, "k")
    numbers, labels = scratch.select(sid).values(["frames.frame_number", "frames.phase.label"])
    assert dict(zip(numbers[0], labels[0])) == before


def test_the_review_queue_and_delete_remove_only_the_tags_the_run_put(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    mine = scratch.first()
    mine.tags.append("review")
    mine.save()
    label_id = next(f["phase"].id for f in mine.frames.values() if f["phase"] is not None)
    scratch.select_labels(ids=[label_id], fields="frames.phase").tag_labels("review", label_fields=["frames.phase"])
    tagged_before = scratch.count_label_tags("frames.phase").get("review", 0)
    picks = fcsl.select_frames_for_review(scratch, "k", budget=10, tag="review", passes=2, progress=False)
    assert picks and scratch.count_label_tags("frames.phase")["review"] > tagged_before
    fcsl.select_frames_for_review(scratch, "k", budget=5, tag="review", passes=2, progress=False)  # replaced
    fcsl.delete_csl_run(scratch, "k")
    scratch.reload()
    assert "review" in scratch.first().tags
    assert scratch.count_sample_tags().get("review") == 1
    assert scratch.count_label_tags("frames.phase").get("review") == 1
    assert scratch.select_labels(ids=[label_id], fields="frames.phase").count_label_tags()["review"] == 1


def test_a_symbolic_link_in_the_run_folder_is_never_followed_by_a_delete(scratch, tmp_path):
    result = fcsl.compute_csl(scratch, "phase", "k", run_dir=str(tmp_path / "runs"), **TINY)
    dataset_dir = os.path.dirname(os.path.dirname(result.run_dir))
    outside = tmp_path / "outside"
    os.rename(dataset_dir, outside)
    os.symlink(outside, dataset_dir)  # shared storage, or anyone who can write under the runs root
    (outside / "precious.txt").write_text("mine")
    with pytest.raises(fcsl.CSLError, match="symbolic link"):
        fcsl.delete_csl_run(scratch, "k")
    assert (outside / "precious.txt").read_text() == "mine"
    assert os.path.isdir(outside / "k")
    assert len(fcsl.load_csl_results(scratch, "k").videos) == len(scratch)  # nothing was deleted first
    os.unlink(dataset_dir)
    os.rename(outside, dataset_dir)
    fcsl.delete_csl_run(scratch, "k")
    assert (tmp_path / "runs" / os.path.basename(dataset_dir) / "precious.txt").read_text() == "mine"


def test_a_foreign_folder_in_the_run_folder_survives_a_delete(scratch, tmp_path):
    result = fcsl.compute_csl(scratch, "phase", "k", run_dir=str(tmp_path / "runs"), **TINY)
    key_dir = os.path.dirname(result.run_dir)
    foreign = os.path.join(key_dir, "v-not-a-run")
    os.makedirs(foreign)
    with open(os.path.join(foreign, "data.bin"), "w") as f:
        f.write("someone else's")
    fcsl.delete_csl_run(scratch, "k")
    assert os.path.isfile(os.path.join(foreign, "data.bin")) and not os.path.exists(result.run_dir)


def test_overwrite_under_another_run_dir_leaves_no_orphaned_version(scratch, tmp_path):
    old = fcsl.compute_csl(scratch, "phase", "k", run_dir=str(tmp_path / "a"), **TINY)
    new = fcsl.compute_csl(scratch, "phase", "k", run_dir=str(tmp_path / "b"), overwrite=True, **TINY)
    assert os.path.isdir(new.run_dir) and not os.path.exists(old.run_dir)
    assert not os.path.exists(os.path.dirname(os.path.dirname(old.run_dir)))  # the emptied dataset folder too


@pytest.mark.parametrize("into", ["k", "emb", "k_max"])
def test_injection_never_writes_into_a_run_or_a_field_it_did_not_make(scratch, into):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)

    def state():
        vectors = [np.asarray(v).tobytes() for video in scratch.values("frames.emb") for v in video]
        return snapshot(scratch), scratch.values("frames.k"), vectors

    before = state()
    with pytest.raises(fcsl.CSLError):
        fcsl.inject_errors(scratch, "phase", into, overwrite=True)
    assert state() == before


def test_injection_refuses_a_clips_view(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    clips = scratch.to_clips("k_errors")
    with pytest.raises(fcsl.CSLError, match="clips, frames or patches view"):
        fcsl.inject_errors(clips, "phase", "bad")


def test_export_never_writes_through_a_planted_link(scratch, tmp_path):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    target = tmp_path / "victim.txt"
    target.write_text("keep")
    path = tmp_path / "suspects.csv"
    for name in (f"suspects.csv.tmp-{os.getpid()}", f".suspects.csv.tmp-{os.getpid()}"):
        os.symlink(target, tmp_path / name)
    assert fcsl.export_suspects(scratch, str(path), "k") > 0
    assert target.read_text() == "keep" and path.read_text().startswith("sample_id")
    os.symlink(target, tmp_path / "link.csv")
    with pytest.raises(fcsl.CSLError, match="symbolic link"):
        fcsl.export_suspects(scratch, str(tmp_path / "link.csv"), "k")
    assert target.read_text() == "keep"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: fcsl.compute_csl(d, "phase", "k", run_dir="/tmp/a\x00b", **TINY), "run_dir must be a folder"),
        (lambda d: fcsl.select_frames_for_review(d, "k", budget=True), "budget must be a number"),
    ],
)
def test_rough_edges_give_clear_errors_and_change_nothing(scratch, call, message):
    if "budget" in message:
        fcsl.compute_csl(scratch, "phase", "k", **TINY)
    before = snapshot(scratch)
    with pytest.raises(fcsl.CSLError, match=message):
        call(scratch)
    assert snapshot(scratch) == before


def test_errors_on_a_clips_view_name_the_users_dataset(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    clips = scratch.to_clips(F("phase").exists())
    with pytest.raises(fcsl.CSLError, match=f"no CSL run 'nope' on dataset '{scratch.name}' \\(through a clips view"):
        fcsl.load_csl_results(clips, "nope")


def test_a_sparse_label_on_a_frame_without_an_embedding_is_named(scratch):
    dataset = scratch.clone()
    for sample in dataset:
        for frame in sample.frames.values():
            frame["sparse"] = frame["phase"]
        sample.save()
    sample = dataset.first()
    sample.frames[3]["sparse"] = None
    sample.frames[2]["emb"] = None
    sample.save()
    before = snapshot(dataset)
    with pytest.raises(fcsl.CSLError, match=r"frame\(s\) \[2\] of sample .* carry a label but no 'emb' embedding"):
        fcsl.compute_csl(dataset, "sparse", "k", sparse_labels=True, **TINY)
    assert snapshot(dataset) == before


def test_a_damaged_feature_cache_file_is_computed_again(tmp_path):
    from fiftyone_csl.plugin.audit import features as fcf

    path = str(tmp_path / "x.npz")
    numbers, values = np.arange(1, 6), np.ones((5, 3), np.float32)
    fcf.atomic_save_npz(path, frame_numbers=numbers, features=values, sha256=fcf._digest(numbers, values))
    assert fcf._read_cache(path)[1].shape == (5, 3)
    with open(path, "r+b") as f:  # zeroed
        f.write(b"\0" * os.path.getsize(path))
    assert fcf._read_cache(path) is None
    fcf.atomic_save_npz(path, frame_numbers=numbers, features=values * 0, sha256=fcf._digest(numbers, values))
    assert fcf._read_cache(path) is None  # contents that do not match their checksum


def test_a_graph_whose_dataset_was_deleted_fails_and_leaves_no_folder(scratch, tmp_path):
    dataset = scratch.clone()
    graph = fcsl.queue_audit(dataset, "phase", "k", workers=2, run_dir=str(tmp_path / "runs"), **TINY)
    folder = get_graph(graph["graph_id"])["folder"]
    assert os.path.isdir(folder)
    dataset.delete()
    state = fcsl.audit_graph(graph["graph_id"])
    assert state["state"] == "failed" and "was deleted" in state["error"]
    assert not os.path.exists(folder)

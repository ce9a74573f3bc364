"""Review decisions on suspect segments: accept, keep, relabel, mark
reviewed; every label change undoable; state counted, exported and skipped
by the review queue; a killed decision finished by the next call; two
processes deciding at once lose nothing."""

import json
import os
import subprocess
import sys
import time

import fiftyone_csl as fcsl
import pytest
from _common import snapshot
from fiftyone_csl.plugin.runs.record import get_run_config, operator_uri

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture()
def reviewable(audited):
    """A clone of the audited demo with its own copy of run 'csl'."""
    dataset = audited[0].clone()
    fcsl.copy_csl_run(dataset, "csl")
    yield dataset
    fcsl.delete_csl_run(dataset, "csl")
    dataset.delete()


def labels_of(dataset):
    dataset.reload()
    return dict(zip(*dataset.values(["id", "frames.phase.label"])))


def frames_of(dataset, sid):
    ids, numbers = dataset.values(["id", "frames.frame_number"])
    return dict(zip(ids, numbers))[sid]


def with_suggestion(dataset):
    rows = [r for r in fcsl.suspect_segments(dataset, "csl") if r["suggested_label"] not in (None, r["given_label"])]
    assert len(rows) >= 2, "the audited demo needs two suspect segments with a suggestion"
    return rows


def test_accept_writes_the_suggestion_on_the_segment_only_and_undo_restores_it(reviewable):
    before = labels_of(reviewable)
    row = with_suggestion(reviewable)[0]
    sid, first, last = row["sample_id"], row["first_frame"], row["last_frame"]
    decision = fcsl.review_segment(reviewable, "csl", sid, first, last, "accept")
    assert decision["decision"] == "accepted" and decision["new_label"] == row["suggested_label"]
    after = labels_of(reviewable)
    numbers = frames_of(reviewable, sid)
    for n, old, new in zip(numbers, before[sid], after[sid]):
        inside = first <= n <= last and old is not None
        assert new == (row["suggested_label"] if inside else old), n
    assert all(after[s] == before[s] for s in before if s != sid)
    assert decision["changed_frames"] == [
        n for n, old in zip(numbers, before[sid]) if first <= n <= last and old not in (None, row["suggested_label"])
    ]
    states = dict(zip(numbers, reviewable.select(sid).values("frames.csl_decision")[0]))
    assert {n for n, s in states.items() if s == "accepted"} == set(range(first, last + 1)) & set(numbers)
    assert [d["decision_id"] for d in fcsl.list_decisions(reviewable, "csl")] == [decision["decision_id"]]
    remaining = fcsl.suspect_segments(reviewable, "csl", include_reviewed=False)
    assert row["segment_id"] not in {r["segment_id"] for r in remaining}
    review = fcsl.run_summary(reviewable, "csl")["review"]
    assert (review["reviewed"], review["confirmed_errors"], review["false_alarms"]) == (1, 1, 0)
    assert fcsl.changed_videos(reviewable, "csl") == [sid]

    undone = fcsl.undo_review(reviewable, "csl")
    assert undone["decision_id"] == decision["decision_id"]
    assert labels_of(reviewable) == before
    assert fcsl.list_decisions(reviewable, "csl") == []
    assert set(reviewable.select(sid).values("frames.csl_decision")[0]) == {None}
    assert fcsl.changed_videos(reviewable, "csl") == []
    with pytest.raises(fcsl.CSLError, match="no review decision to undo"):
        fcsl.undo_review(reviewable, "csl")


def test_keep_relabel_and_reviewed_are_counted_and_exported(reviewable, tmp_path):
    before = labels_of(reviewable)
    rows = fcsl.suspect_segments(reviewable, "csl")
    assert len(rows) >= 3
    classes = fcsl.load_csl_results(reviewable.limit(1), "csl").classes
    keep, relabel, look = rows[0], rows[1], rows[2]
    fcsl.review_segment(reviewable, "csl", keep["sample_id"], keep["first_frame"], keep["last_frame"], "keep")
    assert labels_of(reviewable) == before  # a false alarm changes no label
    other = next(c for c in classes if c != relabel["given_label"])
    fcsl.review_segment(
        reviewable, "csl", relabel["sample_id"], relabel["first_frame"], relabel["last_frame"], "relabel", other
    )
    fcsl.review_segment(reviewable, "csl", look["sample_id"], look["first_frame"], look["last_frame"], "reviewed")
    after = labels_of(reviewable)
    numbers = frames_of(reviewable, relabel["sample_id"])
    assert [lab for n, lab in zip(numbers, after[relabel["sample_id"]])
            if relabel["first_frame"] <= n <= relabel["last_frame"] and lab is not None] != []  # fmt: skip
    assert all(
        lab == other for n, lab in zip(numbers, after[relabel["sample_id"]])
        if relabel["first_frame"] <= n <= relabel["last_frame"] and lab is not None
    )  # fmt: skip
    review = fcsl.run_summary(reviewable, "csl")["review"]
    assert review["reviewed"] == 3 and review["kept"] == 1 and review["relabelled"] == 1
    assert review["confirmed_errors"] == 1 and review["false_alarms"] == 1 and review["precision_of_decided"] == 0.5
    assert review["remaining"] == len(rows) - 3
    path = str(tmp_path / "suspects.json")
    fcsl.export_suspects(reviewable, path)
    with open(path) as f:
        states = {r["segment_id"]: r["review"] for r in json.load(f)}
    assert states[keep["segment_id"]] == "kept" and states[relabel["segment_id"]] == "relabelled"
    assert states[look["segment_id"]] == "reviewed"
    assert sum(s is None for s in states.values()) == len(rows) - 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(action="approve"), "action must be one of"),
        (dict(action="relabel", label="no-such-class"), "among the run's classes"),
        (dict(action="keep", label="x"), "only for action 'relabel'"),
        (dict(action="accept", first=1, last=2), "no suspect segment at frames 1-2"),
        (dict(action="keep", first=5, last=3), "first <= last"),
        (dict(action="keep", sample_id="0" * 24), "no video with id"),
    ],
)
def test_bad_decisions_change_nothing(reviewable, kwargs, message):
    row = fcsl.suspect_segments(reviewable, "csl")[0]
    call = dict(sample_id=row["sample_id"], first=row["first_frame"], last=row["last_frame"])
    call.update(kwargs)
    before = snapshot(reviewable)
    with pytest.raises(fcsl.CSLError, match=message):
        fcsl.review_segment(reviewable, "csl", **call)
    assert snapshot(reviewable) == before
    assert not reviewable.has_field("csl_decisions")


def test_undo_refuses_what_would_lose_a_later_change(reviewable):
    row = with_suggestion(reviewable)[0]
    sid, first, last = row["sample_id"], row["first_frame"], row["last_frame"]
    accepted = fcsl.review_segment(reviewable, "csl", sid, first, last, "accept")
    classes = fcsl.load_csl_results(reviewable.limit(1), "csl").classes
    other = next(c for c in classes if c not in (row["suggested_label"], row["given_label"]))
    fcsl.review_segment(reviewable, "csl", sid, first, first, "relabel", other)
    state = labels_of(reviewable)
    with pytest.raises(fcsl.CSLError, match="newer decision"):
        fcsl.undo_review(reviewable, "csl", accepted["decision_id"])
    assert labels_of(reviewable) == state
    fcsl.undo_review(reviewable, "csl")  # the newest first, then the older one
    # a label changed by hand since the decision: undo refuses rather than overwrite it
    sample = reviewable[sid]
    frame = sample.frames[accepted["changed_frames"][0]]
    frame["phase"].label = other
    sample.save()
    state = labels_of(reviewable)
    with pytest.raises(fcsl.CSLError, match="changed since"):
        fcsl.undo_review(reviewable, "csl")
    assert labels_of(reviewable) == state


def test_decisions_survive_a_refresh_and_the_queue_skips_decided_frames(reviewable):
    queue_picks = fcsl.select_frames_for_review(reviewable, "csl", budget=10, mode="csl")
    queue = reviewable.load_saved_view("csl-review-queue")
    queued_before = queue.count("frames")
    row = with_suggestion(reviewable)[0]
    sid, first, last = row["sample_id"], row["first_frame"], row["last_frame"]
    in_segment = [n for s, n in queue_picks if s == sid and first <= n <= last]
    csl_before = dict(zip(frames_of(reviewable, sid), reviewable.select(sid).values("frames.csl")[0]))
    decision = fcsl.review_segment(reviewable, "csl", sid, first, last, "accept")
    assert reviewable.load_saved_view("csl-review-queue").count("frames") == queued_before - len(in_segment)
    ordered = fcsl.suspect_segments(reviewable, "csl", order="queue")
    ranks = [r["queue_rank"] for r in ordered if r["queue_rank"] is not None]
    assert ranks == sorted(ranks)

    fcsl.refresh_scores(reviewable, "csl")
    assert [d["decision_id"] for d in fcsl.list_decisions(reviewable, "csl")] == [decision["decision_id"]]
    csl_after = dict(zip(frames_of(reviewable, sid), reviewable.select(sid).values("frames.csl")[0]))
    fixed = decision["changed_frames"]
    assert sum(csl_after[n] for n in fixed) < sum(csl_before[n] for n in fixed)
    assert reviewable.has_frame_field("csl_decision")


def test_the_kept_suspect_list_follows_decisions_undo_refresh_and_new_flags_as_a_fresh_read(reviewable, monkeypatch):
    """The App's panel keeps the run's suspect list between clicks and reads
    again only the videos saved since: after each decision, undo, refresh
    and re-flag (made through the SDK, as another reviewer would) it equals
    a fresh read, and a decision re-reads one video, not the dataset."""
    from fiftyone_csl.plugin.review import segments

    def same():
        for order in ("queue", "csl"):
            kept = segments.kept_suspect_segments(reviewable, "csl", order=order)
            assert kept == fcsl.suspect_segments(reviewable, "csl", order=order), order
        return kept  # in the order of CSL

    def decide(row, action):
        fcsl.review_segment(reviewable, "csl", row["sample_id"], row["first_frame"], row["last_frame"], action)

    fcsl.select_frames_for_review(reviewable, "csl", budget=10, mode="csl")
    same()
    rows = with_suggestion(reviewable)
    read, real = [], segments.suspect_table

    def counted(samples, *args, **kwargs):
        read.append(len(samples))
        return real(samples, *args, **kwargs)

    segments.kept_suspect_segments(reviewable, "csl")
    monkeypatch.setattr(segments, "suspect_table", counted)
    decide(rows[0], "accept")
    kept = segments.kept_suspect_segments(reviewable, "csl")
    assert read == [1]  # the decided video only
    assert next(r for r in kept if r["segment_id"] == rows[0]["segment_id"])["review"] == "accepted"
    monkeypatch.setattr(segments, "suspect_table", real)
    same()
    decide(rows[1], "keep")
    same()
    fcsl.undo_review(reviewable, "csl")  # the keep goes: its video is saved, its suspect open again
    assert next(r for r in same() if r["segment_id"] == rows[1]["segment_id"])["review"] is None
    fcsl.refresh_scores(reviewable, "csl")  # a new version: read whole
    same()
    fcsl.flag_errors(reviewable, "csl", threshold=2.0)  # new flags, same version
    same()
    gone = next(r["sample_id"] for r in same())
    reviewable.delete_samples([gone])  # no save marks a deleted video
    assert gone not in {r["sample_id"] for r in same()}


def _child(dataset, kill_at, kwargs, env=None):
    args = [
        sys.executable,
        os.path.join(HERE, "_child.py"),
        dataset.name,
        "review_segment",
        kill_at,
        json.dumps(kwargs),
    ]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.mark.slow
def test_a_decision_killed_after_its_journal_is_finished_by_the_next_call(reviewable):
    before = labels_of(reviewable)
    row = with_suggestion(reviewable)[0]
    kwargs = dict(csl_field="csl", sample_id=row["sample_id"], first=row["first_frame"], last=row["last_frame"],
                  action="accept")  # fmt: skip
    proc = _child(reviewable, "decision", kwargs)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == -9, out
    assert labels_of(reviewable) == before  # killed before the first label changed
    decisions = fcsl.list_decisions(reviewable, "csl")  # the next reader finishes it
    assert [d["decision"] for d in decisions] == ["accepted"]
    after = labels_of(reviewable)[row["sample_id"]]
    numbers = frames_of(reviewable, row["sample_id"])
    assert {n for n, a, b in zip(numbers, before[row["sample_id"]], after) if a != b} == set(
        decisions[0]["changed_frames"]
    )
    fcsl.undo_review(reviewable, "csl")
    assert labels_of(reviewable) == before


@pytest.mark.slow
def test_two_processes_deciding_at_once_write_one_at_a_time_and_lose_nothing(reviewable, tmp_path):
    rows = fcsl.suspect_segments(reviewable, "csl")
    per_video = {}
    for r in rows:
        per_video.setdefault(r["sample_id"], []).append(r)
    pair = max(per_video.values(), key=len)[:2] if max(map(len, per_video.values())) >= 2 else rows[:2]
    barrier = str(tmp_path / "go")
    env = dict(os.environ, FCSL_DECISION_BARRIER=barrier)
    procs = [
        _child(reviewable, "none", dict(csl_field="csl", sample_id=r["sample_id"], first=r["first_frame"],
                                         last=r["last_frame"], action="keep"), env)
        for r in pair
    ]  # fmt: skip
    ready = lambda: [n for n in os.listdir(tmp_path) if n.startswith("go.")]  # noqa: E731
    deadline = time.monotonic() + 300
    while not ready() and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    time.sleep(3)  # the other process has reached the lock by now (it is not a timing assertion: see below)
    assert len(ready()) == 1, "both processes were writing at once"
    open(barrier, "w").close()
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(o.strip().endswith("OK") for o in outs), outs
    assert len(ready()) == 2
    got = {(d["sample_id"], d["first"], d["last"]) for d in fcsl.list_decisions(reviewable, "csl")}
    assert got == {(r["sample_id"], r["first_frame"], r["last_frame"]) for r in pair}


def test_review_operators_decide_one_segment_or_all_and_undo(reviewable):
    import fiftyone.operators as foo

    uri = operator_uri("")
    before = labels_of(reviewable)
    row = with_suggestion(reviewable)[0]
    review, undo = foo.get_operator(uri + "review_segment"), foo.get_operator(uri + "undo_review")
    one = review(reviewable, "csl", "accept", segment=(row["sample_id"], row["first_frame"], row["last_frame"]))
    assert one.error is None, one.error_message
    assert one.result["decisions"] == 1 and one.result["labels_changed"] > 0
    rest = review(reviewable, "csl", "keep")
    assert rest.error is None, rest.error_message
    assert rest.result["decisions"] == len(fcsl.suspect_segments(reviewable, "csl")) - 1
    assert fcsl.suspect_segments(reviewable, "csl", include_reviewed=False) == []
    while fcsl.list_decisions(reviewable, "csl"):
        out = undo(reviewable, "csl")
        assert out.error is None, out.error_message
    assert labels_of(reviewable) == before


@pytest.mark.slow
def test_two_processes_deciding_one_segment_at_once_leave_an_undoable_history(reviewable, tmp_path):
    before = labels_of(reviewable)
    row = with_suggestion(reviewable)[0]
    classes = get_run_config(reviewable, "csl").classes
    other = next(c for c in classes if c not in (row["given_label"], row["suggested_label"]))
    segment = dict(csl_field="csl", sample_id=row["sample_id"], first=row["first_frame"], last=row["last_frame"])
    barrier = str(tmp_path / "go")
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_child.py"), reviewable.name, "review_segment", "none",
             json.dumps(dict(segment, **extra)), barrier],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for extra in (dict(action="accept"), dict(action="relabel", label=other))
    ]  # fmt: skip
    time.sleep(2)  # both children are importing; the barrier starts them together
    open(barrier, "w").close()
    outs = [p.communicate(timeout=600)[0].strip() for p in procs]
    assert all(o.endswith("OK") or "CSLError" in o for o in outs), outs
    decisions = fcsl.list_decisions(reviewable, "csl")
    assert len(decisions) == sum(o.endswith("OK") for o in outs) >= 1
    while fcsl.list_decisions(reviewable, "csl"):  # newest first, each one undoable
        fcsl.undo_review(reviewable, "csl")
    assert labels_of(reviewable) == before


def test_the_review_operators_with_nothing_to_do_say_so_instead_of_failing(reviewable):
    import fiftyone.operators as foo

    uri = operator_uri("")
    review, undo = foo.get_operator(uri + "review_segment"), foo.get_operator(uri + "undo_review")
    before = labels_of(reviewable)
    out = undo(reviewable, "csl")
    assert out.error is None, out.error_message
    assert out.result["labels_restored"] == 0 and out.result["undone"].startswith("nothing")
    assert review(reviewable, "csl", "keep").error is None  # every suspect decided: none is left
    kept = fcsl.list_decisions(reviewable, "csl")
    out = common_execute_one_without_segment(review, reviewable)
    assert out.error is None, out.error_message
    assert out.result["decisions"] == 0 and "No undecided" in out.result["message"]
    assert labels_of(reviewable) == before and fcsl.list_decisions(reviewable, "csl") == kept


def common_execute_one_without_segment(review, dataset):
    from fiftyone_csl.operators import common

    return common.execute_twin(review, dataset, dict(csl_field="csl", action="keep", scope="one"))


def test_a_suspect_found_again_on_labels_a_decision_wrote_is_open_again(reviewable):
    """Relabel a suspect with a class its frames are not (a fix that leaves
    them wrong); refresh: what is flagged there now was found on the labels
    the decision wrote, so it is undecided and counts as remaining, and the
    decision stays in the history. A kept false alarm elsewhere stays kept."""
    config = get_run_config(reviewable, "csl")
    rows = with_suggestion(reviewable)
    row, other = rows[0], next(r for r in rows[1:] if r["sample_id"] != rows[0]["sample_id"])
    sid, first, last = row["sample_id"], row["first_frame"], row["last_frame"]
    wrong = next(c for c in config.classes if c not in (row["given_label"], row["suggested_label"]))
    relabelled = fcsl.review_segment(reviewable, "csl", sid, first, last, "relabel", wrong)
    kept = fcsl.review_segment(reviewable, "csl", other["sample_id"], other["first_frame"], other["last_frame"], "keep")
    decided = {(r["sample_id"], r["first_frame"]): r["review"] for r in fcsl.suspect_segments(reviewable, "csl")}
    assert decided[(sid, first)] == "relabelled" and decided[(other["sample_id"], other["first_frame"])] == "kept"

    fcsl.refresh_scores(reviewable, "csl")
    rows_now = fcsl.suspect_segments(reviewable, "csl")
    again = [r for r in rows_now if r["sample_id"] == sid and r["first_frame"] <= last and first <= r["last_frame"]]
    assert again, "the relabelled frames are still wrong: the refresh must flag them"
    assert all(r["review"] is None for r in again if r["given_label"] == wrong)
    assert any(r["given_label"] == wrong for r in again)
    same = [r for r in rows_now if (r["sample_id"], r["first_frame"], r["last_frame"])
            == (other["sample_id"], other["first_frame"], other["last_frame"])]  # fmt: skip
    assert same and same[0]["review"] == "kept"
    summary = fcsl.run_summary(reviewable, "csl")["review"]
    assert summary["remaining"] == sum(r["review"] is None for r in rows_now) >= 1
    assert [d["decision_id"] for d in fcsl.list_decisions(reviewable, "csl")] == [
        relabelled["decision_id"], kept["decision_id"],
    ]  # fmt: skip
    # the reopened suspect can be decided again
    reopened = next(r for r in again if r["review"] is None)
    fcsl.review_segment(reviewable, "csl", sid, reopened["first_frame"], reopened["last_frame"], "keep")
    assert next(
        r for r in fcsl.suspect_segments(reviewable, "csl")
        if (r["sample_id"], r["first_frame"]) == (sid, reopened["first_frame"])
    )["review"] == "kept"  # fmt: skip


def test_a_decision_answers_only_suspects_flagged_on_the_labels_it_saw():
    """Frame by frame: a suspect inside a decision's frames is answered when
    it was flagged on the labels the decision judged, not on labels it wrote,
    even when the majority label reads the same."""
    from fiftyone_csl.plugin.review.segments import judged

    decision = dict(first=10, last=15, given_label="a", previous_labels=["a", "a", "a", "a", "b", "b"])
    row = dict(first_frame=13, last_frame=15, given_label="a")
    assert judged(decision, {**row, "flagged_labels": ["a", "b", "b"]})  # the same labels: answered
    assert judged(decision, {**row, "flagged_labels": ["a", None, "b"]})  # a frame not scored says nothing
    assert not judged(decision, {**row, "flagged_labels": ["a", "a", "a"]})  # flagged on what it wrote
    assert not judged(decision, {**row, "first_frame": 9, "flagged_labels": ["a"] * 7})  # frames it did not judge
    assert judged(decision, row) and not judged(decision, {**row, "given_label": "b"})  # older runs: the label


def test_the_same_decision_twice_is_recorded_once_and_one_undo_restores_the_labels(reviewable):
    """A double click (or the same event delivered twice): the second
    relabel writes nothing and records nothing, so one undo is enough."""
    before = labels_of(reviewable)
    row = with_suggestion(reviewable)[0]
    sid, first, last = row["sample_id"], row["first_frame"], row["last_frame"]
    label = row["suggested_label"]
    one = fcsl.review_segment(reviewable, "csl", sid, first, last, "relabel", label)
    two = fcsl.review_segment(reviewable, "csl", sid, first, last, "relabel", label)
    assert two["repeated"] and two["decision_id"] == one["decision_id"] and not one.get("repeated")
    assert len(fcsl.list_decisions(reviewable, "csl")) == 1
    other = next(c for c in get_run_config(reviewable, "csl").classes if c != label)
    three = fcsl.review_segment(reviewable, "csl", sid, first, last, "relabel", other)  # a new decision
    assert not three.get("repeated") and len(fcsl.list_decisions(reviewable, "csl")) == 2
    fcsl.undo_review(reviewable, "csl")
    fcsl.undo_review(reviewable, "csl")
    assert labels_of(reviewable) == before and fcsl.list_decisions(reviewable, "csl") == []


def test_a_decision_on_a_video_held_in_memory_keeps_what_another_process_wrote(reviewable):
    """FiftyOne hands out the sample object already in memory, as it was
    loaded: the decision must start from the database, not from it."""
    from bson import ObjectId

    row = with_suggestion(reviewable)[0]
    sid, first, last = row["sample_id"], row["first_frame"], row["last_frame"]
    held = reviewable[sid]
    assert held.frames[first]["phase"] is not None  # its frames in memory too
    reviewable._frame_collection.update_one(  # another process, meanwhile
        {"_sample_id": ObjectId(sid), "frame_number": first}, {"$set": {"phase.confidence": 0.25}}
    )
    decision = fcsl.review_segment(reviewable, "csl", sid, first, last, "accept")
    assert first in decision["changed_frames"]
    doc = reviewable._frame_collection.find_one({"_sample_id": ObjectId(sid), "frame_number": first})
    assert doc["phase"]["label"] == row["suggested_label"] and doc["phase"]["confidence"] == 0.25

"""A stateful property test: random sequences of what users do with runs
(audit, re-flag, decisions of every kind, undo, refresh, injection, the
review queue, copy, delete), checking after every step that

- the label field changes only through a decision, and each undo restores
  exactly what that decision replaced;
- the fields, tags, saved views and files the user made are untouched;
- every run loads (or is cleanly gone);
- nothing outside the run folders changes on disk.

Hypothesis drives it (``RuleBasedStateMachine``); a failure it finds is
kept below as a regression test with its steps.
"""

import collections
import hashlib
import os

import fiftyone_csl as fcsl
from fiftyone_csl.plugin.core.errors import CSLError
from fiftyone_csl.plugin.runs.store import base_dir
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

TRAIN = dict(embeddings_field="emb", epochs=3, folds=2, seed=5)
KEYS = ("s", "t")
USER_TAG = "mine"


def _labels(dataset) -> dict:
    dataset.reload()
    ids, numbers, labels = dataset.values(["id", "frames.frame_number", "frames.phase.label"])
    return {(sid, int(f)): lab for sid, fs, ls in zip(ids, numbers, labels) for f, lab in zip(fs or [], ls or [])}


def _files_outside_runs(root: str) -> dict:
    """sha256 of every file under ``root`` but the run folders and the feature cache."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel.split(os.sep)[0] in ("runs", "features"):
            dirnames[:] = []
            continue
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


class RunsInUse(RuleBasedStateMachine):
    """One dataset, two run keys, a user who also has fields, tags and views."""

    base = None  # the audited dataset the examples clone, set by the test
    ran = collections.Counter()  # rules that did their work, over every example

    @initialize()
    def start(self):
        self.dataset = self.base.clone()
        for key in fcsl.list_csl_runs(self.dataset):
            self.dataset.delete_run(key)
        for name in self.dataset.list_saved_views():
            self.dataset.delete_saved_view(name)
        first = self.dataset.first()
        first.tags.append(USER_TAG)
        first["user_note"] = "keep me"
        first.save()
        self.dataset.save_view("my-view", self.dataset.limit(2))
        self.sentinel = os.path.join(base_dir(), "user-files")
        os.makedirs(self.sentinel, exist_ok=True)
        with open(os.path.join(self.sentinel, "notes.txt"), "w") as f:
            f.write("mine")
        self.outside = _files_outside_runs(base_dir())
        self.expected = _labels(self.dataset)
        self.decisions = []  # (key, decision_id, {(sid, frame): label it replaced})
        self.scored = set()
        self.audits = 0
        self.audit("s", False)  # every sequence starts from an audited run

    def teardown(self):
        if getattr(self, "dataset", None) is None:
            return
        for key in fcsl.list_csl_runs(self.dataset):
            fcsl.delete_csl_run(self.dataset, key)
        self.dataset.delete()

    # --- what users do -------------------------------------------------------------------

    @precondition(lambda self: self.audits < 3)  # the costly step: a few per sequence
    @rule(key=st.sampled_from(KEYS), overwrite=st.booleans())
    def audit(self, key, overwrite):
        self.ran["audit"] += 1
        self.audits += 1
        try:
            fcsl.compute_csl(self.dataset, "phase", key, overwrite=overwrite, progress=False, **TRAIN)
        except CSLError as e:  # an existing run without overwrite, or a name an injection took
            assert (key in self.scored and not overwrite) or "no run of this key created" in str(e), e
            return
        self.scored.add(key)
        # a new audit of a key keeps the decisions it had (the labels stay as decided)

    @precondition(lambda self: self.scored)
    @rule(data=st.data(), threshold=st.sampled_from(["auto", 0.5, 1.5]))
    def reflag(self, data, threshold):
        self.ran["reflag"] += 1
        key = data.draw(st.sampled_from(sorted(self.scored)))
        fcsl.flag_errors(self.dataset, key, threshold=threshold)

    @precondition(lambda self: self.scored)
    @rule(data=st.data(), action=st.sampled_from(["accept", "keep", "relabel", "reviewed"]))
    def decide(self, data, action):
        key = data.draw(st.sampled_from(sorted(self.scored)))
        rows = fcsl.suspect_segments(self.dataset, key, include_reviewed=False)
        if action == "accept":
            rows = [r for r in rows if r["suggested_label"] not in (None, r["given_label"])]
        if not rows:
            return
        row = data.draw(st.sampled_from(rows))
        label = data.draw(st.sampled_from(["0", "1", "2"])) if action == "relabel" else None
        classes = self.dataset.get_run_info(key).config.classes
        if label is not None:
            label = classes[int(label) % len(classes)]
        before = _labels(self.dataset)
        decision = fcsl.review_segment(
            self.dataset, key, row["sample_id"], row["first_frame"], row["last_frame"], action, label
        )
        replaced = {}
        for f in decision["changed_frames"] or []:
            replaced[(row["sample_id"], f)] = before[(row["sample_id"], f)]
            self.expected[(row["sample_id"], f)] = decision["new_label"]
        self.decisions.append((key, decision["decision_id"], replaced))
        self.ran["decide"] += 1

    @precondition(lambda self: self.decisions)
    @rule()
    def undo(self):
        key, decision_id, replaced = self.decisions[-1]
        try:
            fcsl.undo_review(self.dataset, key, decision_id)
        except CSLError:
            return  # refused: nothing may have changed (the invariant checks it)
        self.decisions.pop()
        self.expected.update(replaced)
        self.ran["undo"] += 1

    @precondition(lambda self: self.decisions)
    @rule()
    def undo_again(self):  # undo is drawn as often as a decision
        self.undo()

    @precondition(lambda self: self.scored)
    @rule(data=st.data())
    def refresh(self, data):
        self.ran["refresh"] += 1
        key = data.draw(st.sampled_from(sorted(self.scored)))
        fcsl.refresh_scores(self.dataset, key, progress=False)

    @precondition(lambda self: self.ran["inject"] < 40)
    @rule(kind=st.sampled_from(["mislabel", "disorder", "boundary"]), into=st.sampled_from(["phase_bad", "s", "emb"]))
    def inject(self, kind, into):
        self.ran["inject"] += 1
        try:
            fcsl.inject_errors(self.dataset, "phase", into, kinds=[kind], rate=0.2, seed=1, overwrite=True)
        except CSLError:
            assert into in ("s", "emb") or into in self.scored, f"injection into {into} was refused"

    @precondition(lambda self: self.scored)
    @rule(data=st.data(), tag=st.sampled_from([None, "review", USER_TAG]))
    def queue(self, data, tag):
        self.ran["queue"] += 1
        key = data.draw(st.sampled_from(sorted(self.scored)))
        try:
            fcsl.select_frames_for_review(self.dataset, key, budget=2, tag=tag, passes=2, progress=False)
        except CSLError:
            assert tag == USER_TAG, "only a tag the user already uses may be refused"

    @precondition(lambda self: self.scored)
    @rule(data=st.data())
    def delete(self, data):
        self.ran["delete"] += 1
        key = data.draw(st.sampled_from(sorted(self.scored)))
        fcsl.delete_csl_run(self.dataset, key)
        self.scored.discard(key)
        self.decisions = [d for d in self.decisions if d[0] != key]  # the labels stay as decided

    # --- what must hold after every step ------------------------------------------------------

    @invariant()
    def labels_change_only_by_decisions(self):
        if getattr(self, "dataset", None) is not None:
            assert _labels(self.dataset) == self.expected

    @invariant()
    def user_things_are_untouched(self):
        if getattr(self, "dataset", None) is None:
            return
        first = self.dataset.first()
        assert USER_TAG in first.tags
        assert first["user_note"] == "keep me"
        assert "my-view" in self.dataset.list_saved_views()
        assert "emb" in self.dataset.get_frame_field_schema()
        assert _files_outside_runs(base_dir()) == self.outside

    @invariant()
    def every_run_loads(self):
        if getattr(self, "dataset", None) is None:
            return
        assert set(fcsl.list_csl_runs(self.dataset)) == self.scored
        for key in self.scored:
            assert fcsl.load_csl_results(self.dataset, key).videos


def test_random_sequences_of_run_operations_keep_every_promise(scratch):
    RunsInUse.base = scratch
    settings_ = settings(
        max_examples=8, stateful_step_count=12, deadline=None, derandomize=True,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    test = RunsInUse.TestCase
    test.settings = settings_
    RunsInUse.ran.clear()
    test().runTest()
    # the sequences did exercise decisions on audited runs, not only refusals
    assert RunsInUse.ran["audit"] and RunsInUse.ran["decide"] and RunsInUse.ran["undo"], dict(RunsInUse.ran)
    print("rules run:", dict(RunsInUse.ran))

"""The plugin loads through FiftyOne; every operator runs through its SDK twin."""

import fiftyone.operators as foo
import fiftyone_csl as fcsl
import numpy as np
import pytest
from fiftyone_csl.operators import OPERATORS as OPERATOR_CLASSES
from fiftyone_csl.plugin.runs.record import operator_uri

URI = operator_uri("")


def _declared():
    """The operators and panels the plugin declares in fiftyone.yml."""
    import os
    import re

    text = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fiftyone.yml")).read()
    blocks = re.findall(r"^(\w+):\n((?:  - .+\n)+)", text, re.M)
    return {key: re.findall(r"^  - (\S+)", block, re.M) for key, block in blocks}


def _ok(result):
    assert result.error is None, result.error_message
    return result.result


def test_every_operator_and_the_panel_are_registered_as_fiftyone_yml_declares():
    declared = _declared()
    names = sorted(cls().config.name for cls in OPERATOR_CLASSES)
    assert names == sorted(declared["operators"] + declared["panels"])
    for name in declared["operators"]:
        assert foo.get_operator(URI + name).config.name == name
    for name in declared["panels"]:
        assert foo.get_operator(URI + name).config.surfaces == "modal"


def test_operators_inject_audit_flag_evaluate_delete(scratch):
    inject = foo.get_operator(URI + "inject_errors")
    clean = scratch.values("frames.phase_clean.label")
    out = _ok(inject(scratch, "phase_clean", "noisy", rate=0.15, seed=1))
    assert out["corrupted_frames"] >= 0.15 * scratch.count("frames.phase_clean")
    scratch.reload()
    assert scratch.values("frames.phase_clean.label") == clean  # the source labels are untouched
    noisy = scratch.values("frames.noisy.label")
    changed = sum(a != b for va, vb in zip(clean, noisy) for a, b in zip(va, vb))
    assert changed == out["corrupted_frames"]

    audit = foo.get_operator(URI + "audit_video_labels")
    out = _ok(audit(scratch, "frames.noisy", csl_field="op", embeddings_field="emb", epochs=15, folds=4))
    assert out["run_key"] == "op" and out["videos"] == len(scratch)
    scratch.reload()
    assert scratch.count("frames.op") == scratch.count("frames.noisy")

    flag = foo.get_operator(URI + "flag_errors")
    strict = _ok(flag(scratch, "op", threshold=50.0))
    assert strict["suspect_segments"] == 0 and scratch.count("op_errors.detections") == 0
    _ok(flag(scratch, "op"))
    assert scratch.count("op_errors.detections") > 0

    evaluate = foo.get_operator(URI + "evaluate_detection")
    out = _ok(evaluate(scratch, "op", "noisy_error", clean_field="phase_clean"))
    assert "suspect segments" in out["report"] and "AUROC" in out["report"]
    report = fcsl.run_summary(scratch, "op")["evaluation"]
    print("segments:", {k: v for k, v in report["segments"].items() if k != "by_kind"})
    assert report["segments"]["events"] >= 4 and report["segments"]["event_recall"] >= 0.75
    assert report["segments"]["flag_precision"] >= 0.7 and report["segments"]["label_accuracy"] >= 0.8
    assert report["error_field"] == "noisy_error"
    assert report["scores"]["csl"]["all"]["auroc"] >= 0.9
    assert report["eda"] > 0.8 and report["type_accuracy"]["segments"] > 0
    assert report["segmenter"]["edit"] > 50 and set(report["segmenter"]) >= {"f1@10", "f1@25", "f1@50"}

    review = foo.get_operator(URI + "select_frames_for_review")
    out = _ok(review(scratch, "op", budget=25, budget_unit="frames", mode="apu", passes=3))
    assert out["selected"] == 25 and out["view"] == "op-review-queue"
    assert scratch.load_saved_view("op-review-queue").count("frames") == 25

    _ok(foo.get_operator(URI + "delete_csl_run")(scratch, "op"))
    scratch.reload()
    assert "op" not in scratch.list_runs() and "op" not in scratch.get_frame_field_schema()
    assert "op-review-queue" not in scratch.list_saved_views()


def test_operators_train_on_one_view_and_replay_on_another(scratch):
    train_ids = scratch.take(6, seed=0).values("id")
    trained_on = scratch.select(train_ids)
    new_videos = scratch.exclude(train_ids)
    _ok(foo.get_operator(URI + "train_checkpoints")(trained_on, "frames.phase", "tr", "emb", epochs=10, folds=3))
    assert fcsl.load_csl_results(scratch, "tr").videos == {}
    assert "tr" not in scratch.get_frame_field_schema()  # nothing scored yet

    out = _ok(foo.get_operator(URI + "replay_checkpoints")(new_videos, "tr"))
    assert out["videos"] == len(new_videos)
    scratch.reload()
    assert new_videos.count("frames.tr") == new_videos.count("frames.phase")
    assert trained_on.count("frames.tr") == 0
    results = fcsl.load_csl_results(scratch, "tr")
    assert set(results.videos) == set(new_videos.values("id"))
    assert next(iter(results.videos.values())).trajectory.loss.shape[1] == 10


def test_the_audit_operator_with_workers_queues_the_graph_and_writes_nothing(scratch):
    from fiftyone.operators.delegated import DelegatedOperationService

    audit = foo.get_operator(URI + "audit_video_labels")
    out = _ok(audit(scratch, "frames.phase", "wk", "emb", epochs=2, folds=2, workers=3))
    graph = fcsl.audit_graph(out["graph_id"])
    assert graph["state"] == "running" and out["queued_parts"] == 2  # one training part per fold
    assert graph["counts"] == {"features": 3, "train": 2, "replay": 3, "merge": 1}
    service = DelegatedOperationService()
    queued = service.list_operations(dataset_name=scratch.name, operator=URI + "run_audit_part")
    assert sorted(str(op.id) for op in queued) == sorted(graph["operations"])
    scratch.reload()
    assert "wk" not in scratch.list_runs() and "wk" not in scratch.get_frame_field_schema()
    fcsl.cancel_graph(out["graph_id"])
    for op in queued:
        service.delete_operation(op.id)


def test_the_audit_operator_takes_the_forms_choice_of_rounds(scratch):
    audit = foo.get_operator(URI + "audit_video_labels")
    out = _ok(audit(scratch, "frames.phase", "two", "emb", epochs=3, folds=2, rounds="2"))
    assert out["second_round"] == "trained: rounds=2"
    out = _ok(audit(scratch, "frames.phase", "one", "emb", epochs=3, folds=2, rounds="1"))
    assert out["second_round"] == "not trained: rounds=1"


def test_compute_features_operator_matches_the_audit_features(scratch):
    sample = scratch.first()
    _ok(foo.get_operator(URI + "compute_frame_features")(scratch.select(sample.id), "feat2", stride=1))
    sample.reload()
    # computed by the same backbone on the same file (from the feature cache)
    np.testing.assert_allclose(sample.frames[3]["feat2"], sample.frames[3]["emb"], rtol=1e-5)


def test_inject_errors_refuses_to_touch_existing_fields(scratch):
    with pytest.raises(fcsl.CSLError, match="exist"):
        fcsl.inject_errors(scratch, "phase_clean", "phase", "phase_error2")
    with pytest.raises(fcsl.CSLError, match="differ"):
        fcsl.inject_errors(scratch, "phase_clean", "phase_clean", overwrite=True)


def test_forms_say_when_the_app_cannot_schedule_and_how_long_an_immediate_run_takes(monkeypatch):
    import fiftyone as fo
    import fiftyone.operators.types as types
    from fiftyone_csl.operators import common

    # an hour of 25 fps video, default settings, a backbone at 48 frames/s (whatever the runtime
    # here): 1875 s of backbone + 180 s of training and replay
    monkeypatch.setattr(common, "BACKBONE_FPS", dict.fromkeys(common.BACKBONE_FPS, 48.0))
    seconds = common.estimated_seconds(90_000, epochs=30, folds=5)
    assert seconds == pytest.approx(1875 + 180 + 10)
    assert common.estimated_seconds(90_000, 30, 5, backbone=False) == pytest.approx(190)
    assert common.estimated_seconds(90_000, 30, 5, fps=1) == pytest.approx(75 + 7.2 + 10)  # 3,600 frames scored
    monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", False)
    inputs = types.Object()
    common.scheduling_notice(None, inputs, seconds)
    notice = inputs.properties["no_scheduling"].view
    assert "not available" in notice.label and "about 34 min" in notice.description
    assert "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true" in notice.description
    monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", True)
    inputs = types.Object()
    common.scheduling_notice(None, inputs, seconds)
    assert "no_scheduling" not in inputs.properties


def test_label_actively_operator_trains_from_sparse_labels_and_queues_frames(scratch):
    import fiftyone as fo

    ids, numbers, labels = scratch.values(["id", "frames.frame_number", "frames.phase.label"])
    sparse = {
        sid: {n: fo.Classification(label=x) for n, x in zip(ns, ls) if n % 20 == 1}
        for sid, ns, ls in zip(ids, numbers, labels)
    }
    scratch.set_values("frames.sparse", sparse, key_field="id")
    operator = foo.get_operator(URI + "label_actively")
    out = _ok(
        operator(scratch, "frames.sparse", "loop", budget=10, budget_unit="frames", embeddings_field="emb", epochs=5)
    )
    assert (
        out["selected"] == 10 and out["view"] == "loop-review-queue" and out["propagated"] == "frames.loop_propagated"
    )
    scratch.reload()
    assert scratch.count("frames.loop_review_priority") == 10
    # on a view that shows some frames only (as the review queue does), every frame of its videos counts
    from fiftyone import ViewField as F

    few = scratch.match_frames(F("frame_number") <= 3)
    again = _ok(
        operator(few, "frames.sparse", "loop", budget=0, budget_unit="frames", embeddings_field="emb", epochs=2)
    )
    assert again["labelled"].startswith(f"{scratch.count('frames.sparse')} of {scratch.count('frames')} frames")
    assert scratch.count("frames.loop_propagated") == scratch.count("frames") - scratch.count("frames.sparse")
    assert scratch.count("frames.loop") == scratch.count("frames.sparse")


class _FormCtx:
    """What a form reads while it resolves: the params typed so far."""

    def __init__(self, params, results=None):
        self.params, self.results = params, results

    def target_view(self):
        return None


def test_forms_list_their_choices_check_counts_with_their_own_message_and_show_only_present_results():
    import fiftyone.operators.types as types
    from fiftyone_csl.operators import common

    inputs = types.Object()
    common.peer_inputs(_FormCtx({}), inputs)
    choices = [c.value for c in inputs.properties["peer_scores"].view.choices]
    assert "last_loss" in choices and "aum" in choices and "csl" not in choices
    inputs = types.Object()
    common.training_inputs(_FormCtx({"epochs": 0, "folds": 1}), inputs)
    for name, low in (("epochs", 1), ("folds", 2)):
        prop = inputs.properties[name]
        assert prop.invalid and f"between {low} and" in prop.error_message, name
    inputs = types.Object()
    common.rounds_input(_FormCtx({}), inputs)
    assert inputs.properties["rounds"].default == "auto"
    assert [c.value for c in inputs.properties["rounds"].view.choices] == ["auto", "1", "2"]
    inputs = types.Object()
    common.training_inputs(_FormCtx({"epochs": 3, "folds": 2}), inputs)
    assert not inputs.properties["epochs"].invalid and not inputs.properties["folds"].invalid
    outputs = types.Object()
    fields = (("str", "run_key", "Run key"), ("str", "graph_id", "Graph"), ("int", "videos", "Videos"))
    common.present_outputs(_FormCtx({}, {"run_key": "csl", "graph_id": None, "videos": 0}), outputs, fields)
    assert sorted(outputs.properties) == ["run_key", "videos"]
    assert common.counts_text({"mislabel": 3, "boundary": 1}) == "mislabel: 3, boundary: 1"

"""Budgeted frame selection for review (APU), MC-dropout uncertainty and
training from sparse labels (MGW)."""

import fiftyone_csl as fcsl
import numpy as np
import pytest
import torch
from _common import snapshot
from fiftyone_csl.models import build_head
from fiftyone_csl.models.losses import mgw_weights
from fiftyone_csl.plugin.core.errors import CSLError
from fiftyone_csl.plugin.core.sequences import nearest_labelled, sequences_from_arrays
from fiftyone_csl.plugin.review.queue import mc_dropout_uncertainty, resolve_budget, select_frames


def _frames(*lengths):
    return {f"v{i}": np.arange(1, n + 1) for i, n in enumerate(lengths)}


def test_apu_spreads_picks_over_time_and_lambda_one_is_top_uncertainty():
    frames = _frames(200)
    rng = np.random.default_rng(0)
    u = {"v0": rng.random(200)}
    spread = [f for _, f in select_frames(frames, 5, "apu", uncertainty=u, lam=0.0, sigma=20.0)]
    gaps = np.diff(sorted(spread))
    assert len(set(spread)) == 5 and gaps.min() >= 30  # pure spread: far apart
    top = [f for _, f in select_frames(frames, 5, "apu", uncertainty=u, lam=1.0, sigma=20.0)]
    assert top == [int(i) + 1 for i in np.argsort(-u["v0"])[:5]]
    assert [f for _, f in select_frames(frames, 5, "uncertainty", uncertainty=u)] == top


def test_apu_selects_globally_and_never_repeats_or_picks_reviewed_frames():
    frames = _frames(100, 100, 100)
    u = {"v0": np.full(100, 0.6), "v1": np.full(100, 0.1), "v2": np.full(100, 0.5)}
    reviewed = {"v0": [1, 2, 3]}
    picks = select_frames(frames, 30, "apu", uncertainty=u, lam=0.5, sigma=10.0, reviewed=reviewed)
    assert len(picks) == len(set(picks)) == 30
    assert not any(v == "v0" and f in (1, 2, 3) for v, f in picks)
    counts = {v: sum(1 for p in picks if p[0] == v) for v in frames}
    assert counts["v0"] > counts["v2"] > counts["v1"]  # the budget follows uncertainty across videos
    assert counts["v2"] > 0  # ... but spreading sends some picks to the next video


def test_apu_csl_puts_suspect_frames_first():
    frames = _frames(120)
    u = {"v0": np.full(120, 0.5)}
    csl = {"v0": np.full(120, 0.1)}
    csl["v0"][60:70] = 3.0
    picks = select_frames(frames, 3, "apu_csl", uncertainty=u, csl=csl, lam=0.8, sigma=30.0)
    assert 61 <= picks[0][1] <= 70
    assert all(61 <= f <= 70 for _, f in select_frames(frames, 3, "csl", csl=csl))  # ties: seeded order


def test_equidistant_and_random_baselines():
    frames = _frames(100, 300)
    picks = select_frames(frames, 20, "equidistant")
    counts = {v: sorted(f for w, f in picks if w == v) for v in frames}
    assert len(counts["v0"]) == 5 and len(counts["v1"]) == 15  # in proportion to length
    assert np.ptp(np.diff(counts["v1"])) <= 1  # evenly spaced
    # with frames already reviewed, new picks fill the widest gaps instead of sitting beside the old ones
    reviewed = {"v0": [], "v1": counts["v1"]}
    more = sorted(f for w, f in select_frames(frames, 20, "equidistant", reviewed=reviewed) if w == "v1")
    union = np.sort(np.concatenate([counts["v1"], more]))
    assert not set(more) & set(counts["v1"]) and np.diff(union).min() >= 5 and np.diff(union).max() <= 15
    a = select_frames(frames, 20, "random", seed=1)
    assert a == select_frames(frames, 20, "random", seed=1) and len(set(a)) == 20


def test_selection_rejects_bad_input():
    frames = _frames(10)
    u = {"v0": np.zeros(10)}
    for kwargs, message in [
        (dict(mode="best"), "mode must be one of"),
        (dict(mode="apu", uncertainty=u, lam=1.5), "lambda must be in"),
        (dict(mode="apu", uncertainty=u, sigma=-1), "sigma must be"),
        (dict(mode="apu"), "needs frame uncertainties"),
        (dict(mode="csl"), "needs CSL scores"),
    ]:
        with pytest.raises(CSLError, match=message):
            select_frames(frames, 3, **kwargs)
    assert resolve_budget(5, "percent", 200) == 10 and resolve_budget(7, "frames", 5) == 5
    for budget, unit, message in [(0, "percent", "> 0"), (150, "percent", "more than every"), (3, "pages", "unit")]:
        with pytest.raises(CSLError, match=message):
            resolve_budget(budget, unit, 100)


def test_mc_dropout_uncertainty_is_the_mean_negative_log_max_probability():
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    still = build_head("transformer", 8, 3, dropout=0.0, input_dropout=0.0)
    with torch.no_grad():
        expected = -torch.log_softmax(still(torch.from_numpy(x)[None]), -1).max(-1).values[0].numpy()
    np.testing.assert_allclose(mc_dropout_uncertainty(still, x, max_frames=64, passes=4), expected, atol=1e-5)
    assert mc_dropout_uncertainty(still, x, max_frames=20, passes=2).shape == (50,)  # windows, as in replay
    noisy = build_head("transformer", 8, 3)
    torch.manual_seed(1)
    a = mc_dropout_uncertainty(noisy, x, 64, passes=8)
    torch.manual_seed(2)
    b = mc_dropout_uncertainty(noisy, x, 64, passes=8)
    assert (a >= 0).all() and not np.allclose(a, b)  # dropout is on: passes differ
    assert not noisy.training  # left in eval mode


def test_mgw_weights_between_masking_and_interpolation():
    labelled = np.zeros(21, bool)
    labelled[[0, 10, 20]] = True
    positions = np.arange(21)
    np.testing.assert_array_equal(mgw_weights(positions, labelled, 0.0), labelled.astype(float))
    np.testing.assert_array_equal(mgw_weights(positions, labelled, float("inf")), np.ones(21))
    w = mgw_weights(positions, labelled, 2.0)
    assert w[10] == 1.0 and np.isclose(w[12], np.exp(-4 / 8)) and w[5] < w[4] < w[11]
    labels = np.array([0] * 10 + [1] * 11)
    filled = nearest_labelled(np.where(labelled, labels, -1), labelled)
    assert list(filled[:6]) == [0] * 6 and list(filled[6:16]) == [1] * 10 and filled[16:].tolist() == [1] * 5


def test_sparse_labels_train_on_every_frame_and_score_the_labelled():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 2
    features, labels = [], []
    for _ in range(6):
        y = np.repeat([0, 1, 2], 40)
        features.append((centres[y] + rng.normal(size=(120, 6))).astype(np.float32))
        sparse = np.full(120, -1)
        sparse[::10] = y[::10]
        labels.append(sparse)
    seqs = sequences_from_arrays(features, labels)
    assert seqs[0].labelled.sum() == 12 and (seqs[0].labels >= 0).all()
    with pytest.raises(CSLError, match="no labelled frame"):
        sequences_from_arrays([features[0]], [np.full(120, -1)])
    results = fcsl.compute_csl_arrays(features, labels, epochs=8, folds=3, mgw_sigma=4.0, progress=False)
    truth = np.repeat([0, 1, 2], 40)
    accuracy = np.mean([(v.predictions.labels == truth).mean() for v in results.videos.values()])
    assert accuracy > 0.9
    for v in results.videos.values():  # scores and flags on the 12 labelled frames; predictions on all 120
        assert v.frame_numbers.tolist() == list(range(1, 121, 10)) and len(v.scores["csl"]) == 12
        assert len(v.trajectory.loss) == 12 and len(v.predictions.frame_numbers) == 120
        confidence = v.predictions.confidence
        assert v.predictions.labelled.sum() == 12 and ((confidence > 0) & (confidence <= 1)).all()


# --- FiftyOne --------------------------------------------------------------------------------


def _error_segments(dataset):
    """The injected errors: one set of (sample_id, frame_number) per run of
    consecutive error frames."""
    ids, numbers, errors = dataset.values(["id", "frames.frame_number", "frames.phase_error.label"])
    segments = []
    for sid, ns, es in zip(ids, numbers, errors):
        previous = None
        for n, e in zip(ns, es):
            if e and previous is not None and n == previous + 1:
                segments[-1].add((sid, n))
            elif e:
                segments.append({(sid, n)})
            previous = n if e else None
    return segments


def test_review_queue_prefers_injected_errors_and_is_replaced_and_deleted(scratch):
    from fiftyone import ViewField as F

    fcsl.compute_csl(scratch, "phase", csl_field="rq", embeddings_field="emb", epochs=10, folds=4, seed=7)
    total = scratch.count("frames.phase")
    segments = _error_segments(scratch)
    picks = fcsl.select_frames_for_review(scratch, "rq", budget=5, passes=4, tag="check")
    k = round(total * 0.05)
    assert len(picks) == len(set(picks)) == k
    # a reviewer who sees one wrong frame of an error fixes the error
    found = sum(1 for segment in segments if segment & set(picks))
    print(f"review queue of {k} frames found {found} of {len(segments)} injected errors")
    assert found >= len(segments) - 2  # picking at random would find about half
    scratch.reload()
    priorities = [p for p in scratch.values("frames.rq_review_priority", unwind=True) if p is not None]
    assert sorted(priorities) == list(range(1, k + 1))
    first = dict(zip(*scratch.values(["id", "rq_review_first"])))
    assert first[picks[0][0]] == 1
    queue = scratch.load_saved_view("rq-review-queue")
    assert queue.count("frames") == k and len(queue) == len({sid for sid, _ in picks})
    assert queue.values("rq_review_first") == sorted(queue.values("rq_review_first"))
    assert scratch.count_label_tags()["check"] == k
    assert len(scratch.match_tags("check")) == len(queue)

    again = fcsl.select_frames_for_review(scratch, "rq", budget=10, budget_unit="frames", mode="random", tag="check")
    scratch.reload()
    assert len(again) == 10 and scratch.count("frames.rq_review_priority") == 10
    assert scratch.count_label_tags()["check"] == 10
    fcsl.flag_errors(scratch, "rq")  # other steps keep the queue's fields as the run's own
    fcsl.delete_csl_run(scratch, "rq")
    scratch.reload()
    assert "rq_review_priority" not in scratch.get_frame_field_schema()
    assert "rq-review-queue" not in scratch.list_saved_views()
    assert "check" not in scratch.count_label_tags() and not len(scratch.match(F("tags").contains("check")))


def test_review_bad_input_changes_nothing(scratch):
    fcsl.compute_csl(scratch, "phase", csl_field="rb", embeddings_field="emb", epochs=3, folds=2)
    before = snapshot(scratch)
    for kwargs, message in [
        (dict(budget=0), "> 0"),
        (dict(mode="everything"), "mode must be one of"),
        (dict(lam=2.0), "lambda must be in"),
        (dict(reviewed_field="nope"), "no frame field"),
        (dict(passes=0), "passes must be"),
    ]:
        with pytest.raises(CSLError, match=message):
            fcsl.select_frames_for_review(scratch, "rb", **kwargs)
    with pytest.raises(CSLError, match="no CSL run"):
        fcsl.select_frames_for_review(scratch, "missing")
    assert snapshot(scratch) == before

"""Sparse labels on datasets and the active labelling loop."""

import fiftyone_csl as fcsl
import numpy as np
import pytest
from _common import snapshot
from fiftyone_csl.plugin.core.errors import CSLError

SPARSE = dict(epochs=15, cross_fit=False, seed=7, mgw_sigma=3.0)


def _sparsify(dataset, every=10, unlabelled_video=None):
    """``frames.sparse``: ``phase`` on every ``every``-th frame only (none on
    ``unlabelled_video``). Returns ``{sample_id: labelled frame numbers}``."""
    import fiftyone as fo

    ids, numbers, labels = dataset.values(["id", "frames.frame_number", "frames.phase.label"])
    values, kept = {}, {}
    for sid, ns, ls in zip(ids, numbers, labels):
        keep = [] if sid == unlabelled_video else [n for n in ns if (n - 1) % every == 0]
        values[sid] = {n: (fo.Classification(label=lab) if n in keep else None) for n, lab in zip(ns, ls)}
        kept[sid] = keep
    dataset.set_values("frames.sparse", values, key_field="id")
    return kept


def _frames_with(dataset, field):
    ids, numbers, values = dataset.values(["id", "frames.frame_number", f"frames.{field}"])
    return {sid: [n for n, v in zip(ns, vs) if v is not None] for sid, ns, vs in zip(ids, numbers, values)}


def test_sparse_labels_score_labelled_frames_and_predict_every_frame(scratch):
    dataset = scratch
    first = dataset.first().id
    kept = _sparsify(dataset, 10, unlabelled_video=first)
    truth = dict(zip(*dataset.values(["id", "frames.phase.label"])))
    before = dataset.values("frames.sparse.label")
    results = fcsl.compute_csl(dataset, "sparse", embeddings_field="emb", sparse_labels=True, progress=False, **SPARSE)
    dataset.reload()
    assert dataset.values("frames.sparse.label") == before  # the labels are never touched
    # scores and flags only where a label is given
    assert _frames_with(dataset, "csl") == kept
    assert {sid: v.frame_numbers.tolist() for sid, v in results.videos.items()} == kept
    assert dataset[first]["csl_max"] is None and dataset.count("csl_max") == len(dataset) - 1
    # predictions on every frame; the propagated field on the unlabelled ones
    every = _frames_with(dataset, "emb")
    assert _frames_with(dataset, "csl_predictions") == every
    unlabelled = {s: [n for n in ns if n not in kept[s]] for s, ns in every.items()}
    assert _frames_with(dataset, "csl_propagated") == unlabelled
    ids, predicted, confidence = dataset.values(
        ["id", "frames.csl_predictions.label", "frames.csl_predictions.confidence"]
    )
    correct = total = 0
    for sid, p, c in zip(ids, predicted, confidence):
        assert all(0 < x <= 1 for x in c)
        correct += sum(a == b for a, b in zip(p, truth[sid]))
        total += len(p)
    assert correct / total > 0.8  # 10% of the frames labelled; the video without any is predicted too
    summary = fcsl.run_summary(dataset, "csl")
    fractions = summary["labelled_fraction"]
    assert fractions[first] == 0.0 and summary["num_scored_frames"] == sum(len(k) for k in kept.values())
    for sid, keep in kept.items():
        assert fractions[sid] == pytest.approx(len(keep) / len(every[sid]), abs=1e-6)
    # the review queue of a sparse run (CSL mixed in) takes the video with no label too
    picks = fcsl.select_frames_for_review(dataset, "csl", budget=20, budget_unit="frames", passes=2, progress=False)
    assert len(picks) == 20 and all(isinstance(n, int) for _, n in picks)
    # a dense run of the same key removes the sparse outputs it no longer writes
    fcsl.compute_csl(dataset, "phase", embeddings_field="emb", overwrite=True, progress=False, **SPARSE)
    dataset.reload()
    assert "csl_predictions" not in dataset.get_frame_field_schema()
    assert "csl_propagated" not in dataset.get_frame_field_schema()


def test_sparse_labels_bad_input_changes_nothing(scratch):
    dataset = scratch
    _sparsify(dataset, 10)
    state = snapshot(dataset)
    bad = [
        (dict(sparse_labels="yes"), "sparse_labels must be True or False"),
        (dict(sparse_labels=True, simulation=True), "simulation needs every frame labelled"),
        (dict(sparse_labels=True, peer_scores=["mistakenness"]), "mistakenness"),
        (dict(sparse_labels=True, mgw_sigma=-1.0), "mgw_sigma must be >= 0"),
    ]
    for extra, message in bad:
        with pytest.raises(CSLError, match=message):
            fcsl.compute_csl(dataset, "sparse", embeddings_field="emb", progress=False, **{**SPARSE, **extra})
    assert snapshot(dataset) == state and not fcsl.list_csl_runs(dataset)


def test_sparse_labels_from_the_backbone_on_videos_with_few_frame_documents(audited):
    """A new dataset of the same files where only the labelled frames exist
    as FiftyOne frames: every decoded frame is modelled and predicted."""
    import fiftyone as fo

    source = audited[0]
    dataset = fo.Dataset()
    try:
        for sample in source:
            new = fo.Sample(filepath=sample.filepath)
            for n in range(1, len(sample.frames) + 1, 15):
                new.frames[n]["sparse"] = fo.Classification(label=sample.frames[n]["phase"].label)
            dataset.add_sample(new)
        labelled = dataset.count("frames")
        fcsl.compute_csl(dataset, "sparse", sparse_labels=True, progress=False, **SPARSE)
        dataset.reload()
        counts = [len(s.frames) for s in source]
        assert dataset.count("frames.csl") == labelled
        assert dataset.count("frames.csl_predictions") == sum(counts)  # frames FiftyOne had no document for too
        truth = {
            (path, n): label
            for path, ns, ls in zip(*source.values(["filepath", "frames.frame_number", "frames.phase.label"]))
            for n, label in zip(ns, ls)
        }
        fields = ["filepath", "frames.frame_number", "frames.csl_predictions.label"]
        predicted = {(path, n): label for path, ns, ls in zip(*dataset.values(fields)) for n, label in zip(ns, ls)}
        assert predicted.keys() == truth.keys()
        assert np.mean([predicted[k] == truth[k] for k in truth]) > 0.8
    finally:
        dataset.delete()


def _accuracy(dataset, field, truth):
    ids, numbers, labels = dataset.values(["id", "frames.frame_number", f"frames.{field}.label"])
    pairs = [(truth[sid][n], x) for sid, ns, ls in zip(ids, numbers, labels) for n, x in zip(ns, ls) if x is not None]
    return np.mean([a == b for a, b in pairs]), len(pairs)


def test_active_labelling_loop_asks_for_new_frames_and_propagates(scratch):
    dataset = scratch
    first = dataset.first().id
    kept = _sparsify(dataset, 30, unlabelled_video=first)
    ids, numbers, phases = dataset.values(["id", "frames.frame_number", "frames.phase.label"])
    truth = {sid: dict(zip(ns, ls)) for sid, ns, ls in zip(ids, numbers, phases)}
    total = dataset.count("frames")
    options = dict(embeddings_field="emb", epochs=15, passes=4, seed=3, mgw_sigma=3.0, progress=False)

    done = fcsl.label_actively(dataset, "sparse", budget=3, **options)
    dataset.reload()
    assert done.labelled_frames == sum(len(k) for k in kept.values()) and done.frames == total
    assert len(done.picks) == round(0.03 * total) and done.view == "asl-review-queue"
    labelled = {(sid, n) for sid, ns in kept.items() for n in ns}
    assert not labelled & set(done.picks)  # never a frame that has a label
    assert first in {sid for sid, _ in done.picks}  # the video with no label gets frames to label
    for sid in {sid for sid, _ in done.picks}:  # spread over time: no two picks of a video side by side
        ns = sorted(n for s, n in done.picks if s == sid)
        assert min(np.diff(ns), default=99) >= 2
    queue = dataset.load_saved_view("asl-review-queue")
    shown = {(s.id, f.frame_number) for s in queue for f in s.frames.values()}
    assert shown == set(done.picks)
    assert set(dataset.match_tags("to_label").values("id")) == {sid for sid, _ in done.picks}
    accuracy, count = _accuracy(dataset, "asl_propagated", truth)
    assert count == total - done.labelled_frames and accuracy > 0.75

    # the annotator labels the picked frames; the next round learns from them
    _label(dataset, done.picks, truth)
    before = dataset.values("frames.sparse.label")
    again = fcsl.label_actively(dataset, "sparse", budget=3, **options)
    dataset.reload()
    assert dataset.values("frames.sparse.label") == before  # only the annotator writes labels
    assert again.labelled_frames == done.labelled_frames + len(done.picks)
    assert not set(again.picks) & (labelled | set(done.picks))
    accuracy_2, _ = _accuracy(dataset, "asl_propagated", truth)
    assert accuracy_2 > 0.8
    assert fcsl.run_summary(dataset, "asl")["labelled_fraction"][first] > 0

    # a last round with no budget retrains and propagates, and leaves no queue or tag behind
    last = fcsl.label_actively(dataset, "sparse", budget=0, **options)
    dataset.reload()
    assert last.picks == [] and last.view is None
    assert "asl-review-queue" not in dataset.list_saved_views() and not len(dataset.match_tags("to_label"))
    assert "asl_review_priority" not in dataset.get_frame_field_schema()
    # the README's way to accept the proposed labels: only frames without a label get one
    given = {(sid, n): x for sid, ns, ls in zip(*dataset.values(["id", "frames.frame_number", "frames.sparse.label"]))
             for n, x in zip(ns, ls) if x is not None}  # fmt: skip
    ids, props = dataset.values(["frames.id", "frames.asl_propagated"], unwind=True)
    dataset.set_values("frames.sparse", {i: p for i, p in zip(ids, props) if p is not None}, key_field="frames.id")
    after = dataset.values(["id", "frames.frame_number", "frames.sparse.label"])
    assert all(x is not None for ls in after[2] for x in ls)
    assert all(dict(zip(ns, ls))[n] == given[(sid, n)] for sid, ns, ls in zip(*after) for (s2, n) in given if s2 == sid)


def _label(dataset, picks, truth):
    import fiftyone as fo

    per_video = {}
    for sid, n in picks:
        per_video.setdefault(sid, {})[n] = fo.Classification(label=truth[sid][n])
    dataset.set_values("frames.sparse", per_video, key_field="id")


def test_active_labelling_bad_input_changes_nothing(scratch):
    import fiftyone as fo

    dataset = scratch
    _sparsify(dataset, 30)
    fcsl.compute_csl(dataset, "sparse", embeddings_field="emb", epochs=3, folds=2, progress=False, csl_field="audit")
    state = snapshot(dataset)
    bad = [
        (dict(csl_field="audit"), "not a labelling run"),
        (dict(budget=-1), "budget must be > 0"),
        (dict(budget=101), "more than every frame"),
        (dict(lam=2.0), "lambda must be in"),
        (dict(cross_fit=True), "sets cross_fit itself"),
        (dict(tag=""), "tag must be"),
    ]
    for extra, message in bad:
        with pytest.raises(CSLError, match=message):
            fcsl.label_actively(dataset, "sparse", embeddings_field="emb", epochs=3, progress=False, **extra)
    dataset.add_frame_field("nothing_yet", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    state = snapshot(dataset)
    with pytest.raises(CSLError, match="no frame of 'nothing_yet' is labelled yet"):
        fcsl.label_actively(dataset, "nothing_yet", embeddings_field="emb", epochs=3, progress=False)
    with pytest.raises(CSLError, match="frame-level Classification"):
        fcsl.label_actively(dataset, "audit_errors", embeddings_field="emb", epochs=3, progress=False)
    assert snapshot(dataset) == state


def test_sparse_checkpoints_replayed_after_more_labels(scratch):
    """train_checkpoints and replay_checkpoints with sparse labels: the
    replay scores the labels given since, and reports the new fraction."""
    dataset = scratch
    kept = _sparsify(dataset, 20)
    fcsl.train_checkpoints(dataset, "sparse", embeddings_field="emb", sparse_labels=True, progress=False, **SPARSE)
    assert "csl_predictions" not in dataset.get_frame_field_schema()  # nothing scored yet
    more = _sparsify(dataset, 10)
    fcsl.replay_checkpoints(dataset, "csl", progress=False)
    dataset.reload()
    assert _frames_with(dataset, "csl") == more and _frames_with(dataset, "csl_predictions") == _frames_with(
        dataset, "emb"
    )
    fractions = fcsl.run_summary(dataset, "csl")["labelled_fraction"]
    for sid in kept:
        assert fractions[sid] == pytest.approx(len(more[sid]) / len(_frames_with(dataset, "emb")[sid]), abs=1e-6)

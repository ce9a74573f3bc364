"""What the decoder writes on a dataset: the corrected labels and wrong-label
probabilities the run owns, suspects with a per-frame fix, and an accept that
writes that fix frame by frame (undone exactly)."""

import fiftyone as fo
import fiftyone_csl as fcsl
import pytest
from _common import snapshot
from fiftyone_csl.plugin.runs.record import RunNames, get_run_config

TINY = dict(embeddings_field="emb", epochs=3, folds=2, seed=1, progress=False)


def _labels(dataset):
    dataset.reload()
    return dataset.values("frames.phase.label")


def test_the_decoder_fields_are_the_runs_and_go_with_it(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    names = RunNames.of(get_run_config(scratch, "k"))
    assert names.decoded and {"frames.k_corrected", "frames.k_wrong_prob"} <= set(names.paths())
    schema = scratch.get_frame_field_schema()
    assert schema["k_corrected"].document_type is fo.Classification
    assert isinstance(schema["k_wrong_prob"], fo.FloatField)
    assert scratch.count("frames.k_corrected") == scratch.count("frames.phase")
    rows = fcsl.suspect_segments(scratch, "k")
    for r in rows:  # a proposal for every frame of every suspect
        assert len(r["proposed_labels"]) == r["last_frame"] - r["first_frame"] + 1
        assert r["evidence"] is not None
    assert [r["evidence"] for r in rows] == sorted((r["evidence"] for r in rows), reverse=True)
    fcsl.delete_csl_run(scratch, "k")
    assert "k_corrected" not in scratch.get_frame_field_schema()
    assert "k_wrong_prob" not in scratch.get_frame_field_schema()


def test_a_user_field_named_like_the_decoders_output_is_never_replaced(scratch):
    scratch.add_frame_field("k_corrected", fo.StringField)
    before = snapshot(scratch)
    with pytest.raises(fcsl.CSLError, match="k_corrected"):
        fcsl.compute_csl(scratch, "phase", "k", overwrite=True, **TINY)
    assert snapshot(scratch) == before


def test_accept_writes_the_proposed_label_of_every_frame_and_undo_restores_them(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    before = _labels(scratch)
    classes = get_run_config(scratch, "k").classes
    sample = scratch.first()
    given = [f["phase"].label for f in sample.frames.values()][:10]
    # a two-part fix (a swapped pair): frames 1-5 one class, 6-10 another
    a, b = [c for c in classes if c != given[0]][:2]
    proposal = [a] * 5 + [b] * 5
    sample["k_errors"] = fo.TemporalDetections(
        detections=[
            fo.TemporalDetection(
                label="disorder", support=[1, 10], mean_csl=3.0, max_csl=4.0, given_label=given[0],
                suggested_label=a, suggested_boundary=None, proposed_labels=proposal, evidence=9.0, partner=None,
            )
        ]
    )  # fmt: skip
    sample.save()
    decision = fcsl.review_segment(scratch, "k", sample.id, 1, 10, "accept")
    after = [f["phase"].label for f in scratch[sample.id].frames.values()][:10]
    assert after == proposal
    assert decision["changed_frames"] == [f for f in range(1, 11) if given[f - 1] != proposal[f - 1]]
    fcsl.undo_review(scratch, "k")
    assert _labels(scratch) == before


def test_a_refresh_decodes_with_the_procedure_of_every_video_as_a_load_does(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    rows = [r for r in fcsl.suspect_segments(scratch, "k") if r["suggested_label"] != r["given_label"]]
    assert rows, "the audit needs a suspect to accept"
    fcsl.review_segment(scratch, "k", rows[0]["sample_id"], rows[0]["first_frame"], rows[0]["last_frame"], "accept")
    refreshed = fcsl.refresh_scores(scratch, "k")
    assert list(refreshed.videos) == [rows[0]["sample_id"]]  # only the fixed video is replayed
    loaded = fcsl.load_csl_results(scratch, "k")

    def key(segments):
        return [(s.first, s.last, s.error_type, list(s.proposed)) for s in segments]

    for sid, video in refreshed.videos.items():
        assert key(video.segments) == key(loaded.videos[sid].segments)
        assert (video.wrong_prob == loaded.videos[sid].wrong_prob).all()


def test_a_proposal_that_is_not_one_class_per_frame_is_refused(scratch):
    fcsl.compute_csl(scratch, "phase", "k", **TINY)
    sample = scratch.first()
    given = sample.frames[1]["phase"].label
    other = next(c for c in get_run_config(scratch, "k").classes if c != given)
    sample["k_errors"] = fo.TemporalDetections(
        detections=[
            fo.TemporalDetection(label="mislabel", support=[1, 10], mean_csl=3.0, max_csl=4.0, given_label=given,
                                 suggested_label=other, proposed_labels=[other] * 3, evidence=9.0)
        ]
    )  # fmt: skip
    sample.save()
    before = snapshot(scratch)
    with pytest.raises(fcsl.CSLError, match="one of the run's classes per frame"):
        fcsl.review_segment(scratch, "k", sample.id, 1, 10, "accept")
    assert snapshot(scratch) == before

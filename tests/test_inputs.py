"""Other label layouts and sampling: TemporalDetections labels, frame stride."""

import fiftyone as fo
import fiftyone_csl as fcsl
import numpy as np
from _common import FAST
from fiftyone_csl.plugin.core import metrics
from fiftyone_csl.plugin.core.corrupt import segments_of


def test_temporal_detections_labels(scratch):
    classes = sorted(scratch.distinct("frames.phase.label"))
    detections = []
    for labels in scratch.values("frames.phase.label"):
        idx = np.array([classes.index(label) for label in labels])
        detections.append(
            fo.TemporalDetections(
                detections=[
                    fo.TemporalDetection(label=classes[c], support=[int(a) + 1, int(b)]) for a, b, c in segments_of(idx)
                ]
            )
        )
    scratch.set_values("phases", detections)
    results = fcsl.compute_csl(scratch, "phases", embeddings_field="emb", **FAST)
    assert results.classes == classes
    assert scratch.count("frames.csl") == scratch.count("frames.phase")
    scores, types = metrics.frame_ground_truth(scratch, "phase_error", results)
    assert metrics.detection_report(scores, types)["all"]["auroc"] >= 0.9
    # the decoder works on the frames of sample-level TemporalDetections too
    assert scratch.count("frames.csl_corrected") == scratch.count("frames.phase")
    wrong = np.concatenate([v.wrong_prob for v in results.videos.values()])
    assert metrics.frame_auroc_ap(wrong, types != "")["auroc"] >= 0.85


def test_stride_scores_sampled_frames_and_fills_the_rest(scratch):
    results = fcsl.compute_csl(scratch, "phase", embeddings_field="emb", stride=3, **FAST)
    for video in results.videos.values():
        assert ((video.frame_numbers - 1) % 3 == 0).all()
    assert scratch.count("frames.csl") == scratch.count("frames.phase")
    sample = scratch.first()
    values = sample.frames[2]["csl"], sample.frames[1]["csl"]
    assert values[0] == values[1]  # frame 2 takes frame 1's score (nearest sampled)


def test_in_sample_mode_trains_one_model(scratch):
    results = fcsl.compute_csl(scratch, "phase", embeddings_field="emb", cross_fit=False, epochs=5)
    loss = next(iter(results.videos.values())).trajectory.loss
    assert loss.shape[1] == 5
    import json
    import os

    with open(os.path.join(results.run_dir, "manifest.json")) as f:
        manifest = json.load(f)
    assert len(manifest["folds"]) == 1 and len(manifest["checkpoints"][0]) == 5

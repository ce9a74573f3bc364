"""Segment-level metrics (what a reviewer receives) and boundary fixes."""

import numpy as np
import pytest
from fiftyone_csl.plugin.core import flags, metrics
from fiftyone_csl.plugin.core.flags import SuspectSegment


def _flag(start, stop, error_type, suggested, boundary=None):
    return SuspectSegment("v", start + 1, stop, start, stop, 3.0, 4.0, "x", suggested, error_type, boundary)


def test_error_events_are_runs_of_one_injected_type():
    types = np.array(["", "m", "m", "d", "d", "", "d", ""])
    assert metrics.error_events(types) == [(1, 3, "m"), (3, 5, "d"), (6, 7, "d")]
    assert metrics.error_events(np.array(["", ""])) == []


def test_segment_report_counts_found_events_precise_flags_types_labels_and_boundaries():
    #            0   1   2    3    4    5   6   7   8    9    10
    types = np.array(["", "", "mislabel", "mislabel", "mislabel", "", "", "", "boundary", "boundary", ""])
    clean = np.array(["a", "a", "b", "b", "b", "a", "a", "a", "c", "c", "c"], dtype=object)
    frame_numbers = np.arange(1, 12)
    segments = [
        _flag(2, 5, "mislabel", "b"),  # right type, right label
        _flag(8, 10, "boundary", "c", boundary=10),  # the true change is at index 8 (frame 9): off by one
        _flag(0, 1, "mislabel", "c"),  # a false alarm
    ]
    report = metrics.segment_report([(segments, types, clean, frame_numbers)])
    assert report["events"] == 2 and report["event_recall"] == 1.0
    assert report["flags"] == 3 and report["flag_precision"] == pytest.approx(2 / 3)
    assert report["type_accuracy"] == 1.0 and report["label_accuracy"] == 1.0
    assert report["boundary_error"] == 1.0
    assert report["by_kind"]["mislabel"]["events"] == 1 and report["by_kind"]["boundary"]["event_recall"] == 1.0
    # a wrong type and a wrong suggestion count against the run; a missed event against recall
    segments = [_flag(2, 4, "disorder", "a")]
    report = metrics.segment_report([(segments, types, clean, frame_numbers)])
    assert report["event_recall"] == 0.5 and report["type_accuracy"] == 0.0 and report["label_accuracy"] == 0.0
    assert report["flag_precision"] == 1.0 and np.isnan(report["boundary_error"])


def test_a_shifted_boundary_is_flagged_with_the_models_boundary_as_the_fix():
    """The given labels move a phase change 4 frames late; the models put it
    where it is: the suggestion is that frame, not only a label."""
    truth = np.array([0] * 20 + [1] * 20)
    given = np.array([0] * 24 + [1] * 16)
    probs = np.zeros((40, 2))
    probs[np.arange(40), truth] = 0.9
    probs[np.arange(40), 1 - truth] = 0.1
    scores = -np.log(probs[np.arange(40), given])
    frame_numbers = np.arange(1, 41) * 2  # stride 2: frame numbers are not indices
    segments = flags.suspect_segments("v", frame_numbers, given, scores, probs, ["a", "b"], threshold=1.0)
    assert len(segments) == 1
    (segment,) = segments
    assert segment.error_type == "boundary" and segment.suggested_label == "b"
    assert (segment.start, segment.stop) == (20, 24)
    assert segment.suggested_boundary == frame_numbers[20]
    # and a phase that starts too early: the change belongs later
    given = np.array([0] * 17 + [1] * 23)
    scores = -np.log(probs[np.arange(40), given])
    (segment,) = flags.suspect_segments("v", frame_numbers, given, scores, probs, ["a", "b"], threshold=1.0)
    assert segment.error_type == "boundary" and segment.suggested_boundary == frame_numbers[20]


def test_the_learned_detector_finds_errors_like_the_ones_it_was_shown():
    """Trained on videos whose injected errors it knows, the detector ranks
    the errors of other videos above their clean frames and names their kind."""
    from fiftyone_csl.plugin.core import dynamics
    from fiftyone_csl.plugin.core.replay import Trajectory

    rng = np.random.default_rng(0)

    def video(error_kind):
        labels = np.repeat([0, 1, 2], 40)
        types = np.full(120, "", dtype=object)
        loss = rng.gamma(1.0, 0.2, size=(120, 10))
        if error_kind == "mislabel":  # a long run of persistently high loss inside a phase
            types[50:65] = "mislabel"
            loss[50:65] += 2.5
        else:  # a few frames at a change of phase whose loss falls late
            types[78:82] = "boundary"
            loss[78:82] += np.linspace(3.0, 0.5, 10)
        probs = np.full((120, 3), 0.05)
        probs[np.arange(120), labels] = 0.9
        traj = Trajectory(loss=loss, margin=-loss + 1.0, final_probs=probs, mean_probs=probs)
        return dynamics.frame_features(traj, labels), types

    train = [video(k) for k in ["mislabel", "boundary"] * 6]
    test = [video(k) for k in ["mislabel", "boundary"] * 3]
    model = dynamics.fit_detector([x for x, _ in train], [t for _, t in train], seed=0)
    prob = np.concatenate([dynamics.detect(model, x)[0] for x, _ in test])
    kind = np.concatenate([dynamics.detect(model, x)[1] for x, _ in test])
    truth = np.concatenate([t for _, t in test]).astype(str)
    assert metrics.frame_auroc_ap(prob, truth != "")["auroc"] > 0.95
    assert (kind[truth != ""] == truth[truth != ""]).mean() > 0.8

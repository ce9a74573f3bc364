"""The simulation over arrays: the precision estimate from the recall of
injected errors, and the learned error probability of ``compute_csl_arrays``."""

import fiftyone_csl as fcsl
import numpy as np
import pytest
from fiftyone_csl.plugin.core import metrics, simulation
from fiftyone_csl.plugin.core.corrupt import inject_per_sequence
from fiftyone_csl.plugin.core.sequences import VideoSequence


def _video(name, error, blip):
    """100 frames of 2 classes; CSL 4 on a 10-frame error, 1.5 on a 3-frame blip."""
    labels = np.repeat([0, 1], 50)
    csl = np.full(100, 0.1)
    types = np.full(100, "", dtype=object)
    if error is not None:
        csl[error : error + 10] = 4.0
        types[error : error + 10] = "mislabel"
    if blip is not None:
        csl[blip : blip + 3] = 1.5
    probs = np.full((100, 2), 0.05)
    probs[np.arange(100), 1 - labels] = 0.95 if error is None else 0.05
    probs[np.arange(100), labels] = 0.95
    seq = VideoSequence(name, None, np.arange(1, 101), labels)
    return seq, csl, probs, types


def test_precision_estimate_counts_the_errors_from_the_recall_of_injected_ones():
    """10 videos, each with one real error and one false alarm; the
    simulation finds every injected error. At ln C half of the 20 flags are
    errors; the aimed threshold drops the false alarms."""
    real = [_video(f"v{i}", 20, 70)[:3] for i in range(10)]
    simulated = [_video(f"v{i}", 20, 70) for i in range(10)]
    base = float(np.log(2))
    report = simulation.precision_report(real, simulated, ["a", "b"], base, 0.85)
    assert report["flags"][0] == 20 and report["recall"][0] == 1.0
    assert report["errors_estimate"] == pytest.approx(10.0)
    assert simulation.estimated_precision(report, base) == pytest.approx(0.5)
    assert report["aimed_threshold"] > base and report["reached_target"]
    assert report["estimated_precision"] == pytest.approx(1.0)
    assert report["threshold"] == report["aimed_threshold"]
    kept = simulation.precision_report(real, simulated, ["a", "b"], base, 0.85, threshold=base)
    assert kept["threshold"] == base and kept["estimated_precision"] == pytest.approx(0.5)


def test_clean_labels_get_an_estimated_precision_of_zero():
    """No real errors: the flags at ln C are all false alarms."""
    real = [_video(f"v{i}", None, 70)[:3] for i in range(6)]
    simulated = [_video(f"v{i}", 20, 70) for i in range(6)]
    report = simulation.precision_report(real, simulated, ["a", "b"], float(np.log(2)), 0.85)
    assert report["errors_estimate"] == 0.0
    assert simulation.estimated_precision(report, float(np.log(2))) == 0.0


CLASSES = ["a", "b", "c", "d", "e"]


def _arrays(seed=0, videos=12):
    """Procedures of 5 phases done twice (10 segments of 15 frames), one
    error of each kind per video (about a quarter of the frames wrong)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 16)) * 2.0
    clean = [np.repeat(np.tile(np.arange(5), 2), 15) for _ in range(videos)]
    features = [centres[y] + rng.normal(size=(len(y), 16)) for y in clean]
    given, types = inject_per_sequence(clean, ("mislabel", "disorder", "boundary"), (0.15, 0.3), 5, rng)
    return features, given, types


def test_simulation_on_arrays_writes_error_probabilities_that_find_the_errors():
    features, given, types = _arrays()
    results = fcsl.compute_csl_arrays(
        features, given, CLASSES, epochs=15, folds=3, seed=0, simulation=True, progress=False
    )
    report = results.simulation
    assert report is not None and results.threshold == report["threshold"] >= np.log(5)
    probs = [results.videos[n].scores["error_prob"] for n in results.videos]
    assert all(len(p) == len(g) and np.all((p >= 0) & (p <= 1)) for p, g in zip(probs, given))
    truth = np.concatenate(types).astype(str) != ""
    assert metrics.frame_auroc_ap(np.concatenate(probs), truth)["auroc"] > 0.85
    assert 0.0 <= report["estimated_precision"] <= 1.0
    segments = metrics.segment_report(
        (results.videos[n].segments, t, None, results.videos[n].frame_numbers) for n, t in zip(results.videos, types)
    )
    assert segments["event_recall"] > 0.7 and segments["flag_precision"] > 0.7, segments
    for v in results.videos.values():  # the decoded labels are those of the suspects at the new threshold
        for seg in v.segments:
            if seg.proposed is not None:
                assert list(v.decoded[seg.start : seg.stop]) == list(seg.proposed), (v.sample_id, seg.first)
        assert len(v.wrong_prob) == len(v.labels) and np.all((v.wrong_prob >= 0) & (v.wrong_prob <= 1))


def test_simulation_needs_every_frame_labelled():
    features, given, _ = _arrays(videos=6)
    given[0] = given[0].copy()
    given[0][5:10] = -1
    with pytest.raises(fcsl.CSLError, match="every scored frame labelled"):
        fcsl.compute_csl_arrays(features, given, epochs=2, folds=3, simulation=True, progress=False)


def _decoded_video(name, mislabel, blip, seed):
    """A 4-phase chain of 60 frames; the models point at the true labels.
    ``mislabel``: 7 frames of the given labels wrong (an error the models
    see); ``blip``: the last 4 frames of the third phase, where the models
    lean to the next one (a false alarm of low evidence)."""
    truth = np.repeat(np.arange(4), 15)
    given = truth.copy()
    types = np.full(60, "", dtype=object)
    rng = np.random.default_rng(seed)
    probs = np.full((60, 4), 0.02) + rng.uniform(0, 0.02, (60, 4))
    probs[np.arange(60), truth] = 0.9
    if mislabel:
        given[20:27] = 0
        types[20:27] = "mislabel"
    if blip:
        probs[41:45, 2] = 0.3
        probs[41:45, 3] = 0.6
    probs /= probs.sum(1, keepdims=True)
    csl = -np.log(probs[np.arange(60), given])
    return VideoSequence(name, None, np.arange(1, 61), given), csl, probs, types


def test_the_decoders_flags_are_judged_over_their_evidence_and_the_aim_drops_weak_false_alarms():
    """Each run video has one real error (strong evidence) and one weak false
    alarm; the simulation finds every injected error. At evidence 0 half of
    the flags are errors; the aimed evidence threshold keeps the real errors
    only, and the run then flags with it."""
    from fiftyone_csl.plugin.core import procedure as fcproc

    classes = ["a", "b", "c", "d"]
    real = [_decoded_video(f"v{i}", True, True, i)[:3] for i in range(8)]
    simulated = [_decoded_video(f"v{i}", True, True, i) for i in range(8)]
    counts = fcproc.ProcedureCounts.of_runs([fcproc.label_runs(seq.labels) for seq, *_ in real], 4)
    base = float(np.log(4))
    report = simulation.evidence_report(real, simulated, classes, base, 0.85, counts, counts, bias=0.0)
    assert report["knob"] == "evidence" and report["flags"][0] == 16 and report["recall"][0] == 1.0
    assert report["errors_estimate"] == pytest.approx(8.0)
    weak = report["flags"].index(8)  # the first evidence threshold that drops the false alarms
    assert report["min_evidence"] == report["aimed_evidence"] == report["thresholds"][weak] > 0
    assert report["estimated_precision"] == pytest.approx(1.0) and report["reached_target"]
    # the estimate describes the run's CSL threshold only
    assert simulation.estimated_precision(report, base + 1) is None
    # a bias lowers every estimate; when none reaches the target the aim is the strictest of the best that flag
    biased = simulation.evidence_report(real, simulated, classes, base, 0.85, counts, counts, bias=0.2)
    assert biased["estimated_precision"] == pytest.approx(0.8) and not biased["reached_target"]
    flagging = [t for t, n in zip(biased["thresholds"], biased["flags"]) if n]
    assert biased["min_evidence"] == flagging[-1] > report["min_evidence"]
    # a threshold the user chose keeps the default evidence, and its estimate is reported
    kept = simulation.evidence_report(real, simulated, classes, base, 0.85, counts, counts, aim=False, bias=0.0)
    assert kept["min_evidence"] == 8.0 and kept["estimated_precision"] is not None

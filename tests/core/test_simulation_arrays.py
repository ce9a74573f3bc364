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


def test_simulation_needs_every_frame_labelled():
    features, given, _ = _arrays(videos=6)
    given[0] = given[0].copy()
    given[0][5:10] = -1
    with pytest.raises(fcsl.CSLError, match="every scored frame labelled"):
        fcsl.compute_csl_arrays(features, given, epochs=2, folds=3, simulation=True, progress=False)

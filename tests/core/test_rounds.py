"""The second round of training over plain arrays: which frames it leaves out
of the loss, when ``rounds="auto"`` trains it, and that the decoder then reads
its models while CSL stays the first round's (no database)."""

import numpy as np
import pytest
import torch
from fiftyone_csl import CSLError, compute_csl_arrays
from fiftyone_csl.models.losses import IGNORE_INDEX
from fiftyone_csl.plugin.core import edits as fcedits
from fiftyone_csl.plugin.core import procedure as fcproc
from fiftyone_csl.plugin.core import rounds as fcrounds
from fiftyone_csl.plugin.core import train as fctrain
from fiftyone_csl.plugin.core.flags import SuspectSegment
from fiftyone_csl.plugin.core.manifest import Manifest
from fiftyone_csl.plugin.core.results import VideoScores
from fiftyone_csl.plugin.core.sequences import VideoSequence

C, D = 4, 12


def _data(seed=0, videos=9, noise=0.6):
    """Chains of ``C`` phases whose features tell the phases apart; every
    other video has 15 frames of one phase labelled as the next."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1, (C, D)) * 2
    features, given, truth = [], [], []
    for v in range(videos):
        clean = np.repeat(np.arange(C), rng.integers(18, 30, C))
        labels = clean.copy()
        if v % 2 == 0:
            a = int(rng.integers(0, len(labels) - 20))
            labels[a : a + 15] = (labels[a : a + 15] + 1) % C
        features.append((means[clean] + rng.normal(0, noise, (len(clean), D))).astype(np.float32))
        given.append(labels)
        truth.append(clean)
    return features, given, truth


def _segment(start, stop, mean, proposed=None, kind="mislabel"):
    return SuspectSegment("v", start + 1, stop, start, stop, mean, mean, "a", "b", kind, proposed=proposed)


def test_the_mask_is_the_frames_a_suspect_at_the_threshold_would_change():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    video = VideoScores("v", np.arange(1, 11), labels, {}, [
        _segment(0, 3, 2.0, proposed=np.array([0, 1, 1])),  # frame 0 keeps its label
        _segment(3, 6, 0.5, proposed=np.array([2, 2, 2])),  # below the threshold
        _segment(6, 9, 3.0, proposed=np.array([3, 3, 3]), kind="unseen_class"),  # says nothing of the label
        _segment(9, 10, 2.0),  # the CSL rules' suspect: no proposal, every frame
    ])  # fmt: skip
    assert fcrounds.suspect_mask(video, threshold=1.0).tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0, 1]


def test_a_masked_sequence_ignores_exactly_the_masked_scored_frames_also_with_sparse_labels():
    s = VideoSequence("v", None, np.arange(1, 9), np.array([0, 0, 1, 1, 2, 2, 3, 3]), np.zeros((8, 2), np.float32))
    scored = VideoScores("v", np.array([2, 4, 6]), np.array([0, 1, 2]), {}, [])  # sparse: frames 2, 4, 6 labelled
    out = fcrounds.masked_sequence(s, scored, np.array([False, True, True]))
    assert out.labels.tolist() == [0, 0, 1, IGNORE_INDEX, 2, IGNORE_INDEX, 3, 3]
    assert s.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # the run's own sequence is untouched
    assert out.features is s.features


def test_training_with_sparse_labels_gives_an_ignored_frame_no_weight(monkeypatch, tmp_path):
    seen = []
    original = fctrain.weighted_cross_entropy

    def spy(logits, targets, weights):
        seen.append((targets.clone(), weights.clone()))
        return original(logits, targets, weights)

    monkeypatch.setattr(fctrain, "weighted_cross_entropy", spy)
    labels = np.array([0, 1, IGNORE_INDEX, 1, 0, IGNORE_INDEX])
    s = VideoSequence("v", None, np.arange(1, 7), labels, np.random.default_rng(0).normal(size=(6, 3)).astype("f4"),
                      labelled=np.array([1, 1, 1, 1, 0, 1], bool))  # fmt: skip
    config = fctrain.TrainConfig(model="mlp", epochs=1, folds=1, cross_fit=False, mgw_sigma=float("inf"))
    manifest = Manifest(None, None, None, ["a", "b"], 3, {}, config.to_dict(), [["v"]])
    fctrain.train_fold([s], 3, 2, config, str(tmp_path), 0, manifest, "cpu")
    targets, weights = seen[0]
    ignored = targets[0] == IGNORE_INDEX
    assert ignored.sum() == 2 and torch.all(weights[0][ignored] == 0)
    assert torch.all(weights[0][~ignored] == 1)  # the unlabelled frame 5 keeps its full weight (sigma inf)


@pytest.mark.parametrize("bad", [0, 3, True, "two", None, 2.0 + 0.5])
def test_rounds_takes_1_2_or_auto(bad):
    features, given, _ = _data(videos=4)
    with pytest.raises(CSLError, match="rounds"):
        compute_csl_arrays(features, given, epochs=1, folds=2, rounds=bad, progress=False)


def test_the_second_round_is_what_the_decoder_reads_and_csl_stays_the_first_rounds(tmp_path):
    features, given, truth = _data()
    kw = dict(epochs=6, folds=3, seed=3, progress=False, model="mlp")
    one = compute_csl_arrays(features, given, rounds=1, run_dir=str(tmp_path / "one"), **kw)
    two = compute_csl_arrays(features, given, rounds=2, run_dir=str(tmp_path / "two"), **kw)
    assert one.second_round["ran"] is False and one.second_round["reason"] == "rounds=1"
    assert two.second_round["ran"] is True and two.second_round["masked_frames"] > 0
    manifest = Manifest.load(str(tmp_path / "two"))
    second = manifest.second_round["checkpoints"]
    assert [len(c) for c in second] == [6, 6, 6] and all(r.startswith("round_2/") for c in second for r in c)
    for relpath in (r for c in second for r in c):  # listed and hashed like the first round's
        manifest.verified_path(str(tmp_path / "two"), relpath)
    counts = fcproc.ProcedureCounts.of_runs([fcproc.label_runs(g) for g in given], C)
    changed = 0
    for name in one.videos:
        a, b = one.videos[name], two.videos[name]
        np.testing.assert_allclose(a.scores["csl"], b.scores["csl"], rtol=1e-5)  # the same first round
        tb = b.trajectory
        assert tb.decode_probs is not None and one.videos[name].trajectory.decode_probs is None
        changed += not np.allclose(tb.decode_probs, tb.mean_probs, atol=1e-3)
        found, decoded, _, _ = fcedits.decode_suspects(
            name, b.frame_numbers, b.labels, b.scores["csl"], tb.decode_probs, counts, one.classes, two.threshold
        )
        assert np.array_equal(decoded, b.decoded)  # the decoder read the second round
        assert [(s.first, s.last) for s in found] == [(s.first, s.last) for s in b.segments]
    assert changed >= len(one.videos) // 2


def test_auto_trains_a_second_round_only_where_the_first_fits_the_labels_it_keeps():
    features, given, _ = _data()
    kw = dict(epochs=6, folds=3, seed=3, progress=False)
    fits = compute_csl_arrays(features, given, **kw).second_round
    assert fits["ran"] is True and fits["fit"] >= fcrounds.FIT
    noisy, given, _ = _data(noise=6.0)  # features that barely tell the phases apart
    weak = compute_csl_arrays(noisy, given, **kw).second_round
    assert weak["ran"] is False and weak["fit"] < fcrounds.FIT and "fit" in weak["reason"]


def test_the_second_round_fixes_at_least_what_the_first_did_on_learnable_errors():
    """A floor on what it is for: accepting every suggestion leaves no more
    wrong frames than the first round's suggestions did, and most are fixed."""
    features, given, truth = _data(seed=5, videos=12, noise=1.0)
    kw = dict(epochs=10, folds=3, seed=1, progress=False)
    left = {}
    for rounds in (1, 2):
        results = compute_csl_arrays(features, given, rounds=rounds, **kw)
        wrong = 0
        for name, g, t in zip(results.videos, given, truth):
            v, fixed = results.videos[name], g.copy()
            for s in v.segments:
                fixed[s.start : s.stop] = s.proposed
            wrong += int((fixed != t).sum())
        left[rounds] = wrong
    before = sum(int((g != t).sum()) for g, t in zip(given, truth))
    assert left[2] <= left[1] and left[2] <= 0.25 * before, (before, left)

"""Scores on plain sequences with known errors, and their degenerate cases."""

import fiftyone_csl as fcsl
import numpy as np
import pytest
import torch
from fiftyone_csl.plugin.core import metrics, scores
from fiftyone_csl.plugin.core.corrupt import inject_into_sequences
from fiftyone_csl.plugin.core.errors import CSLError
from fiftyone_csl.plugin.core.replay import Trajectory

KINDS = ("mislabel", "disorder", "boundary")


def _procedure(num_videos=10, dim=12, seed=0):
    """Videos of 4 phases in a fixed order; each phase has its own feature
    centre, with noise so that single frames are sometimes ambiguous."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, dim)) * 2.0
    features, labels = [], []
    for _ in range(num_videos):
        lengths = rng.integers(15, 30, size=4)
        y = np.repeat(np.arange(4), lengths)
        features.append((centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32))
        labels.append(y)
    return features, labels


@pytest.fixture(scope="module")
def audited_arrays():
    features, clean = _procedure()
    given, types = inject_into_sequences(clean, KINDS, 0.15, 4, np.random.default_rng(1))
    results = fcsl.compute_csl_arrays(
        features, given, epochs=12, folds=5, seed=3, peer_scores=scores.ALL_PEERS, progress=False
    )
    return results, given, types


# Every peer is a sensible detector of label errors on this fixture; the floor
# is loose (chance is 0.5) because this checks direction, not quality.
FLOOR = 0.7


@pytest.mark.parametrize("name", ["csl", *scores.ALL_PEERS])
@pytest.mark.parametrize("kind", ["mislabel", "disorder"])
def test_every_score_ranks_injected_errors_above_clean_frames(audited_arrays, name, kind):
    results, _, types = audited_arrays
    values = np.concatenate([results.videos[n].scores[name] for n in results.videos])
    all_types = np.concatenate(types)
    keep = (all_types == "") | (all_types == kind)
    auroc = metrics.frame_auroc_ap(values[keep], all_types[keep] == kind)["auroc"]
    assert auroc > FLOOR, f"{name} on {kind}: AUROC {auroc:.3f}"


@pytest.mark.parametrize("name", ["csl", "csl_smooth", "csl_window_max"])
def test_csl_family_finds_boundary_shifts(audited_arrays, name):
    results, _, types = audited_arrays
    values = np.concatenate([results.videos[n].scores[name] for n in results.videos])
    all_types = np.concatenate(types)
    keep = (all_types == "") | (all_types == "boundary")
    assert metrics.frame_auroc_ap(values[keep], all_types[keep] == "boundary")["auroc"] > 0.6


def test_flagged_segments_get_error_types_and_eda(audited_arrays):
    results, given, types = audited_arrays
    names = list(results.videos)
    segments = results.segments()
    assert segments and {s.error_type for s in segments} <= set(KINDS)
    accuracy = metrics.type_accuracy(segments, dict(zip(names, types)))
    assert accuracy["segments"] > 0
    videos = [(g, t != "", results.videos[n].scores["csl"]) for n, g, t in zip(names, given, types)]
    assert metrics.eda(videos, results.threshold) > 0.7
    assert metrics.eda_sweep(videos)["eda"] >= metrics.eda(videos, results.threshold)


@pytest.mark.parametrize("model", ["transformer", "tcn", "mlp"])
def test_stacked_replay_equals_the_checkpoint_by_checkpoint_loop(tmp_path, model):
    """All checkpoints in one pass, video by video, give the losses of the
    plain loop (load a checkpoint, run the videos, next) within 1e-5, and
    the plain loop does not depend on how videos are batched."""
    from fiftyone_csl.plugin.core import train
    from fiftyone_csl.plugin.core.manifest import Manifest
    from fiftyone_csl.plugin.core.replay import Replayer, replay_fold_naive
    from fiftyone_csl.plugin.core.sequences import sequences_from_arrays

    features, labels = _procedure(num_videos=5)
    seqs = sequences_from_arrays(features, labels)
    assert max(len(s) for s in seqs) > 2 * 40  # several windows, and a remainder
    config = train.TrainConfig(model=model, epochs=4, folds=2, max_frames=40)
    manifest = Manifest(None, None, None, list("abcd"), 12, {}, config.to_dict(), [])
    run_dir = str(tmp_path / model)
    ckpts = train.train_fold(seqs, 12, 4, config, run_dir, 0, manifest, torch.device("cpu"))
    one = replay_fold_naive(seqs, ckpts, run_dir, manifest, torch.device("cpu"), batch_size=1)
    many = replay_fold_naive(seqs, ckpts, run_dir, manifest, torch.device("cpu"), batch_size=4)
    replayer = Replayer(run_dir, manifest, "cpu", precision="fp32")
    for s in seqs:
        np.testing.assert_allclose(one[s.sample_id].loss, many[s.sample_id].loss, atol=1e-5, rtol=1e-5)
        stacked = replayer.trajectory(s, [0])
        for name in ("loss", "margin", "final_probs", "mean_probs"):
            np.testing.assert_allclose(
                getattr(stacked, name), getattr(one[s.sample_id], name), atol=1e-5, rtol=1e-5, err_msg=name
            )
    # mixed precision runs the same code path with bfloat16 matmuls: close, not equal
    low = Replayer(run_dir, manifest, "cpu", precision="bf16").trajectory(seqs[0], [0])
    assert np.abs(low.loss - one[seqs[0].sample_id].loss).max() < 0.25
    assert not np.array_equal(low.loss, one[seqs[0].sample_id].loss)


def test_precision_options_are_checked():
    from fiftyone_csl.plugin.core.replay import autocast_context

    with pytest.raises(CSLError, match="precision must be one of"):
        autocast_context("cpu", "fp8")  # the engine's own check, beneath the option checks
    with pytest.raises(CSLError, match="needs a CUDA device"):
        autocast_context("cpu", "fp16")


def test_half_checkpoints_halve_the_files_and_replay_alike(tmp_path):
    from fiftyone_csl.plugin.core import train
    from fiftyone_csl.plugin.core.manifest import Manifest
    from fiftyone_csl.plugin.core.replay import Replayer
    from fiftyone_csl.plugin.core.sequences import sequences_from_arrays

    features, labels = _procedure(num_videos=4)
    seqs = sequences_from_arrays(features, labels)
    out, sizes = {}, {}
    for half in (False, True):
        config = train.TrainConfig(epochs=3, folds=2, half_checkpoints=half)
        run_dir = str(tmp_path / str(half))
        manifest = Manifest(None, None, None, list("abcd"), 12, {}, config.to_dict(), [])
        train.train_fold(seqs, 12, 4, config, run_dir, 0, manifest, torch.device("cpu"))
        sizes[half] = manifest.checkpoint_bytes(run_dir)
        out[half] = Replayer(run_dir, manifest, "cpu", "fp32").trajectory(seqs[0], [0]).loss
    assert sizes[True] < 0.6 * sizes[False]
    np.testing.assert_allclose(out[True], out[False], atol=0.05)


def test_one_checkpoint_and_identical_checkpoints_give_defined_scores():
    loss = np.array([[0.1], [3.0]], dtype=np.float32)
    t = Trajectory(loss=loss, margin=np.array([[2.0], [-1.0]]), final_probs=np.full((2, 2), 0.5), mean_probs=None)
    out = scores.compute_scores(t, ["csl", *scores.ALL_PEERS], labels=np.array([0, 1]))
    for name, values in out.items():
        assert np.isfinite(values).all(), name
    np.testing.assert_allclose(out["csl"], out["last_loss"])
    assert out["forgetting"].tolist() == [0.0, 2.0]  # never learnt: E + 1
    identical = Trajectory(
        loss=np.repeat(loss, 4, axis=1),
        margin=np.repeat(t.margin, 4, axis=1),
        final_probs=t.final_probs,
        mean_probs=None,
    )
    same = scores.compute_scores(identical, ["csl", "cartography_variability", "forgetting"])
    np.testing.assert_allclose(same["csl"], out["csl"])
    assert (same["cartography_variability"] == 0).all() and same["forgetting"].tolist() == [0.0, 5.0]


def test_video_shorter_than_the_smoothing_window():
    t = Trajectory(
        loss=np.array([[1.0], [2.0], [6.0]]), margin=np.zeros((3, 1)), final_probs=np.full((3, 2), 0.5), mean_probs=None
    )
    smooth = scores.csl_smooth(t, window=9)
    window_max = scores.csl_window_max(t, window=9)
    assert smooth.shape == (3,) and np.isfinite(smooth).all()
    assert window_max.tolist() == [6.0, 6.0, 6.0]


def test_class_absent_from_a_training_fold():
    features, labels = _procedure(num_videos=6)
    labels = [y.copy() for y in labels]
    labels[0][:5] = 4  # class 4 exists in one video only: its fold trains without it
    results = fcsl.compute_csl_arrays(features, labels, epochs=3, folds=3, progress=False)
    assert len(results.classes) == 5
    for video in results.videos.values():
        assert np.isfinite(video.scores["csl"]).all()
    first = results.videos[next(iter(results.videos))]
    assert first.scores["csl"][:5].mean() > np.median(first.scores["csl"])  # an unseen class looks wrong


def test_plain_sequence_input_errors():
    with pytest.raises(fcsl.CSLError, match="inconsistent dimension"):
        fcsl.compute_csl_arrays([np.zeros((5, 3)), np.zeros((5, 4))], [np.zeros(5, int), np.ones(5, int)], folds=2)
    with pytest.raises(fcsl.CSLError, match="NaN"):
        x = np.zeros((5, 3))
        x[0, 0] = np.nan
        fcsl.compute_csl_arrays([x, np.zeros((5, 3))], [np.zeros(5, int), np.ones(5, int)], folds=2)
    with pytest.raises(fcsl.CSLError, match="mistakenness"):
        fcsl.compute_csl_arrays(
            [np.zeros((5, 3))] * 2, [np.zeros(5, int), np.ones(5, int)], peer_scores=["mistakenness"]
        )

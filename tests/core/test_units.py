"""Units of the engine on plain arrays."""

import numpy as np
import pytest
import torch
from fiftyone_csl.models import HEADS, build_head
from fiftyone_csl.plugin.core import corrupt, flags, train
from fiftyone_csl.plugin.core.errors import CSLError
from fiftyone_csl.plugin.core.manifest import Manifest
from fiftyone_csl.plugin.runs.fields import spread_to_labelled_frames


def test_spread_takes_nearest_sampled_value():
    sampled = np.array([1, 4, 7])
    values = np.array([10.0, 40.0, 70.0])
    labelled = np.arange(1, 10)
    out = spread_to_labelled_frames(sampled, values, labelled)
    np.testing.assert_array_equal(out, [10, 10, 40, 40, 40, 70, 70, 70, 70])


def test_segments_merge_small_gaps_and_suggest_labels():
    labels = np.array([0] * 10 + [1] * 10)
    scores = np.zeros(20)
    scores[3:6] = 5
    scores[7:9] = 5  # gap of one frame: merged
    probs = np.tile([1.0, 0.0], (20, 1))
    probs[3:9] = [0.0, 1.0]
    segs = flags.suspect_segments("v", np.arange(1, 21), labels, scores, probs, ["a", "b"], threshold=1.0)
    assert [(s.first, s.last) for s in segs] == [(4, 9)]
    assert segs[0].given_label == "a" and segs[0].suggested_label == "b"


def test_disorder_and_mislabel_injection_ground_truth():
    rng = np.random.default_rng(0)
    clean = np.repeat(np.arange(5), 20)
    swapped, mask = corrupt.inject_disorder(clean, rng)
    assert mask.sum() == 40 and (swapped[mask] != clean[mask]).all() and (swapped[~mask] == clean[~mask]).all()
    mislabelled, mask = corrupt.inject_mislabel(clean, 5, rng)
    assert 2 <= mask.sum() <= 20 and (mislabelled[mask] != clean[mask]).all()
    assert (mislabelled[~mask] == clean[~mask]).all()
    shifted, mask = corrupt.inject_boundary(clean, rng)
    assert mask.any() and (shifted[mask] != clean[mask]).all()


def test_folds_cover_every_video_once():
    ids = [f"v{i}" for i in range(11)]
    folds = train.assign_folds(ids, 4, seed=1)
    assert sorted(sum(folds, [])) == sorted(ids)
    assert train.assign_folds(ids, 4, seed=1) == folds
    with pytest.raises(CSLError):
        train.assign_folds(ids[:3], 4, seed=1)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_heads_map_sequences_to_logits(name):
    head = build_head(name, in_dim=8, num_classes=3).eval()
    x = torch.randn(2, 17, 8)
    assert head(x).shape == (2, 17, 3)


def test_checkpoint_altered_after_training_is_refused(tmp_path):
    manifest = Manifest(None, None, None, ["a", "b"], 4, {}, {}, [])
    head = build_head("mlp", in_dim=4, num_classes=2)
    torch.save(head.state_dict(), tmp_path / "epoch_0001.pt")
    manifest.record_file(str(tmp_path), "epoch_0001.pt")
    assert manifest.verified_path(str(tmp_path), "epoch_0001.pt")
    with open(tmp_path / "epoch_0001.pt", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(CSLError, match="sha256"):
        manifest.verified_path(str(tmp_path), "epoch_0001.pt")
    with pytest.raises(CSLError, match="not listed"):
        manifest.verified_path(str(tmp_path), "other.pt")


def test_training_and_replay_on_plain_sequences_find_flipped_labels(tmp_path):
    from fiftyone_csl.plugin.core import scores
    from fiftyone_csl.plugin.core.replay import replay_fold_naive
    from fiftyone_csl.plugin.core.sequences import sequences_from_arrays

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16)) * 3
    feats, labs, masks = [], [], []
    for _ in range(6):
        y = np.repeat([0, 1, 2], 30)
        x = centers[y] + rng.normal(size=(90, 16))
        flipped = np.zeros(90, bool)
        flipped[40:48] = True
        y = y.copy()
        y[flipped] = 2
        feats.append(x.astype(np.float32))
        labs.append(y)
        masks.append(flipped)
    seqs = sequences_from_arrays(feats, labs)
    config = train.TrainConfig(model="transformer", epochs=15, folds=3)
    folds = train.assign_folds([s.sample_id for s in seqs], 3, seed=0)
    manifest = Manifest(None, None, None, ["a", "b", "c"], 16, {}, config.to_dict(), [])
    by_id = {s.sample_id: s for s in seqs}
    csl, truth = [], []
    for k, members in enumerate(folds):
        train_set = [by_id[i] for i in train.training_ids(folds, k, True)]
        ckpts = train.train_fold(train_set, 16, 3, config, str(tmp_path), k, manifest, torch.device("cpu"))
        assert len(ckpts) == 15
        out = replay_fold_naive([by_id[i] for i in members], ckpts, str(tmp_path), manifest, torch.device("cpu"))
        for sid in members:
            assert out[sid].loss.shape == (90, 15)
            csl.append(scores.csl(out[sid]))
            truth.append(masks[seqs.index(by_id[sid])])
    from fiftyone_csl.plugin.core.metrics import frame_auroc_ap

    assert frame_auroc_ap(np.concatenate(csl), np.concatenate(truth))["auroc"] > 0.95


def test_feature_statistics_streamed_video_by_video_equal_those_of_all_features_at_once():
    from fiftyone_csl.models import normalize
    from fiftyone_csl.models.normalize import FeatureNorm

    rng = np.random.default_rng(0)
    videos = [rng.normal(5.0, 3.0, size=(n, 16)).astype(np.float32) for n in (1, 40, 7, 300, 0, 2)]
    whole = torch.from_numpy(np.concatenate(videos))
    streamed = FeatureNorm(16)
    normalize.BLOCK_ROWS, saved = 64, normalize.BLOCK_ROWS  # long videos are split into blocks too
    try:
        streamed.fit_chunks(videos)
    finally:
        normalize.BLOCK_ROWS = saved
    torch.testing.assert_close(streamed.mean, whole.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(streamed.std, whole.std(0), rtol=1e-5, atol=1e-5)
    one = FeatureNorm(16)
    one.fit_chunks([videos[0]])  # a single frame: its mean, and the std left at one
    torch.testing.assert_close(one.mean, torch.from_numpy(videos[0][0]))
    assert torch.equal(one.std, torch.ones(16))

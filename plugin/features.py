"""Frame features: from a FiftyOne embeddings field or from a backbone.

Backbone features are computed on frames decoded with PyAV at a stride and
cached on disk, keyed by the video file's sha256, the backbone and the stride,
so a second run (or a second run key) on the same files decodes nothing.
"""

import logging
import os
import time

import numpy as np
import torch

from ..models.backbones import BACKBONES, build_backbone
from .sequences import VideoSequence
from .utils import CSLError, atomic_save_npz, sha256_file

logger = logging.getLogger(__name__)


class FeatureStats:
    """Where feature extraction spends its time: decoding (with resizing)
    and the backbone, in seconds, over the frames that were not cached."""

    def __init__(self):
        self.frames = 0
        self.decode_seconds = 0.0
        self.backbone_seconds = 0.0
        self.cached_videos = 0
        self.videos = 0

    def as_dict(self) -> dict:
        def rate(seconds):
            return round(self.frames / seconds, 1) if seconds > 0 else None

        return dict(
            videos=self.videos,
            cached_videos=self.cached_videos,
            frames=self.frames,
            decode_fps=rate(self.decode_seconds),
            backbone_fps=rate(self.backbone_seconds),
        )


def decode_frames(path: str, stride: int = 1, size: int = 224):
    """Yields ``(frame_number, image)`` for frames ``1, 1 + stride, ...``.

    Images are (size, size, 3) uint8 RGB, resized without cropping.
    """
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise CSLError(f"{path} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index % stride == 0:
                    image = frame.to_ndarray(format="rgb24", width=size, height=size)
                    yield index + 1, image
    except av.error.FFmpegError as e:
        raise CSLError(f"cannot decode video {path}: {e}") from None


def check_decodable(paths: list) -> None:
    """Opens every video and decodes its first frame; raises :class:`CSLError`
    naming the first file that fails (a broken file fails here, before any
    work, not in the middle of feature extraction)."""
    for path in paths:
        if next(decode_frames(path, 1, 8), None) is None:
            raise CSLError(f"no frame could be decoded from {path}")


def _cache_path(cache_dir, file_hash, backbone, stride, weights_path):
    tag = backbone if weights_path is None else f"{backbone}-custom"
    return os.path.join(cache_dir, tag, f"{file_hash[:32]}_s{stride}.npz")


@torch.no_grad()
def video_features(
    path: str,
    backbone_model,
    backbone: str,
    stride: int,
    device,
    cache_dir: str | None,
    weights_path: str | None = None,
    batch_size: int = 32,
    stats: FeatureStats | None = None,
):
    """Returns ``(frame_numbers (N,), features (N, D))`` of one video file,
    from the cache when the same file was featurised before.

    The file is decoded once, in a single pass; frames go through the
    backbone in batches of ``batch_size``.
    """
    stats = stats if stats is not None else FeatureStats()
    stats.videos += 1
    cache_file = None
    if cache_dir is not None:
        cache_file = _cache_path(cache_dir, sha256_file(path), backbone, stride, weights_path)
        if os.path.exists(cache_file):
            stats.cached_videos += 1
            with np.load(cache_file) as cached:
                return cached["frame_numbers"], cached["features"]
    size = BACKBONES[backbone].image_size
    numbers, chunks, batch = [], [], []

    def flush():
        started = time.perf_counter()
        images = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).to(device)
        chunks.append(backbone_model(images).float().cpu().numpy())
        stats.backbone_seconds += time.perf_counter() - started
        batch.clear()

    frames = decode_frames(path, stride=stride, size=size)
    while True:
        started = time.perf_counter()
        item = next(frames, None)
        stats.decode_seconds += time.perf_counter() - started
        if item is None:
            break
        numbers.append(item[0])
        batch.append(item[1])
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    stats.frames += len(numbers)
    if not numbers:
        raise CSLError(f"no frame could be decoded from {path}")
    frame_numbers = np.asarray(numbers, dtype=np.int64)
    features = np.concatenate(chunks).astype(np.float32)
    if cache_file is not None:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        atomic_save_npz(cache_file, frame_numbers=frame_numbers, features=features)
    return frame_numbers, features


def check_video_files(sequences: list) -> None:
    """Every video file exists and its first frame decodes."""
    missing = [s.filepath for s in sequences if not s.filepath or not os.path.isfile(s.filepath)]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise CSLError(f"{len(missing)} video file(s) missing on disk: {shown}")
    check_decodable([s.filepath for s in sequences])


def iter_backbone_features(
    paths: list, backbone: str, stride: int, device, cache_dir, weights_path=None, stats: FeatureStats | None = None
):
    """Yields ``(frame_numbers, features)`` of each video file in turn, with
    one backbone built for all of them; logs the decode and backbone rates."""
    stats = stats if stats is not None else FeatureStats()
    model = build_backbone(backbone, weights_path).to(device)
    for path in paths:
        yield video_features(path, model, backbone, stride, device, cache_dir, weights_path, stats=stats)
    s = stats.as_dict()
    logger.info(
        "features: %d video(s), %d from the cache; %d frames decoded at %s fps, backbone at %s fps",
        s["videos"],
        s["cached_videos"],
        s["frames"],
        s["decode_fps"],
        s["backbone_fps"],
    )


def attach_backbone_features(
    sequences: list,
    backbone: str,
    stride: int,
    device,
    cache_dir: str | None,
    weights_path: str | None = None,
    progress_stage=None,
    stats: FeatureStats | None = None,
) -> int:
    """Sets ``sequence.features`` for each (already subsampled) sequence.

    Returns the feature dimension.
    """
    dim = BACKBONES[backbone].dim
    decoded = iter_backbone_features(
        [s.filepath for s in sequences], backbone, stride, device, cache_dir, weights_path, stats
    )
    for sequence, (numbers, features) in zip(sequences, decoded):
        position = {int(n): i for i, n in enumerate(numbers)}
        missing = [int(f) for f in sequence.frame_numbers if int(f) not in position]
        if missing:
            raise CSLError(
                f"video {sequence.filepath} has {len(numbers) * stride} decodable frames "
                f"but labels on frame(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}"
            )
        sequence.features = features[[position[int(f)] for f in sequence.frame_numbers]]
        if progress_stage is not None:
            progress_stage.update()
    return dim


def read_embeddings(samples, embeddings_field: str, sequences: list) -> int:
    """Sets ``sequence.features`` from a frame-level vector field.

    Raises :class:`CSLError` if a scored frame has no vector, if vectors differ
    in dimension or are not 1-D, or if any value is NaN or infinite.
    Returns the feature dimension.
    """
    name = embeddings_field[len("frames.") :] if embeddings_field.startswith("frames.") else embeddings_field
    if name not in (samples.get_frame_field_schema() or {}):
        raise CSLError(f"embeddings_field 'frames.{name}' does not exist")
    by_id = {s.sample_id: s for s in sequences}
    ids, fns, vectors = samples.values(["id", "frames.frame_number", f"frames.{name}"])
    dim = None
    for sid, fn, vec in zip(ids, fns, vectors):
        sequence = by_id.get(sid)
        if sequence is None:
            continue
        lookup = {f: v for f, v in zip(fn or [], vec or []) if v is not None}
        rows = []
        for f in sequence.frame_numbers:
            v = lookup.get(int(f))
            if v is None:
                raise CSLError(f"frame {int(f)} of sample {sid} is labelled but has no '{name}' embedding")
            v = np.asarray(v, dtype=np.float32)
            if v.ndim != 1:
                raise CSLError(f"embeddings must be 1-D vectors; found shape {v.shape} in sample {sid}")
            if dim is None:
                dim = v.shape[0]
            elif v.shape[0] != dim:
                raise CSLError(
                    f"embeddings of inconsistent dimension: {dim} and {v.shape[0]} (sample {sid}, frame {int(f)})"
                )
            rows.append(v)
        features = np.stack(rows)
        if not np.isfinite(features).all():
            raise CSLError(f"embeddings of sample {sid} contain NaN or infinite values")
        sequence.features = features
    return int(dim)


def write_embeddings(samples, embeddings_field: str, sequences: list[VideoSequence]) -> None:
    """Stores each sequence's features as a frame-level vector field."""
    values = {s.sample_id: {int(f): v for f, v in zip(s.frame_numbers, s.features)} for s in sequences}
    samples.set_values(f"frames.{embeddings_field}", values, key_field="id")

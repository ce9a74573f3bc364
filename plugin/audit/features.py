"""Frame features: from a FiftyOne embeddings field or from a backbone.

Backbone features are computed on frames decoded with PyAV at a stride and
cached on disk, keyed by the video file's sha256, the backbone and the stride,
so a second run (or a second run key) on the same files decodes nothing.
"""

import hashlib
import logging
import os
import threading
import time
from queue import Full, Queue

import av
import numpy as np

from ...models.backbones import BACKBONES
from ..core.errors import CSLError
from ..core.utils import atomic_save_npz, sha256_file
from .encoders import LazyEncoder

logger = logging.getLogger(__name__)


class FeatureStats:
    """Where feature extraction spends its time: decoding (with resizing)
    and the backbone, in seconds, over the frames that were not cached."""

    def __init__(self):
        self.frames = 0
        self.decode_seconds = 0.0
        self.backbone_seconds = 0.0
        self.setup_seconds = 0.0
        self.cached_videos = 0
        self.videos = 0
        self.runtime = None

    def as_dict(self) -> dict:
        def rate(seconds):
            return round(self.frames / seconds, 1) if seconds > 0 else None

        return dict(
            runtime=self.runtime,
            videos=self.videos,
            cached_videos=self.cached_videos,
            frames=self.frames,
            decode_fps=rate(self.decode_seconds),
            backbone_fps=rate(self.backbone_seconds),
            setup_seconds=round(self.setup_seconds, 2),
        )


def decode_frames(path: str, stride: int = 1, size: int = 224):
    """Yields ``(frame_number, image)`` for frames ``1, 1 + stride, ...``.

    Images are (size, size, 3) uint8 RGB, resized without cropping.
    """

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


def stream_frame_rate(path: str) -> float | None:
    """The frames per second the file's first video stream declares."""

    try:
        with av.open(path) as container:
            stream = container.streams.video[0] if container.streams.video else None
            rate = (stream.average_rate or stream.base_rate) if stream is not None else None
    except av.error.FFmpegError as e:
        raise CSLError(f"cannot read video {path}: {e}") from None
    return float(rate) if rate else None


def stream_frame_count(path: str) -> int:
    """The number of frames of the file's first video stream: what its
    header declares, else counted by demuxing (no decoding)."""

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise CSLError(f"{path} has no video stream")
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for packet in container.demux(stream) if packet.size)
    except av.error.FFmpegError as e:
        raise CSLError(f"cannot read video {path}: {e}") from None


def check_decodable(paths: list) -> None:
    """Opens every video and decodes its first frame; raises :class:`CSLError`
    naming the first file that fails (a broken file fails here, before any
    work, not in the middle of feature extraction)."""
    for path in paths:
        if next(decode_frames(path, 1, 8), None) is None:
            raise CSLError(f"no frame could be decoded from {path}")


def _digest(frame_numbers, features) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(frame_numbers, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(features, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _read_cache(cache_file: str):
    """``(frame_numbers, features)`` from a cache file whose contents match
    the sha256 stored with them, else None: a file that fails to load, was
    altered or was written by an older version is computed again (and
    replaced), never used as it is."""
    if not os.path.isfile(cache_file):
        return None
    try:
        with np.load(cache_file) as cached:
            numbers, features = cached["frame_numbers"], cached["features"]
            stored = str(cached["sha256"]) if "sha256" in cached.files else None
    except Exception as e:  # a truncated, zeroed or foreign file
        logger.warning("feature cache %s does not load (%s); computing the features again", cache_file, e)
        return None
    if stored != _digest(numbers, features):
        logger.warning("feature cache %s does not match its checksum; computing the features again", cache_file)
        return None
    return numbers, features


def _cache_path(cache_dir, file_hash, backbone, stride, weights_path, runtime="torch"):
    tag = backbone if weights_path is None else f"{backbone}-custom"
    if runtime != "torch":  # features agree within a cosine of 0.999, not bit for bit
        tag = f"{tag}-{runtime}"
    return os.path.join(cache_dir, tag, f"{file_hash[:32]}_s{stride}.npz")


def _batches(frames, batch_size: int, stats: FeatureStats):
    """``(frame_numbers, images (N, H, W, 3))`` batches of a decoded stream,
    with the time spent decoding added to ``stats``."""
    numbers, images = [], []
    while True:
        started = time.perf_counter()
        item = next(frames, None)
        stats.decode_seconds += time.perf_counter() - started
        if item is not None:
            numbers.append(item[0])
            images.append(item[1])
        if images and (item is None or len(images) == batch_size):
            yield numbers, np.stack(images)
            numbers, images = [], []
        if item is None:
            return


def _ahead(batches, depth: int = 2):
    """Runs the ``batches`` generator in a thread, ``depth`` batches ahead of
    the consumer, so decoding overlaps the encoder (PyAV decodes and resizes
    without holding the GIL). Errors are raised in the consumer."""
    done = object()
    queue = Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:  # False once the consumer has stopped: never blocks its join
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce():
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(done)
        except BaseException as e:  # handed to the consumer
            put(e)

    thread = threading.Thread(target=produce, daemon=True, name="fcsl-decode")
    thread.start()
    try:
        while True:
            item = queue.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def video_features(
    path: str,
    encoder,
    backbone: str,
    stride: int,
    cache_dir: str | None,
    weights_path: str | None = None,
    batch_size: int = 32,
    stats: FeatureStats | None = None,
    runtime: str = "torch",
    overlap: bool | None = None,
):
    """Returns ``(frame_numbers (N,), features (N, D))`` of one video file,
    from the cache when the same file was featurised before.

    The file is decoded once, in a single pass, at the backbone's input size;
    frames go through ``encoder`` (:func:`~fiftyone_csl.plugin.encoders.build_encoder`)
    in batches of ``batch_size``, decoded in a thread ahead of it when
    ``overlap`` is True (None: for every runtime but torch, whose threads
    already fill the cores; ``benchmarks/backbone.py``). ``runtime`` names
    the encoder's runtime (it keys the cache).
    """
    stats = stats if stats is not None else FeatureStats()
    stats.videos += 1
    cache_file = None
    if cache_dir is not None:
        cache_file = _cache_path(cache_dir, sha256_file(path), backbone, stride, weights_path, runtime)
        cached = _read_cache(cache_file)
        if cached is not None:
            stats.cached_videos += 1
            return cached
    if hasattr(encoder, "build"):  # a LazyEncoder: its setup is not the backbone's rate
        started = time.perf_counter()
        encoder.build()
        stats.setup_seconds += time.perf_counter() - started
    size = BACKBONES[backbone].image_size
    batches = _batches(decode_frames(path, stride=stride, size=size), batch_size, stats)
    numbers, chunks = [], []
    if overlap is None:
        overlap = runtime != "torch"
    for batch_numbers, images in _ahead(batches) if overlap else batches:
        started = time.perf_counter()
        chunks.append(encoder(images))
        stats.backbone_seconds += time.perf_counter() - started
        numbers.extend(batch_numbers)
    stats.frames += len(numbers)
    if not numbers:
        raise CSLError(f"no frame could be decoded from {path}")
    frame_numbers = np.asarray(numbers, dtype=np.int64)
    features = np.concatenate(chunks).astype(np.float32)
    if cache_file is not None:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        atomic_save_npz(cache_file, frame_numbers=frame_numbers, features=features,
                        sha256=_digest(frame_numbers, features))  # fmt: skip
    return frame_numbers, features


def check_video_files(sequences: list) -> None:
    """Every video file exists and its first frame decodes."""
    missing = [s.filepath for s in sequences if not s.filepath or not os.path.isfile(s.filepath)]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise CSLError(f"{len(missing)} video file(s) missing on disk: {shown}")
    check_decodable([s.filepath for s in sequences])


def iter_backbone_features(
    paths: list,
    backbone: str,
    stride,
    device,
    cache_dir,
    weights_path=None,
    stats: FeatureStats | None = None,
    runtime: str = "auto",
    overlap: bool | None = None,
):
    """Yields ``(frame_numbers, features)`` of each video file in turn, with
    one encoder built for all of them; logs the decode and backbone rates.

    ``stride`` is one int for every file or one per file; ``runtime`` as in
    :func:`~fiftyone_csl.plugin.encoders.build_encoder` (``stats.runtime``
    says which ran).
    """

    stats = stats if stats is not None else FeatureStats()
    strides = [stride] * len(paths) if isinstance(stride, int) else list(stride)
    encoder = LazyEncoder(backbone, weights_path, device, runtime, cache_dir)  # built on the first file not cached
    stats.runtime = encoder.runtime
    for path, step in zip(paths, strides):
        yield video_features(
            path, encoder, backbone, step, cache_dir, weights_path, stats=stats, runtime=encoder.runtime,
            overlap=overlap,
        )  # fmt: skip
    s = stats.as_dict()
    logger.info(
        "features (%s): %d video(s), %d from the cache; %d frames decoded at %s fps, backbone at %s fps",
        s["runtime"],
        s["videos"],
        s["cached_videos"],
        s["frames"],
        s["decode_fps"],
        s["backbone_fps"],
    )


def attach_backbone_features(
    sequences: list,
    backbone: str,
    stride,
    device,
    cache_dir: str | None,
    weights_path: str | None = None,
    progress_stage=None,
    stats: FeatureStats | None = None,
    runtime: str = "auto",
) -> int:
    """Sets ``sequence.features`` for each (already subsampled) sequence;
    ``stride`` is one int or one per sequence.

    Returns the feature dimension.
    """
    dim = BACKBONES[backbone].dim
    strides = [stride] * len(sequences) if isinstance(stride, int) else list(stride)
    decoded = iter_backbone_features(
        [s.filepath for s in sequences], backbone, strides, device, cache_dir, weights_path, stats, runtime
    )
    for sequence, step, (numbers, features) in zip(sequences, strides, decoded):
        position = {int(n): i for i, n in enumerate(numbers)}
        if sequence.labelled is not None:  # a header that overstates the frames: keep what decodes
            keep = np.isin(sequence.frame_numbers, numbers) | sequence.labelled
            if not keep.all():
                sequence.frame_numbers, sequence.labels = sequence.frame_numbers[keep], sequence.labels[keep]
                sequence.labelled = sequence.labelled[keep]
        missing = [int(f) for f in sequence.frame_numbers if int(f) not in position]
        if missing:
            raise CSLError(
                f"video {sequence.filepath} has {len(numbers) * step} decodable frames "
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
    dim = None
    for sid, fn, vec in _vectors_in_groups(samples, name, sequences):
        sequence = by_id.get(sid)
        if sequence is None:
            continue
        lookup = {f: v for f, v in zip(fn or [], vec or []) if v is not None}
        rows = []
        for f in sequence.frame_numbers:
            v = lookup.get(int(f))
            if v is None:
                raise CSLError(
                    f"frame {int(f)} of sample {sid} ({sequence.filepath}) is labelled but has no '{name}' embedding: "
                    f"compute '{name}' on every frame of the video"
                )
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


READ_FRAMES = 20_000  # frames of vectors read per database query: bounds the lists the driver builds


def _vectors_in_groups(samples, name: str, sequences: list):
    """``(sample_id, frame_numbers, vectors)`` of each video of ``samples``,
    read a group of videos of about :data:`READ_FRAMES` frames at a time (a
    vector arrives as a Python list of floats, many times its array size)."""
    ids = samples.values("id")
    sizes = {s.sample_id: len(s) for s in sequences}
    group, frames = [], 0
    for sid in ids + [None]:
        if sid is not None:
            group.append(sid)
            frames += sizes.get(sid, 0)
            if frames < READ_FRAMES:
                continue
        if group:
            view = samples.select(group, ordered=True)
            yield from zip(*view.values(["id", "frames.frame_number", f"frames.{name}"]))
        group, frames = [], 0

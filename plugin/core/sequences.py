"""FiftyOne videos -> per-video label sequences.

A :class:`VideoSequence` holds a video's labelled frame numbers and their class
indices. Labels come from a frame-level ``Classification`` field or from a
sample-level ``TemporalDetections`` field (each detection labels the frames of
its support). Sequences are what the rest of the engine consumes, so
non-FiftyOne data can enter here too (see :func:`sequences_from_arrays`).
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .errors import CSLError


@dataclass
class VideoSequence:
    """One video's labels.

    Attributes:
        sample_id: the FiftyOne sample ID (or any unique name)
        filepath: the video file, if any
        frame_numbers: (T,) 1-based frame numbers that carry a label, ascending
        labels: (T,) class indices into the run's class list
        features: (T, D) frame features once computed, else None
        labelled: (T,) bool, False where a frame has no given label and
            ``labels`` holds the nearest labelled frame's class (sparse
            labels); None when every frame is labelled
        fingerprint: :func:`label_fingerprint` of every labelled frame of
            the video it was read from (kept by the run, so a later check of
            changed labels reads no trajectory); None for arrays
    """

    sample_id: str
    filepath: str | None
    frame_numbers: np.ndarray
    labels: np.ndarray
    features: np.ndarray | None = field(default=None, repr=False)
    labelled: np.ndarray | None = field(default=None, repr=False)
    fingerprint: str | None = None

    def __len__(self):
        return len(self.frame_numbers)


def resolve_classes(raw, classes=None) -> list:
    """The run's class list: ``classes`` if given, else the sorted distinct
    labels. Raises :class:`CSLError` for unknown labels or fewer than 2 classes."""
    seen = sorted({label for *_, names in raw for label in names})
    if not seen:
        raise CSLError("no labelled frames: the label field is empty on every video")
    if classes is None:
        classes = seen
    else:
        classes = list(classes)
        unknown = sorted(set(seen) - set(classes))
        if unknown:
            raise CSLError(f"labels {unknown} are not in classes={classes}")
        if len(set(classes)) != len(classes):
            raise CSLError("classes contains duplicates")
    if len(classes) < 2:
        raise CSLError(f"need at least 2 classes to learn from; found only {classes}")
    return classes


def build_sequences(raw, classes: list, keep_empty: bool = False) -> list:
    """Turns raw labels into :class:`VideoSequence` objects (videos with no
    labelled frame are dropped unless ``keep_empty``)."""
    index = {c: i for i, c in enumerate(classes)}
    sequences = []
    for sid, path, fns, names in raw:
        if len(fns) == 0 and not keep_empty:
            continue
        labels = np.array([index[n] for n in names], dtype=np.int64)
        sequences.append(VideoSequence(sid, path, fns, labels, fingerprint=label_fingerprint(fns, labels)))
    return sequences


def label_fingerprint(frame_numbers, labels) -> str:
    """A digest of a video's labelled frames (their numbers and class
    indices, -1 for a class the run does not know): equal digests, equal
    labels."""
    h = hashlib.sha256(np.ascontiguousarray(frame_numbers, dtype=np.int64).tobytes())
    h.update(b"|")
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


def subsample(sequence: VideoSequence, stride: int) -> VideoSequence:
    """Keeps the labelled frames on the grid ``(frame_number - 1) % stride == 0``
    (every frame when ``stride`` is 1); keeps at least the first frame."""
    if stride == 1:
        return sequence
    keep = (sequence.frame_numbers - 1) % stride == 0
    if not keep.any():
        keep[0] = True
    return VideoSequence(
        sequence.sample_id,
        sequence.filepath,
        sequence.frame_numbers[keep],
        sequence.labels[keep],
        None if sequence.features is None else sequence.features[keep],
        fingerprint=sequence.fingerprint,
    )


def on_grid(sequence: VideoSequence, grid, stride: int) -> VideoSequence:
    """A sparse sequence over the sampled frames ``grid`` (ascending) of a
    video whose labelled frames are ``sequence``'s.

    A sampled frame ``f`` is labelled when a labelled frame lies in its
    stride cell ``[f, f + stride)`` (with ``stride`` 1: when it is labelled
    itself), and takes the first such label; the others hold the nearest
    labelled frame's class, with ``labelled`` False. A video with no label
    gets class 0 everywhere and ``labelled`` all False. Raises
    :class:`CSLError` for a label past the video's last sampled frame.
    """
    grid = np.asarray(grid, dtype=np.int64)
    numbers = np.asarray(sequence.frame_numbers, dtype=np.int64)
    if len(grid) == 0:
        raise CSLError(f"video {sequence.filepath or sequence.sample_id} has no frame to sample")
    given = np.full(len(grid), -1, dtype=np.int64)
    if len(numbers):
        cell = np.searchsorted(grid, numbers, side="right") - 1
        outside = (cell < 0) | (numbers >= grid[np.maximum(cell, 0)] + stride)
        if outside.any():
            raise CSLError(
                f"video {sequence.filepath or sequence.sample_id} has {int(grid[-1]) + stride - 1} frames "
                f"but labels on frame(s) {numbers[outside][:5].tolist()}"
            )
        given[cell[::-1]] = sequence.labels[::-1]  # the first label of a cell is the one kept
    labelled = given >= 0
    labels = nearest_labelled(given, labelled, grid) if labelled.any() else np.zeros(len(grid), dtype=np.int64)
    return VideoSequence(sequence.sample_id, sequence.filepath, grid, labels, None, labelled, sequence.fingerprint)


def given_labels(sequence: VideoSequence) -> np.ndarray:
    """The class indices of the frames that carry a label."""
    return sequence.labels if sequence.labelled is None else sequence.labels[sequence.labelled]


def nearest_labelled(labels: np.ndarray, labelled: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """Each frame's class from the nearest labelled frame (ties: the earlier)."""
    positions = np.arange(len(labels)) if positions is None else np.asarray(positions)
    known = np.flatnonzero(labelled)
    if known.size == 0:
        raise CSLError("a sequence has no labelled frame")
    right = np.clip(np.searchsorted(positions[known], positions), 0, known.size - 1)
    left = np.clip(right - 1, 0, known.size - 1)
    take_left = np.abs(positions - positions[known[left]]) <= np.abs(positions[known[right]] - positions)
    return labels[np.where(take_left, known[left], known[right])]


def sequences_from_arrays(features: list, labels: list, names: list | None = None) -> list:
    """Builds sequences from plain arrays: ``features[i]`` (T_i, D) and
    ``labels[i]`` (T_i,) class indices. Frame numbers are 1..T_i. Float16
    and float32 features, also ``np.load(..., mmap_mode="r")`` ones, are
    used in place.

    A label of -1 marks an unlabelled frame (sparse labels): training weighs
    it by the ``mgw_sigma`` option, and replay scores it against the nearest
    labelled frame's class."""
    if len(features) != len(labels):
        raise CSLError("features and labels must have one entry per sequence")
    names = names or [f"seq{i:05d}" for i in range(len(features))]
    out = []
    for name, x, y in zip(names, features, labels):
        # float16 or float32 arrays (also memory-mapped ones) are kept as given, not copied: the models
        # read them window by window, so features on disk stay there
        x = x if isinstance(x, np.ndarray) and x.dtype in (np.float16, np.float32) else np.asarray(x, np.float32)
        y = np.asarray(y, dtype=np.int64)
        if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
            raise CSLError(f"sequence {name}: need features (T, D) and labels (T,)")
        labelled = None
        if (y < 0).any():
            if (y < -1).any():
                raise CSLError(f"sequence {name}: labels must be class indices, or -1 for unlabelled frames")
            labelled = y >= 0
            if not labelled.any():
                raise CSLError(f"sequence {name} has no labelled frame")
            y = nearest_labelled(y, labelled)
        out.append(VideoSequence(name, None, np.arange(1, len(y) + 1), y, x, labelled))
    return out

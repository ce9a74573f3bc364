"""Error injection with exact ground truth, on label sequences.

Error types (all keep the video content; only labels change):

- ``mislabel``: a contiguous part of one segment gets another class, more
  often a neighbouring phase of the procedure;
- ``disorder``: the labels of two whole segments are swapped, so the labels
  run against the procedure's order while the content stays;
- ``boundary``: a transition between two segments moves ``shift`` frames
  early or late.
"""

import numpy as np

ERROR_TYPES = ("mislabel", "disorder", "boundary")


def segments_of(labels: np.ndarray) -> list:
    """``[(start, stop, label)]`` runs of constant label (stop exclusive)."""
    change = np.flatnonzero(np.diff(labels)) + 1
    bounds = np.concatenate([[0], change, [len(labels)]]).astype(int)
    return [(a, b, int(labels[a])) for a, b in zip(bounds[:-1], bounds[1:])]


def inject_mislabel(labels, num_classes, rng, fraction=(0.3, 0.7), neighbour_prob=0.7):
    """Relabels a contiguous part of one random segment.

    Returns ``(new_labels, error_mask)``.
    """
    labels = np.asarray(labels).copy()
    segments = [s for s in segments_of(labels) if s[1] - s[0] >= 4]
    if not segments:
        return labels, np.zeros(len(labels), dtype=bool)
    start, stop, label = segments[rng.integers(len(segments))]
    length = max(2, int(round((stop - start) * rng.uniform(*fraction))))
    offset = start + int(rng.integers(0, stop - start - length + 1))
    neighbours = [c for c in (label - 1, label + 1) if 0 <= c < num_classes]
    others = [c for c in range(num_classes) if c != label]
    if neighbours and rng.random() < neighbour_prob:
        new = int(rng.choice(neighbours))
    else:
        new = int(rng.choice(others))
    mask = np.zeros(len(labels), dtype=bool)
    mask[offset : offset + length] = True
    labels[mask] = new
    return labels, mask


def inject_disorder(labels, rng):
    """Swaps the labels of two segments of different class.

    The first segment keeps its start and the second its end, each taking the
    other's label over its own frames. Returns ``(new_labels, error_mask)``.
    """
    labels = np.asarray(labels).copy()
    segments = segments_of(labels)
    if len(segments) < 2:
        return labels, np.zeros(len(labels), dtype=bool)
    i, j = sorted(rng.choice(len(segments), size=2, replace=False))
    (a0, a1, la), (b0, b1, lb) = segments[i], segments[j]
    mask = np.zeros(len(labels), dtype=bool)
    if la == lb:
        return labels, mask
    labels[a0:a1] = lb
    labels[b0:b1] = la
    mask[a0:a1] = True
    mask[b0:b1] = True
    return labels, mask


def inject_boundary(labels, rng, shift=(3, 10)):
    """Moves one transition by ``shift`` frames (early or late)."""
    labels = np.asarray(labels).copy()
    segments = segments_of(labels)
    mask = np.zeros(len(labels), dtype=bool)
    if len(segments) < 2:
        return labels, mask
    k = int(rng.integers(1, len(segments)))
    (a0, a1, la), (b0, b1, lb) = segments[k - 1], segments[k]
    n = int(rng.integers(shift[0], shift[1] + 1))
    if rng.random() < 0.5:  # early: the next phase starts sooner
        n = min(n, a1 - a0 - 1)
        labels[a1 - n : a1] = lb
        mask[a1 - n : a1] = True
    else:
        n = min(n, b1 - b0 - 1)
        labels[b0 : b0 + n] = la
        mask[b0 : b0 + n] = True
    return labels, mask


def inject(labels, kind: str, num_classes: int, rng):
    """Injects one error of ``kind``; returns ``(new_labels, error_mask)``."""
    if kind == "mislabel":
        return inject_mislabel(labels, num_classes, rng)
    if kind == "disorder":
        return inject_disorder(labels, rng)
    if kind == "boundary":
        return inject_boundary(labels, rng)
    raise ValueError(f"unknown error type '{kind}'; choose from {ERROR_TYPES}")

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


def inject_into_sequences(labels_list: list, kinds, rate: float, num_classes: int, rng):
    """Injects errors into label sequences until ``rate`` of all frames are
    corrupted: random sequences, one error each, cycling through ``kinds``
    (sequences are reused once every one has an error).

    Returns:
        ``(new_labels_list, error_types_list)``: per sequence, the labels with
        errors and an object array with the error type of each frame (``""``
        on clean frames)
    """
    originals = [np.asarray(l) for l in labels_list]
    labels_list = [np.asarray(l).copy() for l in labels_list]
    types_list = [np.full(len(l), "", dtype=object) for l in labels_list]
    total = sum(len(l) for l in labels_list)
    corrupted, attempts, k = 0, 0, 0
    order = list(rng.permutation(len(labels_list)))
    while corrupted < rate * total and attempts < 20 * len(labels_list):
        if not order:
            order = list(rng.permutation(len(labels_list)))
        i = order.pop()
        kind = kinds[k % len(kinds)]
        new_labels, mask = inject(labels_list[i], kind, num_classes, rng)
        attempts += 1
        if not mask.any():
            continue
        k += 1
        corrupted += int((mask & (types_list[i] == "")).sum())
        labels_list[i] = new_labels
        types_list[i][mask] = kind
    for labels, types, original in zip(labels_list, types_list, originals):
        types[labels == original] = ""  # a later error may have put a frame's label back
    return labels_list, types_list


def inject_per_sequence(labels_list: list, kinds, share, num_classes: int, rng, tries: int = 50):
    """One error of each of ``kinds`` in every sequence, redrawn until the
    sequence's share of wrong frames falls in ``share`` (a ``(low, high)``
    pair; else the closest draw, every kind present first).

    Returns ``(new_labels_list, error_types_list)`` as
    :func:`inject_into_sequences` does.
    """
    given, types = [], []
    for labels in labels_list:
        labels = np.asarray(labels)
        best = None
        for _ in range(tries):
            new, kind_of = labels.copy(), np.full(len(labels), "", dtype=object)
            for kind in rng.permutation(list(kinds)):
                new, mask = inject(new, str(kind), num_classes, rng)
                kind_of[mask] = kind
            kind_of[new == labels] = ""  # a later error may have put a frame back
            wrong = float((kind_of != "").mean()) if len(labels) else 0.0
            found = {k for k in kind_of if k}
            gap = 0.0 if share[0] <= wrong <= share[1] else min(abs(wrong - share[0]), abs(wrong - share[1]))
            gap += len(set(kinds) - found)
            if best is None or gap < best[0]:
                best = (gap, new, kind_of)
            if gap == 0:
                break
        given.append(best[1])
        types.append(best[2])
    return given, types


def inject(labels, kind: str, num_classes: int, rng):
    """Injects one error of ``kind``; returns ``(new_labels, error_mask)``."""
    if kind == "mislabel":
        return inject_mislabel(labels, num_classes, rng)
    if kind == "disorder":
        return inject_disorder(labels, rng)
    if kind == "boundary":
        return inject_boundary(labels, rng)
    raise ValueError(f"unknown error type '{kind}'; choose from {ERROR_TYPES}")

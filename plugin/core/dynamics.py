"""Per-frame features of training dynamics and temporal context, for a
detector that learns what errors look like instead of averaging one curve.

:func:`frame_features` turns one video's replay (loss and margin curves over
checkpoints, class probabilities) and its given labels into a (T, F) matrix:
summaries of the curves (level, end, extremes, trend, spread), agreement of
the models with the given label, and the frame's temporal context (scores of
its neighbours, distance to the nearest change of given label, length of and
position in its labelled segment, disagreement within that segment). The
learned detector (:func:`fit_detector`) is trained on these features of a
copy of the labels with errors injected where they are known.
"""

import numpy as np

from .replay import Trajectory

KINDS = ("mislabel", "disorder", "boundary")


def _smooth(values: np.ndarray, half: int) -> np.ndarray:
    if half <= 0 or len(values) == 0:
        return values
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    padded = np.pad(values, half, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _runs(labels: np.ndarray):
    change = np.flatnonzero(np.diff(labels)) + 1
    bounds = np.concatenate([[0], change, [len(labels)]]).astype(int)
    return list(zip(bounds[:-1], bounds[1:]))


def frame_features(trajectory: Trajectory, labels: np.ndarray) -> np.ndarray:
    """(T, F) float32 features of one video's frames.

    Args:
        trajectory: the video's replay (loss and margin (T, E), mean and final
            probabilities (T, C))
        labels: (T,) given class indices
    """
    loss, margin = np.asarray(trajectory.loss, np.float64), np.asarray(trajectory.margin, np.float64)
    T, E = loss.shape
    labels = np.asarray(labels)
    half = max(E // 2, 1)
    steps = np.arange(E) - (E - 1) / 2.0
    slope = (loss * steps).sum(1) / max((steps**2).sum(), 1e-9)
    mean_probs = np.asarray(trajectory.mean_probs, np.float64)
    final_probs = np.asarray(trajectory.final_probs, np.float64)
    p_given = mean_probs[np.arange(T), labels]
    predicted = mean_probs.argmax(1)
    entropy = -(mean_probs * np.log(np.clip(mean_probs, 1e-12, 1))).sum(1)
    csl = loss.mean(1)
    columns = [
        csl, loss[:, -1], loss.min(1), loss.max(1), loss.std(1), slope, loss[:, :half].mean(1),
        loss[:, half:].mean(1), margin.mean(1), margin[:, -1], margin.min(1), (margin < 0).mean(1),
        p_given, final_probs[np.arange(T), labels], mean_probs.max(1), entropy, (predicted != labels).astype(float),
    ]  # fmt: skip
    for w in (2, 8, 32):  # the neighbourhood's evidence
        columns += [_smooth(csl, w), _smooth((predicted != labels).astype(float), w)]
    distance = np.full(T, float(T))
    length, position, disagree, seg_csl = (np.zeros(T) for _ in range(4))
    for a, b in _runs(labels):
        idx = np.arange(a, b)
        if a > 0:
            distance[a:b] = np.minimum(distance[a:b], idx - a + 1)
        if b < T:
            distance[a:b] = np.minimum(distance[a:b], b - idx)
        length[a:b] = b - a
        position[a:b] = (idx - a + 0.5) / (b - a)
        disagree[a:b] = (predicted[a:b] != labels[a:b]).mean()
        seg_csl[a:b] = csl[a:b].mean()
    columns += [np.log1p(distance), np.log1p(length), position, disagree, seg_csl, csl - seg_csl]
    return np.stack(columns, axis=1).astype(np.float32)


def fit_detector(features: list, error_types: list, seed: int = 51):
    """A gradient-boosted classifier of ``""`` (clean) and the error kinds,
    from per-video feature matrices and per-frame error types."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # lazy: only the simulation's detector uses it

    x = np.concatenate(features)
    y = np.concatenate([np.asarray(t, dtype=object) for t in error_types]).astype(str)
    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)
    with _one_thread():
        return model.fit(x, y)


def _one_thread():
    """The boosting's OpenMP threads spin on small data and crawl when the CPU
    is shared: one thread is faster here and gives the same model."""
    from threadpoolctl import threadpool_limits  # lazy: only the simulation's detector uses it

    return threadpool_limits(limits=1, user_api="openmp")


def detect(model, features: np.ndarray) -> tuple:
    """``(error_prob (T,), kind (T,))``: one minus the probability of clean,
    and the most probable error kind."""
    with _one_thread():
        probs = model.predict_proba(features)
    classes = list(model.classes_)
    clean = probs[:, classes.index("")] if "" in classes else np.zeros(len(features))
    kinds = [k for k in classes if k != ""]
    kind = np.array(kinds, dtype=object)[probs[:, [classes.index(k) for k in kinds]].argmax(1)] if kinds else None
    return (1.0 - clean).astype(np.float32), kind

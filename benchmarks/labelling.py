"""Active sparse labelling benchmark: the protocol of "Active Sparse
Labeling" (NeurIPS 2022) on frame labels.

For each source (demo: the real clips; hard: the same clips with split and
repeated phases), seed: a third of the videos is held out; the labelling
loop runs on the others. Every video starts with 1% of its frames labelled
(evenly spaced, at least one; the same start for every strategy); each round
a strategy adds frames until 2, 4, 6, 8 and 10% of the frames are labelled,
and the temporal model (transformer, 30 epochs, in-sample as in
``fcsl.label_actively``) is retrained from the labelled frames:

- strategies: APU (MC-dropout uncertainty of the round's model, 10 passes,
  plus spread from labelled frames; lambda 0.5, sigma 10 frames: the SDK's
  defaults), random, equidistant (evenly spaced among unlabelled frames);
- training: MGW (unlabelled frames weighed by a Gaussian of their distance to
  the nearest label, sigma 5 frames, chosen before the run) or masking
  (unlabelled frames ignored).

Reported per round: frame accuracy, F1@{10,25,50} and Edit of the propagated
labels (given labels where labelled, the model's elsewhere) on the labelled
videos, and of the model's predictions on the held-out videos; against the
fully supervised model (every frame of the same videos labelled), evaluated
on the same held-out videos.

    .venv/bin/python benchmarks/labelling.py            # about 60 min on 2 cores
    .venv/bin/python benchmarks/labelling.py --quick    # a smoke run

Writes ``benchmarks/results/labelling.json`` and prints Markdown tables.
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

import sources  # noqa: E402
from fiftyone_csl import compute_csl_arrays  # noqa: E402
from fiftyone_csl.plugin.core.manifest import Manifest  # noqa: E402
from fiftyone_csl.plugin.core.metrics import segmentation_report  # noqa: E402
from fiftyone_csl.plugin.core.replay import Replayer  # noqa: E402
from fiftyone_csl.plugin.core.sequences import sequences_from_arrays  # noqa: E402
from fiftyone_csl.plugin.review.queue import run_uncertainty, select_frames  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROUNDS = (1, 2, 4, 6, 8, 10)  # percent of the frames labelled after each round
STRATEGIES = ("apu", "random", "equidistant")
LOSSES = {"mgw": 5.0, "masking": 0.0}
SETTINGS = ("demo", "demo-weak", "hard", "hard-weak")  # source, and "-weak": its weak features


def evenly_spaced(labels, share):
    """The start: ``share`` of each video's frames, evenly spaced (>= 1)."""
    out = []
    for y in labels:
        k = max(1, int(round(share * len(y))))
        keep = np.zeros(len(y), bool)
        keep[((np.arange(k) + 0.5) * len(y) / k).astype(int)] = True
        out.append(keep)
    return out


def train(features, labels, masks, classes, sigma, seed, epochs, passes, held_out, want_uncertainty):
    """Trains from the labelled frames; returns the predictions on every
    training frame, on the held-out videos, and (if asked) the uncertainty."""
    sparse = [np.where(m, y, -1) for y, m in zip(labels, masks)]
    names = [f"v{i:03d}" for i in range(len(features))]
    with tempfile.TemporaryDirectory() as run_dir:
        results = compute_csl_arrays(
            features, sparse, classes, names, cross_fit=False, mgw_sigma=sigma, epochs=epochs, seed=seed,
            run_dir=run_dir, progress=False, device="cpu",
        )  # fmt: skip
        predicted = []
        for n in names:
            v = results.videos[n]
            predicted.append(v.trajectory.final_probs.argmax(1) if v.predictions is None else v.predictions.labels)
        manifest = Manifest.load(run_dir)
        replayer = Replayer(run_dir, manifest, "cpu", "fp32")
        tested = [replayer.logits(0, x)[-1].argmax(-1).numpy() for x in held_out]
        uncertainty = None
        if want_uncertainty:
            sequences = sequences_from_arrays(features, sparse, names)
            uncertainty = run_uncertainty(run_dir, manifest, sequences, torch.device("cpu"), passes, seed)
    return names, predicted, tested, uncertainty


def _report(pairs):
    return {k: round(v, 2) for k, v in segmentation_report(pairs).items()}


def evaluate(labels, masks, predicted, tested, test_labels):
    propagated = [np.where(m, y, p) for y, m, p in zip(labels, masks, predicted)]
    return {
        "labelled": round(100.0 * sum(int(m.sum()) for m in masks) / sum(len(m) for m in masks), 2),
        "propagated": _report(zip(propagated, labels)),
        "held_out": _report(zip(tested, test_labels)),
    }


def run(setting, seed, epochs, passes, rounds, strategies=STRATEGIES, keep=None):
    source = setting.removesuffix("-weak")
    features, labels, classes = sources.SOURCES[source](weak=setting.endswith("-weak"))
    order = np.random.default_rng(seed).permutation(len(features))
    test = sorted(order[: len(features) // 3].tolist())
    train_ids = [i for i in range(len(features)) if i not in test]
    x, y = [features[i] for i in train_ids], [labels[i] for i in train_ids]
    tx, ty = [features[i] for i in test], [labels[i] for i in test]
    total = sum(len(v) for v in y)
    row = {"setting": setting, "seed": seed, "videos": len(x), "held_out_videos": len(tx), "frames": total}
    started = time.time()
    if keep is not None:  # a row measured before: only ``strategies`` are measured again
        row["full"], row["runs"] = keep["full"], dict(keep["runs"])
    else:
        full = [np.ones(len(v), bool) for v in y]
        _, predicted, tested, _ = train(x, y, full, classes, 0.0, seed, epochs, passes, tx, False)
        row["full"] = evaluate(y, full, predicted, tested, ty)
        row["runs"] = {}
    for loss, sigma in LOSSES.items():
        start = evenly_spaced(y, rounds[0] / 100.0)
        names, predicted, tested, uncertainty = train(x, y, start, classes, sigma, seed, epochs, passes, tx, True)
        first = evaluate(y, start, predicted, tested, ty)
        print(f"[labelling] {setting} seed {seed} {loss} {rounds[0]}%: {first['propagated']['accuracy']}", flush=True)
        for strategy in strategies:
            masks, u, history = [m.copy() for m in start], uncertainty, [first]
            for share in rounds[1:]:
                frames = {n: np.arange(1, len(m) + 1) for n, m in zip(names, masks)}
                done = {n: np.flatnonzero(m) + 1 for n, m in zip(names, masks)}
                k = int(round(total * share / 100.0)) - sum(int(m.sum()) for m in masks)
                picks = select_frames(frames, k, strategy, uncertainty=u, reviewed=done, seed=seed)
                index = {n: i for i, n in enumerate(names)}
                for n, f in picks:
                    masks[index[n]][f - 1] = True
                _, predicted, tested, u = train(
                    x, y, masks, classes, sigma, seed, epochs, passes, tx, strategy == "apu"
                )  # fmt: skip
                history.append(evaluate(y, masks, predicted, tested, ty))
                print(f"[labelling] {setting} seed {seed} {loss} {strategy} {share}%: "
                      f"{history[-1]['propagated']['accuracy']} / {history[-1]['held_out']['accuracy']} "
                      f"(full {row['full']['held_out']['accuracy']})", flush=True)  # fmt: skip
            row["runs"][f"{strategy}+{loss}"] = history
    row["runs"] = {f"{s}+{loss}": row["runs"][f"{s}+{loss}"] for s in STRATEGIES for loss in LOSSES}
    row["seconds"] = round(time.time() - started, 1) + (keep or {}).get("seconds", 0)
    return row


def _at(row, name, index, where, key):
    """A figure of one run: the fully supervised one for ``name`` "full"."""
    return (row["full"] if name == "full" else row["runs"][name][index])[where][key]


def _accuracy_table(rows, rounds, where) -> list:
    lines = ["| selection + training | " + " | ".join(f"{s}%" for s in rounds) + " |", "|---|" + "---:|" * len(rounds)]
    for name in rows[0]["runs"]:
        cells = [f"{np.mean([_at(r, name, i, where, 'accuracy') for r in rows]):.1f}" for i in range(len(rounds))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _segment_table(rows, last) -> list:
    lines = [
        "| selection + training | F1@10 | F1@25 | F1@50 | Edit | held-out F1@50 | held-out Edit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    keys = [("propagated", k) for k in ("f1@10", "f1@25", "f1@50", "edit")] + [
        ("held_out", "f1@50"),
        ("held_out", "edit"),
    ]
    for name in [*rows[0]["runs"], "full"]:
        cells = [f"{np.mean([_at(r, name, last, where, k) for r in rows]):.1f}" for where, k in keys]
        lines.append(f"| {'all frames labelled' if name == 'full' else name} | " + " | ".join(cells) + " |")
    return lines


def markdown(out) -> str:
    lines = []
    rounds = out["rounds"]
    for setting in SETTINGS:
        rows = [r for r in out["rows"] if r["setting"] == setting]
        if not rows:
            continue
        full = np.mean([r["full"]["held_out"]["accuracy"] for r in rows])
        for where, title in (("propagated", "propagated labels of the labelled videos"),
                             ("held_out", "the model on held-out videos")):  # fmt: skip
            lines += [
                f"{setting}: frame accuracy of {title} by share of frames labelled, mean of {len(rows)} seeds "
                f"(fully supervised model on the held-out videos: {full:.1f}):",
                "",
                *_accuracy_table(rows, rounds, where),
                "",
            ]
        lines += [
            f"{setting}, at {rounds[-1]}% labelled: F1@10/25/50 and Edit of the propagated labels; of the model "
            "on held-out videos:",
            "",
            *_segment_table(rows, len(rounds) - 1),
            "",
        ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES,
        help="measure only these again, keeping the other figures of the same settings",
    )  # fmt: skip
    args = parser.parse_args()
    seeds = (0,) if args.quick else (0, 1, 2)
    epochs, passes = (6, 3) if args.quick else (30, 10)
    epochs = args.epochs or epochs
    rounds = (1, 4, 10) if args.quick else ROUNDS
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.time()
    out = {"seeds": list(seeds), "epochs": epochs, "passes": passes, "rounds": list(rounds), "losses": LOSSES,
           "rows": []}  # fmt: skip
    path = os.path.join(HERE, "results", "labelling-quick.json" if args.quick else "labelling.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    previous = []
    if os.path.isfile(path):  # settings measured earlier with the same protocol are kept
        with open(path) as f:
            old = json.load(f)
        if all(old.get(k) == out[k] for k in ("seeds", "epochs", "passes", "rounds")):
            previous = old["rows"]
    partial = set(args.strategies) != set(STRATEGIES)
    kept = {(r["setting"], r["seed"]): r for r in previous}
    out["rows"] = [r for r in previous if r["setting"] not in args.settings]
    for setting in args.settings:
        for seed in seeds:
            keep = kept.get((setting, seed)) if partial else None
            if partial and keep is None:
                raise SystemExit(f"--strategies needs the other strategies of {setting} seed {seed} measured first")
            out["rows"].append(run(setting, seed, epochs, passes, rounds, args.strategies, keep))
            out["seconds"] = round(time.time() - started)
            with open(path, "w") as f:  # after every seed: a long run keeps what it measured
                json.dump(out, f, indent=1)
    print(markdown(out))
    print(f"[labelling] wrote {path} in {out['seconds']} s")


if __name__ == "__main__":
    main()

"""Checkpoint storage options against what they cost in detection.

For each source (``demo``, ``hard``: the injections of ``benchmarks/cost.py``)
and seed, the default audit (5 folds, 30 epochs) with:

- ``fp32``: a float32 state dict per epoch and fold (the default);
- ``fp16``: ``half_checkpoints=True`` (replayed in float32 from float16 weights);
- ``every3`` / ``every5``: only every 3rd / 5th checkpoint replayed, scored
  from the fp32 run's trajectories (what keeping every k-th epoch gives).

Reports the bytes of checkpoints per run and CSL's frame AUROC against the
injected errors. Usage::

    python benchmarks/storage.py --seeds 0 1 2

Writes ``benchmarks/results/storage.json`` and prints the table of
benchmarks/README.md.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cost  # noqa: E402
from fiftyone_csl import compute_csl_arrays  # noqa: E402

EVERY = (3, 5)


def checkpoint_bytes(run_dir) -> int:
    return sum(
        os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(run_dir)
        for f in files
        if f.startswith("epoch_") and f.endswith(".pt")
    )


def run(source: str, seed: int) -> dict:
    features, given, errors, classes = cost.injected(source, seed)
    row = {"source": source, "seed": seed, "frames": int(sum(len(y) for y in given))}
    for name, half in (("fp32", False), ("fp16", True)):
        with tempfile.TemporaryDirectory() as folder:
            run_dir = os.path.join(folder, "run")
            results = compute_csl_arrays(features, given, classes, seed=seed, device="cpu", run_dir=run_dir,
                                         half_checkpoints=half, **cost.PRESETS["default"])  # fmt: skip
            names = list(results.videos)
            scores = [results.videos[n].scores["csl"] for n in names]
            row[name] = {
                "auroc": round(cost.auroc(scores, errors), 4),
                "checkpoint_mb": checkpoint_bytes(run_dir) / 1e6,
            }
            if not half:
                losses = [np.asarray(results.videos[n].trajectory.loss) for n in names]
                full = row["fp32"]["checkpoint_mb"]
                for k in EVERY:
                    subset = [loss[:, k - 1 :: k].mean(1) for loss in losses]
                    row[f"every{k}"] = {"auroc": round(cost.auroc(subset, errors), 4), "checkpoint_mb": full / k}
        print(f"[storage] {source} seed {seed} {name}: {row[name]}", flush=True)
    return row


def table(rows: list) -> str:
    options = ["fp32", "fp16"] + [f"every{k}" for k in EVERY]
    lines = ["| source | seeds | " + " | ".join(f"{o}: AUROC, MB" for o in options) + " |",
             "|---|---|" + "---|" * len(options)]  # fmt: skip
    for source in sorted({r["source"] for r in rows}):
        mine = [r for r in rows if r["source"] == source]
        cells = []
        for o in options:
            auroc = np.mean([r[o]["auroc"] for r in mine])
            mb = np.mean([r[o]["checkpoint_mb"] for r in mine])
            cells.append(f"{auroc:.4f}, {mb:.1f}")
        lines.append(f"| {source} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", nargs="+", default=["demo", "hard"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    rows = [run(source, seed) for source in args.sources for seed in args.seeds]
    with open(os.path.join(HERE, "results", "storage.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(table(rows))


if __name__ == "__main__":
    main()

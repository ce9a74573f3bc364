"""The engine's defaults on the hard benchmark: one setting changed at a time.

On the ``hard`` source with weak features (condition ``three_weak``: one error
of each kind per video, 20-30% of frames wrong), seeds 0, 1, 2, each variant
changes one training setting from the defaults (5 folds, 30 epochs, lr 1e-3,
transformer with 64 hidden units, 2 layers, dropout 0.1, input dropout 0.3,
1024-frame windows) and reports CSL frame AUROC per kind and the suspect
segments at the default threshold (event recall, flag precision, type
accuracy, suggested-label accuracy).

    .venv/bin/python benchmarks/defaults.py                    # every variant, about 30 min on 2 cores
    .venv/bin/python benchmarks/defaults.py --variants default folds3 --seeds 0

Writes ``benchmarks/results/defaults.json`` and prints a Markdown table.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from detection import KINDS, run_one  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = {
    "default": {},
    "folds3": dict(folds=3),
    "folds10": dict(folds=10),
    "epochs15": dict(epochs=15),
    "epochs60": dict(epochs=60),
    "lr3e-4": dict(lr=3e-4),
    "lr3e-3": dict(lr=3e-3),
    "input_dropout0": dict(model_kwargs={"input_dropout": 0.0}),
    "input_dropout0.5": dict(model_kwargs={"input_dropout": 0.5}),
    "dropout0.3": dict(model_kwargs={"dropout": 0.3}),
    "hidden32": dict(model_kwargs={"hidden_dim": 32}),
    "hidden128": dict(model_kwargs={"hidden_dim": 128}),
    "layers4": dict(model_kwargs={"num_layers": 4}),
    "window128": dict(max_frames=128),
    "tcn": dict(model="tcn"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--condition", default="three_weak")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "defaults.json"))
    parser.add_argument("--table", action="store_true", help="print the table of the stored results and exit")
    args = parser.parse_args()
    if args.table:
        with open(args.out) as f:
            print(summarise(json.load(f)["runs"], args.condition)[1])
        return
    rows = []
    for name in args.variants:
        setting = dict(VARIANTS[name])
        epochs, folds = setting.pop("epochs", 30), setting.pop("folds", 5)
        for seed in args.seeds:
            started = time.time()
            row = run_one("hard", args.condition, seed, epochs, folds, with_extras=False, **setting)
            row["variant"] = name
            row["wall_seconds"] = round(time.time() - started, 1)
            rows.append(row)
            _save(args, rows, {})  # after every run, so an interrupted sweep keeps what it measured
            print(f"[defaults] {name} seed {seed}: AUROC {row['scores']['csl']['all']['auroc']:.3f} "
                  f"({row['seconds']} s)", flush=True)  # fmt: skip
    summary, table = summarise(rows, args.condition)
    print(table)
    _save(args, rows, summary)


def summarise(rows, condition="three_weak"):
    """``(summary, markdown)`` over the variants present in ``rows``."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"hard {condition}, mean over seeds {seeds}: CSL frame AUROC and suspect segments at ln C",
        "",
        "| variant | seeds | AUROC all | mislabel | disorder | boundary | event recall | flag precision | type acc. "
        "| label acc. | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for name in variants:
        subset = [r for r in rows if r["variant"] == name]

        def mean(get, subset=subset):
            values = [get(r) for r in subset]
            values = [v for v in values if v is not None and v == v]
            return float(np.mean(values)) if values else float("nan")

        entry = {k: mean(lambda r, k=k: r["scores"]["csl"].get(k, {}).get("auroc")) for k in ("all", *KINDS)}
        for metric in ("event_recall", "flag_precision", "type_accuracy", "label_accuracy"):
            entry[metric] = mean(lambda r, m=metric: r["segments"].get(m))
        entry["seconds"] = mean(lambda r: r["seconds"])
        entry["seeds"] = len(subset)
        summary[name] = entry
        lines.append(
            f"| {name} | {len(subset)} | {entry['all']:.3f} | {entry['mislabel']:.3f} | {entry['disorder']:.3f} | "
            f"{entry['boundary']:.3f} | {entry['event_recall']:.2f} | {entry['flag_precision']:.2f} | "
            f"{entry['type_accuracy']:.2f} | {entry['label_accuracy']:.2f} | {entry['seconds']:.0f} |"
        )
    return summary, "\n".join(lines)


def _save(args, rows, summary):
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(["python", "benchmarks/defaults.py", *sys.argv[1:]]), "variants": VARIANTS,
                   "summary": summary, "runs": rows}, f, indent=1, default=float)  # fmt: skip


if __name__ == "__main__":
    main()

"""Learned detector against CSL and its peers, on the same runs.

For each source, condition and seed: the "user's labels" are the clean
labels with errors injected (as in ``detection.py``; their ground truth is
only used for scoring). The detector never sees that ground truth: it is
trained on a *copy* of the user's labels with more errors injected where
they are known (one of each kind per video), replayed like any run; then it
scores the user's own run. Two detectors: ``learned`` counts every frame the
copy did not change as clean (the user's unknown errors included);
``learned_pu`` keeps as clean examples only frames whose CSL in the user's run
is in the lower half. Reports frame AUROC per kind for both, CSL and the
peers, and the first detector's kind accuracy on the frames it ranks in the
top share of the true error rate.

    .venv/bin/python benchmarks/learned.py              # hard source, 3 seeds
    .venv/bin/python benchmarks/learned.py --quick      # one seed, 8 epochs

Writes ``benchmarks/results/learned.json`` and prints a Markdown table.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fiftyone_csl as fcsl  # noqa: E402
import sources  # noqa: E402
from detection import CONDITIONS, KINDS, inject_per_video  # noqa: E402
from fiftyone_csl.plugin import dynamics, metrics  # noqa: E402
from fiftyone_csl.plugin.corrupt import inject_into_sequences  # noqa: E402
from fiftyone_csl.plugin.scores import ALL_PEERS  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def user_labels(source, condition, seed):
    settings = CONDITIONS[condition]
    features, clean, classes = sources.SOURCES[source](weak=settings.get("weak", False))
    rng = np.random.default_rng(seed)
    if settings.get("per_video"):
        given, types = inject_per_video(clean, settings["per_video"], settings["share"], len(classes), rng)
    else:
        given, types = inject_into_sequences(clean, KINDS, settings["rate"], len(classes), rng)
        types = [np.where(g != c, t, "") for g, c, t in zip(given, clean, types)]
    return features, given, types, classes


def run_one(source, condition, seed, epochs, folds, sim_share):
    features, given, types, classes = user_labels(source, condition, seed)
    started = time.time()
    common = dict(epochs=epochs, folds=folds, seed=seed, progress=False)
    real = fcsl.compute_csl_arrays(features, given, classes, peer_scores=ALL_PEERS, **common)
    # the simulation: more errors, of known kind, in a copy of the user's labels
    sim_rng = np.random.default_rng(10_000 + seed)
    sim_given, sim_types = inject_per_video(given, KINDS, sim_share, len(classes), sim_rng)
    sim = fcsl.compute_csl_arrays(features, sim_given, classes, **common)
    names = list(real.videos)
    sim_x = [dynamics.frame_features(sim.videos[n].trajectory, sim.videos[n].labels) for n in names]
    model = dynamics.fit_detector(sim_x, sim_types, seed=seed)
    # the copy also holds the user's own (unknown) errors, marked clean: keep as clean examples
    # only frames the user's run is fairly sure of (CSL in its lower half), a positive-unlabelled fix
    real_csl = {n: real.videos[n].scores["csl"] for n in names}
    cut = float(np.quantile(np.concatenate(list(real_csl.values())), 0.5))
    kept = [(t != "") | (real_csl[n] <= cut) for n, t in zip(names, sim_types)]
    model_pu = dynamics.fit_detector([x[k] for x, k in zip(sim_x, kept)], [t[k] for t, k in zip(sim_types, kept)], seed)
    real_x = [dynamics.frame_features(real.videos[n].trajectory, real.videos[n].labels) for n in names]
    detected = [dynamics.detect(model, x) for x in real_x]
    detected_pu = [dynamics.detect(model_pu, x) for x in real_x]
    seconds = time.time() - started
    all_types = np.concatenate(types).astype(str)
    row = {"source": source, "condition": condition, "seed": seed, "seconds": round(seconds, 1), "scores": {}}
    row["scores"]["learned"] = metrics.detection_report(np.concatenate([p for p, _ in detected]), all_types)
    row["scores"]["learned_pu"] = metrics.detection_report(np.concatenate([p for p, _ in detected_pu]), all_types)
    for name in ["csl", *ALL_PEERS]:
        values = np.concatenate([real.videos[n].scores[name] for n in names])
        row["scores"][name] = metrics.detection_report(values, all_types)
    # kind accuracy where the detector is surest: its top frames, as many as there are errors
    prob = np.concatenate([p for p, _ in detected])
    kind = np.concatenate([k for _, k in detected]).astype(str)
    top = np.argsort(-prob)[: int((all_types != "").sum())]
    hits = all_types[top] != ""
    row["learned_kind_accuracy"] = float((kind[top][hits] == all_types[top][hits]).mean()) if hits.any() else None
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", nargs="+", default=["hard"])
    parser.add_argument("--conditions", nargs="+", default=["three", "three_weak"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "learned.json"))
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.conditions = [0], 8, ["three_weak"]
    rows = []
    for source in args.sources:
        for condition in args.conditions:
            for seed in args.seeds:
                rows.append(run_one(source, condition, seed, args.epochs, args.folds, (0.1, 0.2)))
                r = rows[-1]["scores"]
                print(
                    f"[learned] {source} {condition} seed {seed}: learned {r['learned']['all']['auroc']:.3f}, "
                    f"csl {r['csl']['all']['auroc']:.3f} ({rows[-1]['seconds']} s)",
                    flush=True,
                )
    lines = ["| source / condition | score | all | " + " | ".join(KINDS) + " |", "|---|---|---|---|---|---|"]
    for source in args.sources:
        for condition in args.conditions:
            subset = [r for r in rows if r["source"] == source and r["condition"] == condition]
            best_peer = max(
                ALL_PEERS, key=lambda n: np.mean([r["scores"][n]["all"]["auroc"] for r in subset])
            )  # fmt: skip
            for name in ("learned", "learned_pu", "csl", best_peer):
                cells = [
                    f"{np.mean([r['scores'][name].get(k, {}).get('auroc', np.nan) for r in subset]):.3f}"
                    for k in ("all", *KINDS)
                ]
                label = name if name != best_peer else f"best peer: {name}"
                lines.append(f"| {source} {condition} | {label} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(["python", "benchmarks/learned.py", *sys.argv[1:]]), "runs": rows}, f,
                  indent=1, default=float)  # fmt: skip


if __name__ == "__main__":
    main()

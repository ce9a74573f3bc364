"""The simulation beside a run, measured: learned error probability against CSL
and its peers, the estimated precision of the flags against the measured one,
and learned error kinds against the rule-based types.

For each source, condition and seed: the "user's labels" are the clean labels
with errors injected (as in ``detection.py``; their ground truth is used only
for scoring). The run is ``compute_csl_arrays(..., simulation=True)``, the
product's own path: it trains on the user's labels, and again on a copy with
one more error of each kind per video where it knows them, fits the detector
on that copy (``frames.<key>_error_prob``), estimates how many errors the
user's labels hold and the precision of the flags, and flags at the lowest
threshold whose estimated precision reaches 0.85.

Reported per run: frame AUROC per kind of ``error_prob``, CSL and every peer;
the suspect segments at ``ln C`` and at the aimed threshold (event recall,
flag precision measured and estimated, type accuracy); the type accuracy of
the same segments typed by the detector's most likely kind instead of the
rules.

    .venv/bin/python benchmarks/learned.py              # hard and demo sources, 3 seeds
    .venv/bin/python benchmarks/learned.py --quick      # one seed, 8 epochs

Writes ``benchmarks/results/learned.json`` and prints Markdown tables.
"""

import argparse
import collections
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fiftyone_csl as fcsl  # noqa: E402
import sources  # noqa: E402
from detection import CONDITIONS, KINDS, inject_per_video  # noqa: E402
from fiftyone_csl.plugin.core import flags, metrics, simulation  # noqa: E402
from fiftyone_csl.plugin.core.corrupt import inject_into_sequences  # noqa: E402
from fiftyone_csl.plugin.core.scores import ALL_PEERS  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RUNS = [("hard", "three"), ("hard", "three_weak"), ("demo", "r10"), ("demo", "weak")]


def user_labels(source, condition, seed):
    settings = CONDITIONS[condition]
    features, clean, classes = sources.SOURCES[source](weak=settings.get("weak", False))
    rng = np.random.default_rng(seed)
    if settings.get("per_video"):
        given, types = inject_per_video(clean, settings["per_video"], settings["share"], len(classes), rng)
    else:
        given, types = inject_into_sequences(clean, KINDS, settings["rate"], len(classes), rng)
    types = [np.where(g != c, t, "") for g, c, t in zip(given, clean, types)]
    return features, given, clean, types, classes


def _segments_at(results, threshold):
    return {
        n: flags.suspect_segments(
            n, v.frame_numbers, v.labels, v.scores["csl"], v.trajectory.mean_probs, results.classes, threshold
        )
        for n, v in results.videos.items()
    }


def _report(results, segments, types, clean):
    classes = np.asarray(results.classes, dtype=object)
    return metrics.segment_report(
        (segments[n], t, classes[c], results.videos[n].frame_numbers) for n, t, c in zip(results.videos, types, clean)
    )


def _learned_types(results, segments):
    out = {}
    for n, segs in segments.items():
        kind = results.videos[n].error_kind
        out[n] = [
            dataclasses.replace(s, error_type=collections.Counter(kind[s.start : s.stop]).most_common(1)[0][0])
            for s in segs
        ]
    return out


def run_one(source, condition, seed, epochs, folds):
    features, given, clean, types, classes = user_labels(source, condition, seed)
    started = time.time()
    results = fcsl.compute_csl_arrays(
        features, given, classes, epochs=epochs, folds=folds, seed=seed, peer_scores=ALL_PEERS, simulation=True,
        progress=False,
    )  # fmt: skip
    seconds = time.time() - started
    names = list(results.videos)
    all_types = np.concatenate(types).astype(str)
    row = {"source": source, "condition": condition, "seed": seed, "seconds": round(seconds, 1), "scores": {}}
    for name in ["error_prob", "csl", *ALL_PEERS]:
        values = np.concatenate([results.videos[n].scores[name] for n in names])
        row["scores"][name] = metrics.detection_report(values, all_types)
    report = results.simulation
    row["simulation"] = {k: v for k, v in report.items()}
    base = flags.auto_threshold(len(classes))
    row["flags"] = {}
    for label, threshold in (("ln_c", base), ("aimed", report["aimed_threshold"])):
        segments = _segments_at(results, threshold)
        measured = _report(results, segments, types, clean)
        learned = _report(results, _learned_types(results, segments), types, clean)
        row["flags"][label] = {
            "threshold": threshold,
            "event_recall": measured["event_recall"],
            "flag_precision": measured["flag_precision"],
            "estimated_precision": simulation.estimated_precision(report, threshold),
            "type_accuracy": measured["type_accuracy"],
            "learned_type_accuracy": learned["type_accuracy"],
            "label_accuracy": measured["label_accuracy"],
            "flags": measured["flags"],
            "events": measured["events"],
        }
    return row


def _mean(rows, get):
    values = [get(r) for r in rows]
    values = [v for v in values if v is not None and v == v]
    return float(np.mean(values)) if values else float("nan")


def markdown(rows, runs):
    lines = [
        "Frame AUROC (all / mislabel / disorder / boundary), mean over seeds:",
        "",
        "| source / condition | error_prob (learned) | CSL | best peer |",
        "|---|---|---|---|",
    ]
    for source, condition in runs:
        subset = [r for r in rows if r["source"] == source and r["condition"] == condition]
        if not subset:
            continue

        def auroc(name, kind, subset=subset):
            return _mean(subset, lambda row: row["scores"][name].get(kind, {}).get("auroc"))

        def cells(name):
            return " / ".join(f"{auroc(name, k):.3f}" for k in ("all", *KINDS))

        best = max(ALL_PEERS, key=lambda n: auroc(n, "all"))
        lines.append(f"| {source} {condition} | {cells('error_prob')} | {cells('csl')} | {best}: {cells(best)} |")
    lines += [
        "",
        "Suspect segments at ln C and at the threshold aimed at precision 0.85 (mean over seeds): event recall, "
        "flag precision measured / estimated by the simulation, type accuracy by the rules / by the detector:",
        "",
        "| source / condition | threshold | recall | precision (measured / estimated) | type acc. (rules / learned) |",
        "|---|---|---|---|---|",
    ]
    for source, condition in runs:
        subset = [r for r in rows if r["source"] == source and r["condition"] == condition]
        for label in ("ln_c", "aimed"):
            if not subset:
                continue

            def m(key, subset=subset, label=label):
                return _mean(subset, lambda row: row["flags"][label][key])

            lines.append(
                f"| {source} {condition} | {label} ({m('threshold'):.2f}) | {m('event_recall'):.0%} | "
                f"{m('flag_precision'):.0%} / {m('estimated_precision'):.0%} | "
                f"{m('type_accuracy'):.0%} / {m('learned_type_accuracy'):.0%} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=[f"{s}/{c}" for s, c in DEFAULT_RUNS], help="source/condition")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "learned.json"))
    parser.add_argument("--table", action="store_true", help="print the tables of the stored results and exit")
    args = parser.parse_args()
    if args.table:
        with open(args.out) as f:
            rows = json.load(f)["runs"]
        print(markdown(rows, list(dict.fromkeys((r["source"], r["condition"]) for r in rows))))
        return
    runs = [tuple(r.split("/")) for r in args.runs]
    if args.quick:
        args.seeds, args.epochs, runs = [0], 8, [("hard", "three_weak")]
    rows = []
    for source, condition in runs:
        for seed in args.seeds:
            rows.append(run_one(source, condition, seed, args.epochs, args.folds))
            _save(args, rows)  # after every run, so an interrupted benchmark keeps what it measured
            r, at = rows[-1], rows[-1]["flags"]["ln_c"]
            print(
                f"[learned] {source} {condition} seed {seed}: error_prob "
                f"{r['scores']['error_prob']['all']['auroc']:.3f}, csl {r['scores']['csl']['all']['auroc']:.3f}; "
                f"precision at ln C {at['flag_precision']:.2f} (estimated {at['estimated_precision']}) "
                f"({r['seconds']} s)",
                flush=True,
            )
    print(markdown(rows, runs))


def _save(args, rows):
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(["python", "benchmarks/learned.py", *sys.argv[1:]]), "runs": rows}, f,
                  indent=1, default=float)  # fmt: skip


if __name__ == "__main__":
    main()

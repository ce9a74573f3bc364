"""Detection benchmark: CSL against its peers on two real sources, three error
types and a difficulty sweep, with several seeds.

For each source (see ``sources.py``), condition and seed: inject errors of all
three types (mislabel, disorder, boundary) into the clean labels until the
condition's share of frames is corrupted, run the engine on plain sequences
(``fcsl.compute_csl_arrays``: 5-fold cross-fitted temporal transformer, 30
epochs, a checkpoint each), and score every frame with CSL and every peer.
Frame AUROC/AP are computed per error type against the clean frames.

Conditions: ``r05``/``r10``/``r20`` (5/10/20% of frames corrupted, strong
features), ``weak`` (10%, weak features), ``noisy`` (10%, plus another 10% of
mislabels that are not evaluated: label noise the models must train through);
``three``/``three_weak`` (one error of each kind in every video, 20-30% of its
frames wrong; strong / weak features), the conditions of the ``hard`` source.
Ablations on ``weak``: TCN and frame-wise MLP instead of the transformer,
in-sample trajectories instead of cross-fitting; from the same trajectories:
every 5th checkpoint only, and the first 10 or 20 epochs only.

    .venv/bin/python benchmarks/detection.py                 # full run, about 25 min on 2 cores
    .venv/bin/python benchmarks/detection.py --sources hard --out benchmarks/results/detection_hard.json
    .venv/bin/python benchmarks/detection.py --quick         # a smoke run

Writes ``benchmarks/results/detection.json`` and prints Markdown tables.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fiftyone_csl as fcsl  # noqa: E402
import sources  # noqa: E402
from fiftyone_csl.plugin.core import metrics  # noqa: E402
from fiftyone_csl.plugin.core.corrupt import inject_into_sequences, inject_per_sequence  # noqa: E402
from fiftyone_csl.plugin.core.scores import ALL_PEERS  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ("mislabel", "disorder", "boundary")
CONDITIONS = {
    "r05": dict(rate=0.05),
    "r10": dict(rate=0.10),
    "r20": dict(rate=0.20),
    "weak": dict(rate=0.10, weak=True),
    "noisy": dict(rate=0.10, train_noise=0.10),
    # one error of each kind in every video, 20-30% of its frames wrong
    "three": dict(per_video=KINDS, share=(0.2, 0.3)),
    "three_weak": dict(per_video=KINDS, share=(0.2, 0.3), weak=True),
}
# the conditions each source runs by default
DEFAULT_CONDITIONS = {"demo": ["r05", "r10", "r20", "weak", "noisy"], "basicmotions": ["r05", "r10", "r20", "weak",
                      "noisy"], "hard": ["three", "three_weak"]}  # fmt: skip


def inject_per_video(labels_list, kinds, share, num_classes, rng):
    """One error of each of ``kinds`` in every sequence, ``share`` of its frames wrong."""
    return inject_per_sequence(labels_list, kinds, share, num_classes, rng)


ABLATIONS = {
    "tcn": dict(model="tcn"),
    "mlp": dict(model="mlp"),
    "in_sample": dict(cross_fit=False),
}


def _trajectory_scores(results):
    """Scores derived from the same trajectories: checkpoint subsets."""
    extra = {}
    for sid, video in results.videos.items():
        loss = video.trajectory.loss
        extra[sid] = {
            "csl_every5": loss[:, 4::5].mean(1) if loss.shape[1] >= 5 else loss.mean(1),
            "csl_epochs10": loss[:, :10].mean(1),
            "csl_epochs20": loss[:, :20].mean(1),
        }
    return extra


def run_one(
    source, condition, seed, epochs, folds, model="transformer", cross_fit=True, with_extras=True, **train_kwargs
):
    settings = CONDITIONS[condition]
    features, clean, classes = sources.SOURCES[source](weak=settings.get("weak", False))
    rng = np.random.default_rng(seed)
    base, noise = clean, [np.full(len(y), "", dtype=object) for y in clean]
    if settings.get("train_noise"):
        # label noise first: the models train through it, and it is not scored
        base, noise = inject_into_sequences(clean, ("mislabel",), settings["train_noise"], len(classes), rng)
    if settings.get("per_video"):
        given, types = inject_per_video(base, settings["per_video"], settings["share"], len(classes), rng)
    else:
        given, types = inject_into_sequences(base, KINDS, settings["rate"], len(classes), rng)
    # an error is a frame whose given label differs from the truth
    types = [np.where(g != c, t, "") for g, c, t in zip(given, clean, types)]
    evaluate = [~((n != "") & (t == "") & (g != c)) for n, t, g, c in zip(noise, types, given, clean)]
    started = time.time()
    results = fcsl.compute_csl_arrays(
        features,
        given,
        classes,
        epochs=epochs,
        folds=folds,
        seed=seed,
        model=model,
        cross_fit=cross_fit,
        peer_scores=ALL_PEERS,
        progress=False,
        **train_kwargs,
    )
    seconds = time.time() - started
    names = list(results.videos)
    extras = _trajectory_scores(results) if with_extras else {}
    score_names = ["csl", *ALL_PEERS] + (list(next(iter(extras.values()))) if extras else [])
    keep = np.concatenate(evaluate)
    all_types = np.concatenate(types)[keep]
    row = {"source": source, "condition": condition, "seed": seed, "model": model, "cross_fit": cross_fit}
    row["seconds"] = round(seconds, 1)
    row["frames"] = int(keep.sum())
    row["scores"] = {}
    for name in score_names:
        per_video = [
            results.videos[n].scores[name] if name in results.videos[n].scores else extras[n][name] for n in names
        ]
        values = np.concatenate(per_video)[keep]
        report = metrics.detection_report(values, all_types)
        sweep = metrics.eda_sweep((g[k], (t != "")[k], s[k]) for g, t, s, k in zip(given, types, per_video, evaluate))
        report["eda_sweep"] = sweep["eda"]
        row["scores"][name] = report
    csl_videos = [
        (g[k], (t != "")[k], results.videos[n].scores["csl"][k]) for n, g, t, k in zip(names, given, types, evaluate)
    ]
    row["eda_csl_auto_threshold"] = metrics.eda(csl_videos, results.threshold)
    row["type_accuracy"] = metrics.type_accuracy(results.segments(), dict(zip(names, types)))
    # what a reviewer receives: the suspect segments against the error events (frames kept
    # out of evaluation, the training noise, count as clean here)
    row["segments"] = metrics.segment_report(
        (results.videos[n].segments, np.where(k, t, ""), np.asarray(c, dtype=object), results.videos[n].frame_numbers)
        for n, t, c, k in zip(names, types, [np.asarray(classes, dtype=object)[y] for y in clean], evaluate)
    )
    row["segmentation"] = metrics.segmentation_report(
        (results.videos[n].trajectory.final_probs.argmax(1), c) for n, c in zip(names, clean)
    )
    return row


def _mean_sd(values):
    values = [v for v in values if v == v]
    return (float(np.mean(values)), float(np.std(values))) if values else (float("nan"), float("nan"))


def summarise(runs):
    summary = {}
    for row in runs:
        key = f"{row['source']}/{row['condition']}/{row['model']}/{'xfit' if row['cross_fit'] else 'insample'}"
        summary.setdefault(key, []).append(row)
    out = {}
    for key, rows in summary.items():
        entry = {"seeds": [r["seed"] for r in rows], "scores": {}}
        for name in rows[0]["scores"]:
            entry["scores"][name] = {}
            for kind in (*KINDS, "all"):
                for metric in ("auroc", "ap"):
                    entry["scores"][name][f"{kind}_{metric}"] = _mean_sd(
                        [r["scores"][name].get(kind, {}).get(metric, float("nan")) for r in rows]
                    )
            entry["scores"][name]["eda_sweep"] = _mean_sd([r["scores"][name]["eda_sweep"] for r in rows])
        entry["eda_csl_auto_threshold"] = _mean_sd([r["eda_csl_auto_threshold"] for r in rows])
        entry["type_accuracy"] = _mean_sd([r["type_accuracy"]["accuracy"] for r in rows])
        entry["segments"] = {
            kind: {
                metric: _mean_sd([_segment_value(r, kind, metric) for r in rows])
                for metric in ("events", "event_recall", "flag_precision", "type_accuracy", "label_accuracy",
                               "boundary_error")
            }
            for kind in ("all", *KINDS)
        }  # fmt: skip
        for metric in rows[0]["segmentation"]:
            entry[f"segmenter_{metric}"] = _mean_sd([r["segmentation"][metric] for r in rows])
        entry["seconds"] = _mean_sd([r["seconds"] for r in rows])
        out[key] = entry
    return out


def _segment_value(row, kind, metric):
    report = row["segments"]
    if kind != "all":
        report = report["by_kind"].get(kind, {})
        if metric == "flag_precision":  # flags are not split by kind
            return float("nan")
    return report.get(metric, float("nan"))


def _pct(value):
    return "-" if value != value else f"{100 * value:.0f}%"


def markdown(summary, source_names, conditions):
    lines = []
    cols = [(s, c) for s in source_names for c in conditions if f"{s}/{c}/transformer/xfit" in summary]
    lines += [
        "Suspect segments against error events (CSL flags at ln C), mean over seeds: event recall, "
        "flag precision, type accuracy, suggested-label accuracy (mislabel, disorder), boundary error in frames:",
        "",
        "| source / condition | events | recall (mis / dis / bnd) | precision | type acc. (mis / dis / bnd) "
        "| label acc. | boundary error |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, c in cols:
        seg = summary[f"{s}/{c}/transformer/xfit"]["segments"]
        recall = " / ".join(_pct(seg[k]["event_recall"][0]) for k in KINDS)
        typed = " / ".join(_pct(seg[k]["type_accuracy"][0]) for k in KINDS)
        off = seg["boundary"]["boundary_error"][0]
        lines.append(
            f"| {s} {c} | {seg['all']['events'][0]:.0f} | {_pct(seg['all']['event_recall'][0])} ({recall}) | "
            f"{_pct(seg['all']['flag_precision'][0])} | {_pct(seg['all']['type_accuracy'][0])} ({typed}) | "
            f"{_pct(seg['all']['label_accuracy'][0])} | {'-' if off != off else f'{off:.1f}'} |"
        )
    lines += [""]
    header = "| score | " + " | ".join(f"{s} {c}" for s, c in cols) + " |"
    lines += [
        "Frame AUROC, mean over seeds, as mislabel / disorder / boundary:",
        "",
        header,
        "|---" * (len(cols) + 1) + "|",
    ]
    first = summary[f"{cols[0][0]}/{cols[0][1]}/transformer/xfit"]
    for name in first["scores"]:
        cells = []
        for s, c in cols:
            sc = summary[f"{s}/{c}/transformer/xfit"]["scores"][name]
            cells.append(" / ".join(f"{sc[f'{k}_auroc'][0]:.3f}" for k in KINDS))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "CSL: spread (sd over seeds) of all-error AUROC, segment EDA, type accuracy, segmenter:", ""]
    lines += [
        "| source / condition | AUROC (all) | EDA at ln C | EDA sweep | type accuracy | F1@10/25/50 | Edit |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, c in cols:
        e = summary[f"{s}/{c}/transformer/xfit"]
        a = e["scores"]["csl"]["all_auroc"]
        f1 = "/".join(f"{e[f'segmenter_f1@{k}'][0]:.0f}" for k in (10, 25, 50))
        lines.append(
            f"| {s} {c} | {a[0]:.3f} ± {a[1]:.3f} | {e['eda_csl_auto_threshold'][0]:.3f} | "
            f"{e['scores']['csl']['eda_sweep'][0]:.3f} | {e['type_accuracy'][0]:.2f} | {f1} | "
            f"{e['segmenter_edit'][0]:.1f} |"
        )
    ablation_keys = [k for k in summary if not k.endswith("transformer/xfit")]
    if ablation_keys:
        lines += [
            "",
            "Ablations (CSL, all-error AUROC, mean ± sd):",
            "",
            "| setting | AUROC | seconds |",
            "|---|---|---|",
        ]
        for k in sorted(ablation_keys):
            a = summary[k]["scores"]["csl"]["all_auroc"]
            lines.append(f"| {k} | {a[0]:.3f} ± {a[1]:.3f} | {summary[k]['seconds'][0]:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sources", nargs="+", default=list(sources.SOURCES))
    parser.add_argument("--conditions", nargs="+", help="default: each source's own (DEFAULT_CONDITIONS)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 seed, 6 epochs, 2 conditions: a smoke run")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "detection.json"))
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.conditions, args.no_ablations = [0], 6, ["r10", "three_weak"], True
    runs = []
    for source in args.sources:
        for condition in args.conditions or DEFAULT_CONDITIONS[source]:
            for seed in args.seeds:
                runs.append(run_one(source, condition, seed, args.epochs, args.folds))
                print(f"[detection] {source} {condition} seed {seed}: {runs[-1]['seconds']} s", flush=True)
        if not args.no_ablations and source != "hard":
            for name, setting in ABLATIONS.items():
                for seed in args.seeds:
                    runs.append(run_one(source, "weak", seed, args.epochs, args.folds, with_extras=False, **setting))
                    print(f"[detection] {source} weak {name} seed {seed}: {runs[-1]['seconds']} s", flush=True)
    summary = summarise(runs)
    out = {
        "benchmark": "frame-level detection of injected errors: CSL vs peers",
        "command": " ".join(["python", "benchmarks/detection.py", *sys.argv[1:]]),
        "settings": {"epochs": args.epochs, "folds": args.folds, "conditions": CONDITIONS, "kinds": KINDS},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "summary": summary,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(markdown(summary, args.sources, args.conditions or list(CONDITIONS)))


if __name__ == "__main__":
    main()

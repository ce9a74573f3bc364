"""Suspects from the decoder against suspects from the CSL rules, side by side
on the same runs.

For each source, condition and seed: inject errors, run the engine on plain
sequences (``fcsl.compute_csl_arrays``, 5-fold cross-fitted transformer, 30
epochs), then make the suspects of every video from the same trajectories: by the
CSL rules (``core.flags.suspect_segments`` at ``ln C``) and by the decoder
(``core.edits.decode_suspects``: each video decoded with the procedure of the
others, at several evidence thresholds), on the probabilities the run's
decoder reads (the second round's where ``rounds="auto"`` trained one) and,
as ``decoder-one-round``, on the first round's. Each set is
judged against the injected events: event recall, flag precision, type
accuracy, fix right, and what accepting every suggestion does (wrong frames
before / after, right frames broken). Frame AUROC of CSL and of the
decoder's wrong-label probability too.

Sources: ``hard`` (8 phases, a phase repeated, two pairs of look-alike
phases) and ``nonchain`` (optional phases skipped, a phase repeated, 12-80
frames a phase). Conditions: ``three`` / ``three_weak`` (one error of each
kind in every video, 20-30% of its frames wrong; strong / weak features) and
``clean_weak`` (one error in about half of the videos, weak features).

    .venv/bin/python benchmarks/decoder.py            # about 15 minutes on 2 cores
    .venv/bin/python benchmarks/decoder.py --quick    # one seed, few epochs

Writes ``benchmarks/results/decoder.json`` and prints Markdown tables.
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
from fiftyone_csl.plugin.core import metrics  # noqa: E402
from fiftyone_csl.plugin.core import procedure as fcproc  # noqa: E402
from fiftyone_csl.plugin.core.corrupt import inject, inject_per_sequence  # noqa: E402
from fiftyone_csl.plugin.core.edits import GATE, MIN_EVIDENCE, SWAP_MARGIN, decode_suspects  # noqa: E402
from fiftyone_csl.plugin.core.flags import suspect_segments  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ("mislabel", "disorder", "boundary")
CONDITIONS = {
    "three": dict(weak=False),
    "three_weak": dict(weak=True),
    "clean_weak": dict(weak=True, clean=True),
}
# decoder variants: (name, min_evidence, gate, swap_margin, round); the first is the default. "run": the
# probabilities the run's decoder reads (the second round's where it ran, rounds="auto"); 1: the first round's
VARIANTS = (
    ("decoder", None, None, None, "run"),
    ("decoder-one-round", None, None, None, 1),
    ("decoder@4", 4.0, None, None, "run"),
    ("decoder@16", 16.0, None, None, "run"),
    ("decoder-ungated", None, 0.0, None, "run"),
    ("decoder-no-swap-completion", None, None, -np.inf, "run"),
)


def _inject(clean, settings, num_classes, rng):
    if not settings.get("clean"):
        return inject_per_sequence(clean, KINDS, (0.2, 0.3), num_classes, rng)
    given, types = [], []
    for labels in clean:
        new, kind_of = np.asarray(labels).copy(), np.full(len(labels), "", dtype=object)
        if rng.random() < 0.5:
            kind = str(rng.choice(KINDS))
            new, mask = inject(new, kind, num_classes, rng)
            kind_of[mask & (new != labels)] = kind
        given.append(new)
        types.append(kind_of)
    return given, types


def judge(per_video, classes):
    """Segment and fix reports of ``[(segments, given, clean, types, numbers)]``."""
    names = np.asarray(classes, dtype=object)
    seg = metrics.segment_report((s, t, names[c], f) for s, g, c, t, f in per_video)
    fix = metrics.fix_report(per_video, classes)
    return dict(
        events=seg["events"], flags=seg["flags"], event_recall=seg["event_recall"],
        flag_precision=seg["flag_precision"], type_accuracy=seg["type_accuracy"],
        type_by_kind={k: v["type_accuracy"] for k, v in seg["by_kind"].items()},
        recall_by_kind={k: v["event_recall"] for k, v in seg["by_kind"].items()},
        fix_right=fix["fix_right"], fix_by_kind=fix["by_kind"], wrong_before=fix["wrong_before"],
        wrong_after=fix["wrong_after"], right_broken=fix["right_broken"], right_frames=fix["right_frames"],
    )  # fmt: skip


def run_one(source, condition, seed, epochs, folds):
    settings = CONDITIONS[condition]
    features, clean, classes = sources.SOURCES[source](weak=settings["weak"])
    rng = np.random.default_rng(seed)
    given, types = _inject(clean, settings, len(classes), rng)
    types = [np.where(g != c, t, "") for g, c, t in zip(given, clean, types)]
    started = time.time()
    results = fcsl.compute_csl_arrays(features, given, classes, epochs=epochs, folds=folds, seed=seed, progress=False)
    seconds = time.time() - started
    names = list(results.videos)
    counts = fcproc.ProcedureCounts.of_runs([fcproc.label_runs(g) for g in given], len(classes))
    threshold = results.threshold
    rules, decoded = [], {name: [] for name, *_ in VARIANTS}
    csl_all, wrong_all, is_error = [], [], []
    for n, g, c, t in zip(names, given, clean, types):
        v = results.videos[n]
        trajectory = v.trajectory
        csl = v.scores["csl"]
        rule = suspect_segments(n, v.frame_numbers, v.labels, csl, trajectory.mean_probs, classes, threshold)
        rules.append((rule, g, c, t, v.frame_numbers))
        for name, evidence, gate, margin, which in VARIANTS:
            probs = trajectory.emission_probs if which == "run" else trajectory.mean_probs
            found, _, p_wrong, _ = decode_suspects(n, v.frame_numbers, v.labels, csl, probs, counts, classes,
                                                   threshold, min_evidence=evidence, gate=gate,
                                                   swap_margin=margin)  # fmt: skip
            decoded[name].append((found, g, c, t, v.frame_numbers))
            if name == "decoder":
                wrong = p_wrong
        csl_all.append(csl)
        wrong_all.append(wrong)
        is_error.append(t != "")
    truth = np.concatenate(is_error)
    row = dict(source=source, condition=condition, seed=seed, seconds=round(seconds, 1))
    row["second_round"] = {k: results.second_round[k] for k in ("ran", "fit", "masked_frames", "reason")}
    row["frame_auroc"] = {
        "csl": metrics.frame_auroc_ap(np.concatenate(csl_all), truth)["auroc"],
        "decoder_wrong_prob": metrics.frame_auroc_ap(np.concatenate(wrong_all), truth)["auroc"],
    }
    row["rules"] = judge(rules, classes)
    row["decoder"] = {name: judge(decoded[name], classes) for name, *_ in VARIANTS}
    return row


def summarise(rows):
    out = {}
    for row in rows:
        key = f"{row['source']}/{row['condition']}"
        entry = out.setdefault(key, {"runs": []})
        entry["runs"].append(row)
    for entry in out.values():
        runs = entry.pop("runs")
        methods = {"rules": [r["rules"] for r in runs]}
        for name, *_ in VARIANTS:
            methods[name] = [r["decoder"][name] for r in runs]
        entry["methods"] = {}
        for m, reports in methods.items():
            mean = lambda k, rs=reports: float(np.nanmean([r[k] for r in rs]))  # noqa: E731
            total = lambda k, rs=reports: int(sum(r[k] for r in rs))  # noqa: E731
            entry["methods"][m] = dict(
                event_recall=mean("event_recall"), flag_precision=mean("flag_precision"),
                type_accuracy=mean("type_accuracy"), fix_right=mean("fix_right"), events=total("events"),
                flags=total("flags"), wrong_before=total("wrong_before"), wrong_after=total("wrong_after"),
                right_broken=total("right_broken"), right_frames=total("right_frames"),
            )  # fmt: skip
        entry["frame_auroc"] = {k: float(np.mean([r["frame_auroc"][k] for r in runs])) for k in runs[0]["frame_auroc"]}
        entry["seeds"] = [r["seed"] for r in runs]
        entry["second_round_ran"] = [r["second_round"]["ran"] for r in runs]
        entry["first_round_fit"] = [r["second_round"]["fit"] for r in runs]
    return out


def markdown(summary):
    lines = [
        "| source / condition | suspects | events | recall | flag precision | type accuracy | fix right "
        "| accept every suggestion: wrong frames | right frames broken |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in summary.items():
        for m, r in entry["methods"].items():
            broken = f"{r['right_broken']} ({100 * r['right_broken'] / max(r['right_frames'], 1):.1f}%)"
            lines.append(
                f"| {key} | {m} | {r['events']} | {r['event_recall']:.2f} | {r['flag_precision']:.2f} | "
                f"{r['type_accuracy']:.2f} | {r['fix_right']:.2f} | {r['wrong_before']} -> {r['wrong_after']} | "
                f"{broken} |"
            )
    lines += ["", "| source / condition | CSL frame AUROC | decoder wrong-label probability AUROC |", "|---|---|---|"]
    for key, entry in summary.items():
        a = entry["frame_auroc"]
        lines.append(f"| {key} | {a['csl']:.3f} | {a['decoder_wrong_prob']:.3f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sources", nargs="*", default=["hard", "nonchain"])
    parser.add_argument("--conditions", nargs="*", default=list(CONDITIONS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "decoder.json"))
    args = parser.parse_args()
    epochs, folds, seeds = (8, 3, [0]) if args.quick else (30, 5, args.seeds)
    rows = []
    for source in args.sources:
        for condition in args.conditions:
            for seed in seeds:
                row = run_one(source, condition, seed, epochs, folds)
                rows.append(row)
                print(source, condition, seed, row["seconds"], "s", flush=True)
    summary = summarise(rows)
    report = dict(
        epochs=epochs, folds=folds, min_evidence_default=MIN_EVIDENCE, gate_default=GATE,
        swap_margin_default=SWAP_MARGIN, summary=summary, runs=rows,
        command=" ".join(["benchmarks/decoder.py", *sys.argv[1:]]),
    )  # fmt: skip
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1, default=float)
    print(markdown(summary))


if __name__ == "__main__":
    main()

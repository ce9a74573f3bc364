"""The simulation's precision estimate against the truth, for the decoder's
flags.

For each source, condition and seed: inject errors, run the engine with the
simulation beside it (``fcsl.compute_csl_arrays(..., simulation=True)``, 5-fold
cross-fitted transformer, 30 epochs), and compare, at every evidence
threshold the simulation tried, its raw estimate of the flag precision with
the precision measured against the injected truth. The mean of (estimate -
truth) at the evidence threshold the raw estimate aims with is the bias
``core.simulation.PRECISION_BIAS`` corrects. Each row also judges the flags
at the evidence threshold aimed with the raw and with the corrected estimate
(event recall, flag precision, type accuracy, fix right).

    .venv/bin/python benchmarks/calibration.py              # about 45 minutes on 2 cores
    .venv/bin/python benchmarks/calibration.py --quick      # one row, few epochs

Writes ``benchmarks/results/calibration.json`` and prints a Markdown table.
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
from decoder import CONDITIONS, _inject, judge  # noqa: E402
from fiftyone_csl.plugin.core import procedure as fcproc  # noqa: E402
from fiftyone_csl.plugin.core import simulation as fcsim  # noqa: E402
from fiftyone_csl.plugin.core.edits import decode_suspects  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def measured_precision(per_video, evidence):
    """Flag precision of the suspects with at least ``evidence`` nats, against
    the injected events (a flag is right when it overlaps one), or None."""
    flags = right = 0
    for suspects, types in per_video:
        wrong = types != ""
        for s in suspects:
            if s.evidence >= evidence:
                flags += 1
                right += bool(wrong[s.start : s.stop].any())
    return right / flags if flags else None


def run_one(source, condition, seed, epochs, folds, target):
    settings = CONDITIONS[condition]
    features, clean, classes = sources.SOURCES[source](weak=settings["weak"])
    rng = np.random.default_rng(seed)
    given, types = _inject(clean, settings, len(classes), rng)
    types = [np.where(g != c, t, "") for g, c, t in zip(given, clean, types)]
    started = time.time()
    results = fcsl.compute_csl_arrays(
        features, given, classes, epochs=epochs, folds=folds, seed=seed, simulation=True,
        target_precision=target, progress=False,
    )  # fmt: skip
    seconds = time.time() - started
    report = results.simulation
    if report.get("knob") != "evidence":
        raise SystemExit(f"the run did not flag by the decoder: {report.get('knob')}")
    counts = fcproc.ProcedureCounts.of_runs([fcproc.label_runs(g) for g in given], len(classes))
    everything = []
    for n, t in zip(results.videos, types):
        v = results.videos[n]
        found = decode_suspects(n, v.frame_numbers, v.labels, v.scores["csl"], v.trajectory.mean_probs, counts,
                                classes, results.threshold, min_evidence=-np.inf)[0]  # fmt: skip
        everything.append((found, t))
    steps = []
    for e in report["thresholds"]:
        raw = fcsim._precision_at(report, e, 0.0) if report["errors_estimate"] is not None else None
        steps.append(dict(evidence=e, estimated=raw, measured=measured_precision(everything, e)))
    raw_aim = fcsim._aim(report, target, 0.0) if report["errors_estimate"] is not None else None
    row = dict(
        source=source, condition=condition, seed=seed, seconds=round(seconds, 1), target=target,
        errors_estimate=report["errors_estimate"], true_errors=int(sum(len(fcsim.error_events(t)) for t in types)),
        steps=steps, raw_aimed_evidence=raw_aim, aimed_evidence=report["aimed_evidence"],
        bias_used=report.get("bias"),
    )  # fmt: skip
    by_e = {s["evidence"]: s for s in steps}
    if raw_aim is not None:
        row["at_raw_aim"] = by_e[raw_aim]
    names = np.asarray(classes, dtype=object)
    clean_by_name = dict(zip(results.videos, clean))
    for key, evidence in (("flags_at_raw_aim", raw_aim), ("flags_at_default", report["min_evidence"])):
        if evidence is None:
            continue
        per_video = []
        for (found, t), n in zip(everything, results.videos):
            v = results.videos[n]
            kept = [s for s in found if s.evidence >= evidence]
            per_video.append((kept, v.labels, clean_by_name[n], t, v.frame_numbers))
        row[key] = judge(per_video, names)
    return row


def summarise(rows):
    pairs = [r["at_raw_aim"] for r in rows if r.get("at_raw_aim") and r["at_raw_aim"]["measured"] is not None]
    every = [
        (s["estimated"], s["measured"])
        for r in rows
        for s in r["steps"]
        if s["estimated"] is not None and s["measured"] is not None
    ]
    return dict(
        rows=len(rows),
        bias_at_raw_aim=float(np.mean([p["estimated"] - p["measured"] for p in pairs])) if pairs else None,
        mean_abs_error_at_raw_aim=(
            float(np.mean([abs(p["estimated"] - p["measured"]) for p in pairs])) if pairs else None
        ),
        bias_every_step=float(np.mean([a - b for a, b in every])) if every else None,
        mean_abs_error_every_step=float(np.mean([abs(a - b) for a, b in every])) if every else None,
    )


def markdown(rows, summary):
    lines = [
        "| source / condition / seed | errors: estimated / true | evidence aimed (raw) | precision estimated (raw) "
        "| precision measured | recall there | evidence aimed (corrected) | precision measured | recall there |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        raw = r.get("at_raw_aim") or {}
        fr, fd = r.get("flags_at_raw_aim") or {}, r.get("flags_at_default") or {}
        est = r["errors_estimate"]

        def fmt(x):
            return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.2f}"

        lines.append(
            f"| {r['source']} / {r['condition']} / {r['seed']} | {fmt(est)} / {r['true_errors']} | "
            f"{fmt(r['raw_aimed_evidence'])} | {fmt(raw.get('estimated'))} | {fmt(raw.get('measured'))} | "
            f"{fmt(fr.get('event_recall'))} | {fmt(r['aimed_evidence'])} | {fmt(fd.get('flag_precision'))} | "
            f"{fmt(fd.get('event_recall'))} |"
        )
    lines.append("")
    lines.append(
        f"Bias of the raw estimate at its aimed evidence (estimate - truth, mean over {summary['rows']} rows): "
        f"{summary['bias_at_raw_aim']}; mean absolute error {summary['mean_abs_error_at_raw_aim']}; "
        f"over every evidence step: bias {summary['bias_every_step']}, "
        f"mean absolute error {summary['mean_abs_error_every_step']}."
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sources", nargs="*", default=["hard", "nonchain"])
    parser.add_argument("--conditions", nargs="*", default=list(CONDITIONS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "calibration.json"))
    args = parser.parse_args()
    epochs, folds = (8, 3) if args.quick else (30, 5)
    plan = [(s, c, k) for s in args.sources for c in args.conditions for k in args.seeds]
    if args.quick:
        plan = plan[:1]
    rows = []
    for source, condition, seed in plan:
        row = run_one(source, condition, seed, epochs, folds, args.target)
        rows.append(row)
        print(source, condition, seed, row["seconds"], "s", flush=True)
        summary = summarise(rows)
        report = dict(
            epochs=epochs, folds=folds, target=args.target, precision_bias_in_code=fcsim.PRECISION_BIAS,
            summary=summary, runs=rows, command=" ".join(["benchmarks/calibration.py", *sys.argv[1:]]),
        )  # fmt: skip
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:  # after every row: a long run killed keeps what it measured
            json.dump(report, f, indent=1, default=float)
    print(markdown(rows, summarise(rows)))


if __name__ == "__main__":
    main()

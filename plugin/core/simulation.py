"""The simulation beside a run: the user's own labels with known errors added.

CSL ranks frames well, but alone it cannot say how many of the flags are
real errors, nor learn what errors look like in this data. The simulation
takes a copy of the run's labels, injects one error of each kind
(mislabel, disorder, boundary shift) into every video, trains and replays
the same models on that copy, and then:

-   fits a small detector (:mod:`~fiftyone_csl.plugin.dynamics`) on the
    copy's training dynamics, with the injected frames as errors and the
    frames the run is fairly sure of (CSL in its lower half) as clean ones,
    and applies it to the run: a per-frame error probability and kind;
-   measures how many injected errors the flags find at each threshold
    (recall ``R(t)``), which turns the run's own flag counts ``N(t)`` into an
    estimate of its number of errors, ``E = min_t N(t) / R(t)`` (every
    ``N(t)`` counts the found errors ``R(t) E`` plus false alarms), and of the
    precision of its flags, ``R(t) E / N(t)``;
-   with ``threshold="auto"``, chooses the lowest threshold whose estimated
    precision reaches the target.

A run that flags by the decoder (:mod:`~fiftyone_csl.plugin.core.edits`)
is judged the same way over its evidence threshold instead (nats, at the
run's CSL threshold): the knob ``report["knob"] == "evidence"``, the
thresholds tried are evidence values and ``report["min_evidence"]`` is the
one its flags use.

The raw estimate is biased (measured against the truth on every row of
``benchmarks/calibration.py``); for the decoder's flags :data:`PRECISION_BIAS`
is subtracted from it before it is reported or aimed with. When no evidence
threshold reaches the target, the flags use the strictest of those with the
best estimate that still flag something, and ``reached_target`` is False.

The estimate assumes the run's real errors are found about as often as the
injected ones. Injected errors of a kind the data does not have, or real
errors much subtler than the injected ones, bias it; the benchmarks compare
it with the measured precision.
"""

import os
import shutil
import time
from dataclasses import dataclass, replace

import numpy as np

from . import dynamics
from . import flags as fcflags
from .corrupt import inject_per_sequence
from .edits import MIN_EVIDENCE, decode_suspects
from .errors import CSLError
from .manifest import Manifest
from .metrics import error_events
from .stages import ERROR_PROB, check_folds, flag_video, procedure_counts, replay_and_score, train_into

KINDS = dynamics.KINDS
SHARE = (0.1, 0.2)
"""Share of each video's frames the simulation makes wrong."""
"""The precision ``threshold="auto"`` aims at when a simulation runs."""
STEPS = np.round(np.arange(0.0, 4.01, 0.25), 2)
"""Thresholds tried, in nats above ``ln C``."""
EVIDENCE_STEPS = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0)
"""Evidence thresholds tried for a run that flags by the decoder, in nats."""
PRECISION_BIAS = 0.19
"""Measured mean of (estimated - true) flag precision at the evidence the raw
estimate aims with, over the 12 rows of ``benchmarks/calibration.py``
(hard and non-chain sources x three conditions x seeds 0-1; per row 0.01 to
0.42, largest on mostly clean sets); subtracted from every estimate. Aiming
with the corrected estimate leaves a mean error of -0.03 on those rows."""
MIN_RECALL = 0.5
"""Thresholds at which the simulation finds fewer injected errors than this
are not used to count the run's errors."""


@dataclass
class Simulation:
    """What the simulation learnt about a run.

    Attributes:
        error_prob: ``{sample_id: (T,) float32}``: the detector's probability
            that each scored frame's label is wrong
        error_kind: ``{sample_id: (T,) str}``: its most likely error kind
        report: thresholds tried and, at each, the simulation's recall of
            injected errors and the run's number of suspect segments; the
            estimated number of errors, the chosen threshold and the
            estimated precision (see :func:`estimated_precision`)
    """

    error_prob: dict
    error_kind: dict
    report: dict


def estimated_precision(report: dict | None, threshold: float):
    """The estimated precision of the flags at ``threshold``, from a
    simulation report (the nearest threshold tried), or None."""
    if not report or report.get("errors_estimate") is None:
        return None
    knob = float(threshold)
    if report.get("knob") == "evidence":  # estimated at the run's CSL threshold, for its evidence threshold
        if abs(float(threshold) - float(report["threshold"])) > 1e-9:
            return None
        knob = float(report["min_evidence"])
    return _precision_at(report, knob, report.get("bias", 0.0))


def _precision_at(report, knob, bias):
    thresholds = np.asarray(report["thresholds"], dtype=float)
    k = int(np.argmin(np.abs(thresholds - knob)))
    flags, recall = report["flags"][k], report["recall"][k]
    if flags == 0:
        return None
    return float(np.clip(recall * report["errors_estimate"] / flags - bias, 0.0, 1.0))


def _segments(sid, sequence, scores, probs, classes, threshold):
    return fcflags.suspect_segments(sid, sequence.frame_numbers, sequence.labels, scores, probs, classes, threshold)


def _found(events, segments) -> int:
    return sum(any(min(s.stop, b) > max(s.start, a) for s in segments) for a, b, _ in events)


def _aim(report, target, bias):
    """The lowest knob whose estimated precision reaches ``target``; when
    none does, the strictest of those with the highest estimate that still
    flag something (the strictest of all when none flags)."""
    estimates = [(t, _precision_at(report, t, bias)) for t in report["thresholds"]]
    estimates = [(t, p) for t, p in estimates if p is not None]
    for t, p in estimates:
        if p >= target:
            return t
    if not estimates:
        return report["thresholds"][-1]
    best = max(p for _, p in estimates)
    return max(t for t, p in estimates if p >= best - 1e-9)


def evidence_report(real, simulated, classes, threshold, target, counts, sim_counts, aim=True, bias=None) -> dict:
    """:func:`precision_report` of a run that flags by the decoder: recall of
    injected errors and run flag counts over the evidence thresholds
    :data:`EVIDENCE_STEPS` at the CSL ``threshold`` (the decoder's gate),
    and the evidence threshold aimed at ``target`` (``aim``) or the
    default :data:`~fiftyone_csl.plugin.core.edits.MIN_EVIDENCE`.

    Args:
        counts, sim_counts: the procedure counts of the run and of the copy
    """
    bias = PRECISION_BIAS if bias is None else float(bias)
    thresholds = [float(e) for e in EVIDENCE_STEPS]
    real_ev, sim_ev = [], []
    for seq, csl, probs in real:
        suspects = decode_suspects(seq.sample_id, seq.frame_numbers, seq.labels, csl, probs, counts, classes,
                                   threshold, min_evidence=-np.inf)[0]  # fmt: skip
        real_ev.extend(s.evidence for s in suspects)
    for seq, csl, probs, types in simulated:
        suspects = decode_suspects(seq.sample_id, seq.frame_numbers, seq.labels, csl, probs, sim_counts, classes,
                                   threshold, min_evidence=-np.inf)[0]  # fmt: skip
        sim_ev.append((error_events(types), suspects))
    total = sum(len(events) for events, _ in sim_ev)
    recall, flags = [], []
    for e in thresholds:
        found = sum(_found(events, [s for s in suspects if s.evidence >= e]) for events, suspects in sim_ev)
        recall.append(found / total if total else 0.0)
        flags.append(int(sum(v >= e for v in real_ev)))
    usable = [n / r for n, r in zip(flags, recall) if r >= MIN_RECALL]
    report = dict(
        knob="evidence", thresholds=thresholds, recall=recall, flags=flags,
        errors_estimate=float(min(usable)) if usable else None, target_precision=target, bias=bias,
        threshold=float(threshold), aimed_threshold=float(threshold),
    )  # fmt: skip
    aimed = _aim(report, target, bias) if report["errors_estimate"] is not None else float(MIN_EVIDENCE)
    report["aimed_evidence"] = aimed
    report["min_evidence"] = aimed if aim else float(MIN_EVIDENCE)
    report["reached_target"] = bool((_precision_at(report, aimed, bias) or 0) >= target) if usable else False
    report["estimated_precision"] = estimated_precision(report, threshold)
    report["raw_estimated_precision"] = (
        _precision_at(report, report["min_evidence"], 0.0) if report["errors_estimate"] is not None else None
    )
    return report


def precision_report(real: list, simulated: list, classes: list, base: float, target: float, threshold=None) -> dict:
    """Recall of injected errors and run flag counts over thresholds
    ``base + STEPS`` (of the CSL rules), the estimated number of errors and
    the threshold.

    Args:
        real: per video ``(sequence, csl, mean_probs)`` of the run
        simulated: per video ``(sequence, csl, mean_probs, error_types)`` of
            the simulation
        base: ``ln C``
        target: the precision to aim at
        threshold: a threshold the user chose (kept), or None to choose one
    """
    thresholds = [float(base + s) for s in STEPS]
    if threshold is not None and all(abs(t - threshold) > 1e-9 for t in thresholds):
        thresholds = sorted([*thresholds, float(threshold)])
    recall, flags = [], []
    total = sum(len(error_events(types)) for *_, types in simulated)
    for t in thresholds:
        found = sum(
            _found(error_events(types), _segments(seq.sample_id, seq, csl, probs, classes, t))
            for seq, csl, probs, types in simulated
        )
        recall.append(found / total if total else 0.0)
        flags.append(int(sum(len(_segments(seq.sample_id, seq, csl, probs, classes, t)) for seq, csl, probs in real)))
    usable = [n / r for n, r in zip(flags, recall) if r >= MIN_RECALL]
    errors = float(min(usable)) if usable else None
    # the bias is measured for the decoder's flags; the CSL rules' (runs without label runs) keep the raw estimate
    report = dict(thresholds=thresholds, recall=recall, flags=flags, errors_estimate=errors, target_precision=target,
                  knob="csl", bias=0.0)  # fmt: skip
    aimed = _aim(report, target, 0.0) if errors is not None else thresholds[-1]
    report["aimed_threshold"] = aimed
    report["reached_target"] = bool((estimated_precision(report, aimed) or 0) >= target)
    report["threshold"] = aimed if threshold is None else float(threshold)
    report["estimated_precision"] = estimated_precision(report, report["threshold"])
    return report


def simulated_sequences(sequences: list, num_classes: int, seed: int) -> tuple:
    """Copies of ``sequences`` with one error of each kind injected into each
    (about ``SHARE`` of its frames), and the per-frame injected kinds."""
    if any((np.asarray(s.labels) < 0).any() or (s.labelled is not None and not np.all(s.labelled)) for s in sequences):
        raise CSLError("simulation needs every scored frame labelled; sparse labels are not supported")
    rng = np.random.default_rng(10_007 + int(seed))
    labels, types = inject_per_sequence([s.labels for s in sequences], KINDS, SHARE, num_classes, rng)
    return [replace(s, labels=np.asarray(y, dtype=np.int64)) for s, y in zip(sequences, labels)], types


def run_simulation(
    work_dir, manifest: Manifest, sequences, config, device, precision, progress, real_videos, threshold, target
) -> Simulation:
    """Trains and replays the run's models on a copy of its labels with known
    errors in ``work_dir`` (removed afterwards), fits the detector and
    estimates the precision of the flags.

    Args:
        real_videos: the run's ``{sample_id: VideoScores}``
        threshold: the user's threshold, or None for one aimed at ``target``
    """

    started = time.time()
    classes = manifest.classes
    sim_sequences, sim_types = simulated_sequences(sequences, len(classes), config.seed)
    fold_classes, _ = check_folds(sim_sequences, manifest.folds, config, classes)
    sim_manifest = Manifest(None, None, None, classes, manifest.in_dim, {}, config.to_dict(), manifest.folds,
                            fold_classes)  # fmt: skip
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    base = fcflags.auto_threshold(len(classes))
    try:
        with progress.prefixed("simulation "):
            train_into(work_dir, sim_manifest, sim_sequences, config, progress, device)
            sim_videos = replay_and_score(work_dir, sim_manifest, sim_sequences, device, precision, progress, base, ())
        real, simulated, sim_x, kept, kept_types = [], [], [], [], []
        cut = float(np.median(np.concatenate([v.scores["csl"] for v in real_videos.values()])))
        for s, sim_s, types in zip(sequences, sim_sequences, sim_types):
            rv, sv = real_videos[s.sample_id], sim_videos[s.sample_id]
            real_traj, sim_traj = rv.trajectory, sv.trajectory
            real.append((s, rv.scores["csl"], real_traj.mean_probs))
            simulated.append((sim_s, sv.scores["csl"], sim_traj.mean_probs, types))
            x = dynamics.frame_features(sim_traj, sim_s.labels)
            # the copy also holds the run's own unknown errors: clean examples only where the run is fairly sure
            keep = (types != "") | (rv.scores["csl"] <= cut)
            sim_x.append(x[keep])
            kept_types.append(types[keep])
            kept.append(int(keep.sum()))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    model = dynamics.fit_detector(sim_x, kept_types, seed=config.seed)
    error_prob, error_kind = {}, {}
    for s in sequences:
        rv = real_videos[s.sample_id]
        prob, kind = dynamics.detect(model, dynamics.frame_features(rv.trajectory, s.labels))
        error_prob[s.sample_id] = prob
        error_kind[s.sample_id] = kind if kind is not None else np.full(len(prob), "", dtype=object)
    counts, sim_counts = procedure_counts(manifest), procedure_counts(sim_manifest)
    if counts is not None and sim_counts is not None:  # the run flags by the decoder: judge its evidence
        csl_threshold = base if threshold is None else float(threshold)
        report = evidence_report(real, simulated, classes, csl_threshold, target, counts, sim_counts,
                                 aim=threshold is None)  # fmt: skip
    else:
        report = precision_report(real, simulated, classes, base, target, threshold)
    report["injected_events"] = int(sum(len(error_events(t)) for t in sim_types))
    report["injected_share"] = float(np.mean(np.concatenate([t != "" for t in sim_types])))
    report["seconds"] = round(time.time() - started, 2)
    return Simulation(error_prob, error_kind, report)


def simulate_and_flag(run_dir, manifest: Manifest, sequences, config, device, precision, progress, videos,
                      threshold, target_precision) -> tuple:  # fmt: skip
    """Runs the simulation beside a run (:mod:`~fiftyone_csl.plugin.simulation`)
    and flags the run again with its threshold (``threshold`` None: the one
    aimed at ``target_precision``). Returns ``(videos, simulation)``; each
    video's scores gain ``"error_prob"``, its segments and decoded labels
    follow the threshold."""

    sim = run_simulation(
        os.path.join(run_dir, "simulation"), manifest, sequences, config, device, precision, progress, videos,
        threshold, target_precision,
    )  # fmt: skip
    manifest.simulation = sim.report  # the decoder's flags read their evidence threshold from it
    route = manifest.fold_router()
    counts = procedure_counts(manifest)
    for sid, v in videos.items():  # the scores stand; the flags and the decoded labels follow the new threshold
        v.segments, v.decoded, v.wrong_prob, v.decoded_confidence = flag_video(
            sid, v.frame_numbers, v.labels, v.scores["csl"], v.trajectory.emission_probs, manifest, route(sid),
            sim.report["threshold"], counts, decoded=True,
        )  # fmt: skip
        v.scores[ERROR_PROB], v.error_kind = sim.error_prob[sid], sim.error_kind[sid]
    return videos, sim

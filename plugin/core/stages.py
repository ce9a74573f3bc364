"""The audit over plain sequences, with no FiftyOne: folds, checkpointed
training, replay, scores and suspect segments.

:func:`compute_csl_arrays` is the public face; the FiftyOne steps
(:mod:`fiftyone_csl.plugin.steps`) run the same functions on sequences read
from a dataset.
"""

import logging
import os

import numpy as np

from ...models import build_head
from . import dynamics
from . import edits as fcedits
from . import flags as fcflags
from . import procedure as fcproc
from . import scores as fcscores
from . import sequences as fcseq
from . import train as fctrain
from .errors import CSLError
from .manifest import Manifest
from .replay import Replayer, load_trajectory
from .results import Predictions, VideoScores
from .utils import atomic_save_npz, sha256_file

logger = logging.getLogger(__name__)

UNSEEN_CLASS = "unseen_class"
ERROR_PROB = "error_prob"
"""The score the simulation's detector writes (``frames.<key>_error_prob``)."""


def check_peer_scores(peer_scores, fiftyone: bool = True) -> list:
    """The peer score names without ``"csl"``; unknown names raise."""
    if isinstance(peer_scores, str) or not isinstance(peer_scores, (list, tuple)):
        raise CSLError(f"peer_scores must be a list of names; got {peer_scores!r}")
    known = set(fcscores.SCORES) | ({"mistakenness"} if fiftyone else set())
    unknown = sorted(set(peer_scores) - known - {"csl"})
    if unknown:
        extra = "" if fiftyone else " ('mistakenness' needs a FiftyOne collection)"
        raise CSLError(f"unknown peer score(s) {unknown}; choose from {sorted(known)}{extra}")
    return [p for p in dict.fromkeys(peer_scores) if p != "csl"]


def check_folds(sequences: list, fold_members: list, config, classes: list) -> tuple:
    """Checks that every fold can train, before any training.

    Raises :class:`CSLError` if a fold's training part has fewer than 2
    frames or 2 classes. Returns ``(fold_classes, warnings)``: the class
    indices each fold trains on, and a warning for every class some fold
    never sees (its frames in that fold's videos cannot be scored out of
    fold and are marked ``unseen_class`` instead of flagged as errors).
    """
    by_id = {s.sample_id: s for s in sequences}
    fold_classes, warnings = [], []
    for k in range(len(fold_members)):
        train_ids = fctrain.training_ids(fold_members, k, config.cross_fit)
        frames = sum(len(fcseq.given_labels(by_id[i])) for i in train_ids)
        seen = sorted({int(c) for i in train_ids for c in np.unique(fcseq.given_labels(by_id[i]))})
        if frames < 2 or len(seen) < 2:
            raise CSLError(
                f"fold {k} would train on {frames} frame(s) of {len(seen)} class(es) (videos {train_ids}); "
                "each fold needs at least 2 frames of 2 classes: use fewer folds, more videos, or cross_fit=False"
            )
        fold_classes.append(seen)
        scored = {int(c) for i in fold_members[k] for c in np.unique(fcseq.given_labels(by_id[i]))}
        for c in sorted(scored - set(seen)):
            warnings.append(
                f"class '{classes[c]}' appears only in videos of fold {k}: its frames there cannot be scored "
                "out of fold and are marked 'unseen_class' (label more videos with it, or use cross_fit=False)"
            )
    for w in warnings:
        logger.warning(w)
    return fold_classes, warnings


def train_into(run_dir, manifest: Manifest, sequences, config, progress, device, save_progress=False,
               folds=None, prefix: str = "", saved: Manifest | None = None) -> Manifest:  # fmt: skip
    """Trains the folds of ``manifest`` (``folds``: their indices, default
    all) into ``run_dir``, resuming the checkpoints it already lists; with
    ``save_progress`` the manifest (or ``saved``, of which ``manifest`` is a
    view: :meth:`Manifest.second_round_view`) is saved after every epoch, so
    a killed call can resume. ``sequences`` must hold the training videos of
    those folds (others may be missing); ``prefix``: as in
    :func:`~fiftyone_csl.plugin.core.train.train_fold`."""
    by_id = {s.sample_id: s for s in sequences}
    on_epoch = (lambda: (saved or manifest).save(run_dir)) if save_progress else None
    folds = range(len(manifest.folds)) if folds is None else folds
    with progress.stage("train", config.epochs * len(folds), "epochs") as stage:
        for k in folds:
            train_set = [by_id[i] for i in fctrain.training_ids(manifest.folds, k, config.cross_fit)]
            fctrain.train_fold(
                train_set, manifest.in_dim, len(manifest.classes), config, run_dir, k, manifest, device, stage,
                on_epoch, prefix,
            )  # fmt: skip
    manifest.checkpoint_bytes_per_epoch = manifest.checkpoint_bytes(run_dir)
    return manifest


def run_bytes(sequences, in_dim: int, num_classes: int, config, folds: int, score: bool = True,
              simulation: bool = False) -> dict:  # fmt: skip
    """The bytes a run's version folder will hold, by kind, estimated before
    any work: a checkpoint per epoch per fold (float16 with
    ``config.half_checkpoints``) and each fold's resume state (model and
    Adam's two moments), and with ``score`` one trajectory per video (per
    frame: loss and margin per epoch, two class-probability rows, frame
    number and label). The simulation trains and replays a copy beside it;
    a second round (unless ``config.rounds`` is 1) doubles the checkpoints
    and adds a class-probability row a frame. The feature cache is not counted: it lives in its own folder and is
    shared between runs."""
    head = build_head(config.model, in_dim, num_classes, **config.model_kwargs)
    params = sum(v.numel() for v in head.state_dict().values() if v.is_floating_point())
    per_checkpoint = params * (2 if config.half_checkpoints else 4) + 16_384  # the pickle's own overhead
    rounds = 1 if config.rounds == 1 else 2
    out = {
        "checkpoints": rounds * folds * (config.epochs * per_checkpoint + 3 * params * 4),
        "trajectories": trajectory_bytes(sequences, config.epochs, num_classes, rounds) if score else 0,
    }
    if simulation:
        out["simulation"] = out["checkpoints"] + out["trajectories"]
    out["total"] = sum(out.values())
    return out


def trajectory_bytes(sequences, checkpoints: int, num_classes: int, rounds: int = 1) -> int:
    """The bytes of the trajectories of ``sequences`` (:func:`save_trajectory`):
    per frame, loss and margin per checkpoint, two class-probability rows
    (three with a second round), frame number and label; plus each file's
    own overhead."""
    frames = sum(len(s) for s in sequences)
    return frames * (8 * checkpoints + 4 * num_classes * (1 + rounds) + 16) + 4_096 * len(sequences)


def replay_and_score(run_dir, manifest: Manifest, sequences, device, precision, progress, threshold, peer_scores,
                     known=None):  # fmt: skip
    """Replays the videos one at a time and scores each as it comes.

    Each video in a fold is replayed by that fold's checkpoints (all of them
    in one stacked pass); a video in no fold (new since training) by every
    fold's, averaged. A version with a second round replays its checkpoints
    too, for the decoder (``known``: ``{sample_id: VideoScores}`` whose
    first-round trajectory files in ``run_dir`` are read, not replayed).
    Each trajectory goes to ``run_dir`` as soon as it exists and is recorded
    in ``manifest``; the returned results read trajectories back from disk,
    so memory holds one video's at a time.

    Returns ``{sample_id: VideoScores}`` in the order of ``sequences``.
    """
    route = manifest.fold_router()
    for s in sequences:  # the procedure is learned from every video's labels, before the first is flagged
        manifest.label_runs[s.sample_id] = fcproc.label_runs(fcseq.given_labels(s))
        if s.fingerprint is not None:
            manifest.label_fingerprints[s.sample_id] = s.fingerprint
    counts = procedure_counts(manifest, sequences)
    # one fold after another, then new videos: each fold's stack loads once
    ordered = sorted(sequences, key=lambda s: (len(route(s.sample_id)), route(s.sample_id)))
    replayer = Replayer(run_dir, manifest, device, precision)
    view = manifest.second_round_view()
    second = Replayer(run_dir, view, device, precision) if view else None
    known = known or {}
    os.makedirs(os.path.join(run_dir, "trajectories"), exist_ok=True)
    videos = {}
    with progress.stage("replay", sum(len(s) for s in sequences), "frames") as stage:
        for s in ordered:
            folds = route(s.sample_id)
            if s.sample_id in known:
                trajectory = load_trajectory(known[s.sample_id].trajectory_path, labelled_only=False)
            else:
                replayer.keep_only(folds)
                trajectory = replayer.trajectory(s, folds)
            if second:
                second.keep_only(folds)
                trajectory.decode_probs = second.mean_probs(s, folds)
            path = save_trajectory(run_dir, manifest, s, trajectory)
            videos[s.sample_id] = score_video(
                s.sample_id, s.frame_numbers, s.labels, trajectory, manifest, folds, threshold, peer_scores, path,
                s.labelled, counts,
            )  # fmt: skip
            stage.update(len(s))
    return {s.sample_id: videos[s.sample_id] for s in sequences}


def procedure_counts(manifest: Manifest, sequences=()):
    """The :class:`~fiftyone_csl.plugin.core.procedure.ProcedureCounts` of
    every video of the run version (those of ``manifest``, also those a
    replay of some videos carries over, and ``sequences``), or None when one
    lacks its label runs (a run of an earlier version, which flags by the CSL
    rules)."""
    scored = [*manifest.trajectories, *(s.sample_id for s in sequences)]
    if not scored or any(i not in manifest.label_runs for i in scored):
        return None
    ids = list(dict.fromkeys([*manifest.label_runs, *scored]))
    return fcproc.ProcedureCounts.of_runs([manifest.label_runs[i] for i in ids], len(manifest.classes))


def save_trajectory(run_dir, manifest: Manifest, sequence, trajectory) -> str:
    """Saves one video's trajectory as ``trajectories/<sample id>-<sha256
    prefix>.npz``: named by its content, a new trajectory never takes the
    name of one an earlier version holds (a refresh moves that version's
    folder into the new one, :func:`~fiftyone_csl.plugin.runs.store.adopt_trajectories`)."""
    path = os.path.join(run_dir, f"trajectories/{sequence.sample_id}.npz")
    atomic_save_npz(
        path,
        frame_numbers=sequence.frame_numbers,
        labels=sequence.labels,
        loss=trajectory.loss,
        margin=trajectory.margin,
        final_probs=trajectory.final_probs,
        mean_probs=trajectory.mean_probs,
        **({} if trajectory.decode_probs is None else {"decode_probs": trajectory.decode_probs}),
        **({} if sequence.labelled is None else {"labelled": np.asarray(sequence.labelled, dtype=bool)}),
    )
    sha = sha256_file(path)
    relpath = f"trajectories/{sequence.sample_id}-{sha[:16]}.npz"
    os.replace(path, os.path.join(run_dir, relpath))
    earlier = manifest.trajectories.get(sequence.sample_id)
    if earlier is not None and earlier != relpath:  # scored again in this folder: one file per video
        manifest.files.pop(earlier, None)
        if os.path.isfile(os.path.join(run_dir, earlier)):
            os.remove(os.path.join(run_dir, earlier))
    manifest.files[relpath] = sha
    manifest.trajectories[sequence.sample_id] = relpath
    return os.path.join(run_dir, relpath)


def score_video(
    sample_id, frame_numbers, labels, trajectory, manifest, folds, threshold, peer_scores, path=None, labelled=None,
    counts=None,
):  # fmt: skip
    """Scores and suspect segments of one video; keeps the trajectory in
    memory only when it has no file ``path``.

    With ``labelled`` (sparse labels: True where a frame carries a label),
    only those frames are scored and flagged (a loss against no given label
    says nothing), and ``predictions`` keeps the class of every frame.

    A segment whose given label the scoring checkpoints (those of ``folds``)
    never trained on is typed ``unseen_class``: its high loss says nothing
    about the label.

    With ``counts`` (the run's procedure), suspects come from the decoder
    and the video's decoded labels and wrong-label probabilities are kept."""
    predictions = None
    if labelled is not None:
        labelled = np.asarray(labelled, dtype=bool)
        probs = trajectory.final_probs
        predictions = Predictions(frame_numbers, probs.argmax(1), probs.max(1).astype(np.float32), labelled)
        index = np.flatnonzero(labelled)
        frame_numbers, labels, trajectory = frame_numbers[index], labels[index], trajectory.take(index)
    names = ["csl", *[p for p in peer_scores if p in fcscores.SCORES]]
    scores = fcscores.compute_scores(trajectory, names, labels)
    bad = [n for n, v in scores.items() if not np.isfinite(v).all()]
    if bad:
        raise CSLError(f"scores {bad} of {sample_id} are not finite; nothing was written")
    segments, decoded, wrong, confidence = flag_video(
        sample_id, frame_numbers, labels, scores["csl"], trajectory.emission_probs, manifest, folds, threshold, counts,
        decoded=True,
    )  # fmt: skip
    return VideoScores(
        sample_id, frame_numbers, labels, scores, segments, path, None if path else trajectory, None, predictions,
        decoded, wrong, confidence,
    )  # fmt: skip


def min_evidence(manifest: Manifest):
    """The evidence threshold of the decoder's flags: the one the run's
    simulation chose, else None (the default)."""
    report = manifest.simulation or {}
    return report.get("min_evidence") if report.get("knob") == "evidence" else None


def flag_video(sample_id, frame_numbers, labels, csl, mean_probs, manifest, folds, threshold, counts=None,
               decoded=False):  # fmt: skip
    """Suspect segments of one video at ``threshold``: with ``counts`` (the
    run's procedure) the decoder's edits, else the CSL rules'. A segment
    whose given label the scoring checkpoints (those of ``folds``) never
    trained on is typed ``unseen_class``. With ``decoded``, returns
    ``(segments, decoded labels, wrong-label probabilities, decoded-label
    probabilities)`` (the last three None without ``counts``)."""
    proposal = wrong = confidence = None
    if counts is not None:
        segments, proposal, wrong, confidence = fcedits.decode_suspects(
            sample_id, frame_numbers, labels, csl, mean_probs, counts, manifest.classes, threshold,
            min_evidence=min_evidence(manifest),
        )  # fmt: skip
    else:
        segments = fcflags.suspect_segments(
            sample_id, frame_numbers, labels, csl, mean_probs, manifest.classes, threshold
        )
    unseen = {manifest.classes[c] for c in manifest.unseen_classes(folds)}
    for segment in segments:
        if segment.given_label in unseen:
            segment.error_type = UNSEEN_CLASS
    return (segments, proposal, wrong, confidence) if decoded else segments


def score_file(sample_id, path, manifest: Manifest, folds, threshold, peer_scores, counts=None) -> VideoScores:
    """:func:`score_video` of a (verified) trajectory file (``counts``: the
    run's procedure, :func:`procedure_counts`)."""
    with np.load(path) as data:
        frame_numbers, labels = data["frame_numbers"], data["labels"]
        labelled = data["labelled"] if "labelled" in data.files else None
    trajectory = load_trajectory(path, labelled_only=False)
    return score_video(
        sample_id, frame_numbers, labels, trajectory, manifest, folds, threshold, peer_scores, path, labelled, counts
    )


def score_from_files(run_dir, manifest: Manifest, sample_ids, threshold, peer_scores) -> dict:
    """``{sample_id: VideoScores}`` of ``sample_ids`` from a run version's
    trajectory files (each verified against the manifest)."""
    route = manifest.fold_router()
    counts = procedure_counts(manifest)
    videos = {}
    for sid in sample_ids:
        relpath = manifest.trajectories.get(sid)
        if relpath is None:
            continue
        path = manifest.verified_path(run_dir, relpath)
        videos[sid] = score_file(sid, path, manifest, route(sid), threshold, peer_scores, counts)
        learned = load_error_prob(run_dir, manifest, sid)
        if learned is not None:
            videos[sid].scores[ERROR_PROB], videos[sid].error_kind = learned
    return videos


def save_error_probs(run_dir, manifest: Manifest, videos: dict, sim) -> None:
    """Stores each video's error probability and kind beside its trajectory
    (``error_probs/<sample_id>.npz``, listed and hashed in the manifest) and
    the simulation's report in the manifest."""
    os.makedirs(os.path.join(run_dir, "error_probs"), exist_ok=True)
    for sid, prob in sim.error_prob.items():
        relpath = f"error_probs/{sid}.npz"
        kind = np.asarray(
            [dynamics.KINDS.index(k) if k in dynamics.KINDS else -1 for k in sim.error_kind[sid]], dtype=np.int8
        )
        atomic_save_npz(os.path.join(run_dir, relpath), error_prob=prob, error_kind=kind)
        manifest.record_file(run_dir, relpath)
        manifest.error_probs[sid] = relpath
    manifest.simulation = sim.report


def load_error_prob(run_dir, manifest: Manifest, sample_id):
    """``(error_prob, error_kind)`` of a video from a run version, or None."""
    relpath = manifest.error_probs.get(sample_id)
    if relpath is None:
        return None
    with np.load(manifest.verified_path(run_dir, relpath)) as data:
        kinds = np.array([dynamics.KINDS[k] if k >= 0 else "" for k in data["error_kind"]], dtype=object)
        return data["error_prob"], kinds

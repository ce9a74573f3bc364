"""A second round of training, for the decoder.

The first round's models learn from every given label, the wrong ones too:
where a video's labels are wrong over a long stretch, the models of the
other folds learn part of the same mistake from the videos they train on,
and the decoder misses or mistypes it. The second round trains the same
folds again with the frames the first round's suspects would change left
out of the loss (suspects flagged by the run whose mean CSL reaches the
threshold), replays its checkpoints, and the decoder reads their
out-of-fold class probabilities: the suspects, their proposed labels and the
wrong-label probabilities come from the second round. CSL, the peer scores
and each suspect's mean CSL stay the first round's: CSL is the loss of models
that learned every given label.

``rounds="auto"`` trains the second round where the first round's models fit
the labels they keep: an out-of-fold accuracy of at least :data:`FIT` on the
scored frames no suspect changes. benchmarks/NOTES.md has the measurements
behind it: with features that tell the phases apart the second round is the
largest gain measured; with weak ones it raises recall and lowers type
accuracy, and their first-round fit was 0.74-0.84 against 0.92-0.94.
"""

import hashlib
import logging
from dataclasses import replace

import numpy as np

from ...models.losses import IGNORE_INDEX
from . import sequences as fcseq
from . import train as fctrain
from .stages import UNSEEN_CLASS, replay_and_score, train_into

logger = logging.getLogger(__name__)

FIT = 0.9
"""Least out-of-fold accuracy of the first round on the frames it keeps for
``rounds="auto"`` to train a second round."""

PREFIX = "round_2/"
"""The folder of a version that holds the second round's fold folders."""

WEIGHTS = {"second round train": 4, "second round replay": 1.5}
"""The second round's stages in an audit's progress (:class:`~fiftyone_csl.plugin.core.utils.StagedProgress`)."""


def describe(report) -> str | None:
    """A ``second_round`` report (:meth:`Manifest.second_round_report`) in a
    line: whether it trained, and why; None without a report."""
    if not report:
        return None
    return ("trained: " if report.get("ran") else "not trained: ") + str(report.get("reason"))


def suspect_mask(video, threshold: float) -> np.ndarray:
    """Per scored frame of ``video`` (a
    :class:`~fiftyone_csl.plugin.core.results.VideoScores`), True where one
    of its suspects with a mean CSL of at least ``threshold`` proposes another
    label (every frame of a suspect without proposals)."""
    mask = np.zeros(len(video.labels), dtype=bool)
    for seg in video.segments:
        if seg.error_type == UNSEEN_CLASS or seg.mean_score < threshold:
            continue
        if seg.proposed is None:
            mask[seg.start : seg.stop] = True
        else:
            mask[seg.start : seg.stop] |= np.asarray(seg.proposed) != video.labels[seg.start : seg.stop]
    return mask


def masked_sequence(sequence, video, mask: np.ndarray):
    """``sequence`` with the label of each masked scored frame set to
    ``IGNORE_INDEX`` (left out of the loss); the features are shared."""
    positions = np.searchsorted(sequence.frame_numbers, video.frame_numbers[mask])
    labels = sequence.labels.copy()
    labels[positions] = IGNORE_INDEX
    return replace(sequence, labels=labels)


def plan_second_round(config, manifest, sequences, videos: dict, threshold: float) -> tuple:
    """``(masks, report)``: per video the frames left out of the second round
    (:func:`suspect_mask`) and the report the manifest keeps (``ran``,
    ``reason``, ``fit``, ``masked_frames``, ``mask_digest``)."""
    masks = {s.sample_id: suspect_mask(videos[s.sample_id], threshold) for s in sequences}
    correct = total = 0
    digest = hashlib.sha256()
    for s in sequences:
        v, m = videos[s.sample_id], masks[s.sample_id]
        predicted = v.trajectory.mean_probs.argmax(1)
        correct += int((predicted == v.labels)[~m].sum())
        total += int((~m).sum())
        digest.update(s.sample_id.encode() + b"\0" + np.packbits(m).tobytes())
    fit = correct / total if total else 0.0
    masked = int(sum(m.sum() for m in masks.values()))
    report = dict(rounds=config.rounds, fit=round(fit, 4), masked_frames=masked, mask_digest=digest.hexdigest())
    by_id = {s.sample_id: s for s in sequences}
    thin = [
        k for k in range(len(manifest.folds))
        if not _can_train([by_id[i] for i in fctrain.training_ids(manifest.folds, k, config.cross_fit)], masks)
    ]  # fmt: skip
    if config.rounds == 1:
        reason = "rounds=1"
    elif not masked:
        reason = "no suspect to leave out"
    elif thin:
        reason = f"fold(s) {thin} would keep fewer than 2 frames of 2 classes"
    elif config.rounds == "auto" and fit < FIT:
        reason = f"the first round's fit of the labels it keeps is {fit:.3f} < {FIT} (rounds='auto')"
    else:
        reason = "rounds=2" if config.rounds == 2 else f"the first round's fit is {fit:.3f} >= {FIT} (rounds='auto')"
        return masks, dict(report, ran=True, reason=reason, checkpoints=[], trained=False)
    return masks, dict(report, ran=False, reason=reason)


def _can_train(train_set, masks) -> bool:
    kept = [fcseq.given_labels(s)[~masks[s.sample_id]] for s in train_set]
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return len(kept) >= 2 and len(np.unique(kept)) >= 2


def second_round(run_dir, manifest, sequences, videos: dict, config, device, precision, progress, threshold,
                 peer_scores, save_progress: bool = False) -> dict:  # fmt: skip
    """Decides on, trains and replays the second round of a version whose
    first round ``videos`` (``{sample_id: VideoScores}`` of every scored video,
    trajectories in ``run_dir``) were just scored; returns the videos scored
    again with the decoder on the second round (``videos`` as they are when it
    does not run). Records what it decided in ``manifest.second_round``; a
    call resumed after a kill keeps the checkpoints a previous call trained
    on the same masks (``save_progress``: the manifest is saved after each
    epoch)."""
    masks, report = plan_second_round(config, manifest, sequences, videos, threshold)
    earlier = manifest.second_round or {}
    if report["ran"] and earlier.get("mask_digest") == report["mask_digest"] and earlier.get("ran"):
        report["checkpoints"] = earlier.get("checkpoints", [])
    manifest.second_round = report
    logger.info("second round: %s (%s)", "trained" if report["ran"] else "not trained", report["reason"])
    if not report["ran"]:
        return videos
    masked = [masked_sequence(s, videos[s.sample_id], masks[s.sample_id]) for s in sequences]
    with progress.prefixed("second round "):
        view = manifest.second_round_view(trained=False)
        train_into(run_dir, view, masked, config, progress, device, save_progress, prefix=PREFIX, saved=manifest)
        report["trained"] = True
        return replay_and_score(
            run_dir, manifest, sequences, device, precision, progress, threshold, peer_scores, known=videos
        )

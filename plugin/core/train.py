"""Checkpointed training of temporal heads, with K-fold cross-fitting.

Cross-fitting splits the videos into folds; the model for fold ``k`` trains
on every other fold and later scores fold ``k`` only, so no video is scored
by a model that saw its labels. One state dict is saved after every epoch.
"""

import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ...models import build_head, masked_cross_entropy
from ...models.losses import IGNORE_INDEX, mgw_weights, weighted_cross_entropy
from .errors import CSLError
from .utils import atomic_file, seed_everything


@dataclass
class TrainConfig:
    """Hyperparameters of the temporal head and its training.

    Attributes:
        model: ``"transformer"`` (default), ``"tcn"`` or ``"mlp"``
        epochs: epochs, one checkpoint each
        folds: K of the K-fold cross-fitting over videos
        cross_fit: False trains one model on all videos and replays it on
            them (the in-sample trajectories of the training set)
        lr, weight_decay: Adam settings
        batch_size: videos per step
        max_frames: longer videos train on random windows of this length and
            replay window by window
        seed: seeds folds, initialisation, order and dropout
        model_kwargs: passed to the head (hidden_dim, num_layers, dropout, ...)
        half_checkpoints: store checkpoints in float16 (halves the files)
        mgw_sigma: with sparse labels (some frames unlabelled), the width in
            frames of the maximum-Gaussian weights: an unlabelled frame trains
            on its nearest labelled frame's class with weight
            ``exp(-d^2 / (2 mgw_sigma^2))``, ``d`` its distance to that frame.
            0 ignores unlabelled frames (masking, the default: it did best in
            ``benchmarks/review.py``); ``float("inf")`` trains on them at full
            weight (interpolation)
        rounds: ``1``, ``2`` or ``"auto"``: a second round of training
            leaves the frames the first round's suspects would change out of
            the loss and decodes the given labels again with its models
            (:mod:`~fiftyone_csl.plugin.core.rounds`); ``"auto"`` trains it
            when the first round's models fit the labels they keep
    """

    model: str = "transformer"
    epochs: int = 30
    folds: int = 5
    cross_fit: bool = True
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 4
    max_frames: int = 1024
    seed: int = 51
    model_kwargs: dict = field(default_factory=dict)
    half_checkpoints: bool = False
    mgw_sigma: float = 0.0
    rounds: int | str = "auto"

    def to_dict(self):
        return asdict(self)


def assign_folds(sample_ids: list, folds: int, seed: int, cross_fit: bool = True) -> list:
    """Splits ``sample_ids`` into ``folds`` groups by a seeded permutation.

    With ``cross_fit=False`` there is a single group holding every video.
    """
    if not cross_fit:
        return [sorted(sample_ids)]
    if folds < 2:
        raise CSLError("cross-fitting needs folds >= 2 (or cross_fit=False)")
    if len(sample_ids) < folds:
        raise CSLError(
            f"{len(sample_ids)} labelled video(s) cannot be split into {folds} folds: "
            "pass fewer folds, or cross_fit=False for in-sample trajectories"
        )
    order = np.random.default_rng(seed).permutation(sorted(sample_ids))
    return [sorted(order[k::folds].tolist()) for k in range(folds)]


def training_ids(fold_members: list, k: int, cross_fit: bool) -> list:
    if not cross_fit:
        return fold_members[0]
    return sorted(sid for j, group in enumerate(fold_members) if j != k for sid in group)


def _batches(sequences, batch_size, max_frames, generator, weights=None):
    """Yields ``(x, y, mask, w)``; ``w`` is None unless ``weights`` gives
    per-frame training weights (sparse labels)."""
    order = torch.randperm(len(sequences), generator=generator).tolist()
    for start in range(0, len(order), batch_size):
        chosen = [order[i] for i in range(start, min(start + batch_size, len(order)))]
        crops = []
        for i in chosen:
            s = sequences[i]
            w = None if weights is None else weights[i]
            T = len(s)
            cut = slice(None)
            if T > max_frames:
                offset = int(torch.randint(0, T - max_frames + 1, (1,), generator=generator))
                cut = slice(offset, offset + max_frames)
            crops.append((s.features[cut], s.labels[cut], None if w is None else w[cut]))
        length = max(len(y) for _, y, _ in crops)
        dim = crops[0][0].shape[1]
        x = np.zeros((len(crops), length, dim), dtype=np.float32)
        y = np.full((len(crops), length), IGNORE_INDEX, dtype=np.int64)
        mask = np.zeros((len(crops), length), dtype=bool)
        w = None if weights is None else np.zeros((len(crops), length), dtype=np.float32)
        for i, (f, l, wi) in enumerate(crops):
            x[i, : len(l)] = f
            y[i, : len(l)] = l
            mask[i, : len(l)] = True
            if w is not None:
                w[i, : len(l)] = wi
        yield (
            torch.from_numpy(x),
            torch.from_numpy(y),
            torch.from_numpy(mask),
            None if w is None else torch.from_numpy(w),
        )


def train_fold(
    sequences: list,
    in_dim: int,
    num_classes: int,
    config: TrainConfig,
    run_dir: str,
    fold: int,
    manifest,
    device,
    progress_stage=None,
    on_epoch=None,
    prefix: str = "",
) -> list:
    """Trains one head on ``sequences`` and saves a checkpoint per epoch.

    Records each checkpoint's sha256 in ``manifest`` (a
    :class:`~fiftyone_csl.plugin.record.Manifest`) and returns the
    checkpoints' paths relative to ``run_dir``, oldest first.

    Resume: after every epoch the model, optimiser and random states go to
    ``fold_XX/resume.pt`` (recorded in the manifest) and ``on_epoch()`` is
    called, so the caller can save the manifest. If ``manifest`` already lists
    checkpoints of this fold whose files verify, training continues after the
    last of them from that state, and gives the same checkpoints as a run
    that was never interrupted.

    A frame whose label is ``IGNORE_INDEX`` is left out of the loss (with
    sparse labels too); ``prefix`` is a folder of ``run_dir`` for the fold
    folders (a second round's).
    """
    fold_dir = f"{prefix}fold_{fold:02d}"
    resume_path = f"{fold_dir}/resume.pt"
    os.makedirs(os.path.join(run_dir, fold_dir), exist_ok=True)
    while len(manifest.checkpoints) <= fold:
        manifest.checkpoints.append([])
    seed_everything(config.seed + 1000 * fold)
    generator = torch.Generator().manual_seed(config.seed + 1000 * fold)
    model = build_head(config.model, in_dim, num_classes, **config.model_kwargs)
    model.norm.fit_chunks(s.features for s in sequences)  # video by video: no copy of every feature
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    checkpoints = _resume(run_dir, manifest, fold, resume_path, model, optimizer, generator, config.epochs, device)
    if progress_stage is not None and checkpoints:
        progress_stage.update(len(checkpoints))
    weights = None
    if any(s.labelled is not None for s in sequences):  # sparse labels
        weights = [
            np.ones(len(s)) if s.labelled is None else mgw_weights(s.frame_numbers, s.labelled, config.mgw_sigma)
            for s in sequences
        ]
        weights = [np.where(s.labels == IGNORE_INDEX, 0.0, w) for s, w in zip(sequences, weights)]
    for epoch in range(len(checkpoints) + 1, config.epochs + 1):
        model.train()
        for x, y, mask, w in _batches(sequences, config.batch_size, config.max_frames, generator, weights):
            logits = model(x.to(device), mask.to(device))
            if w is None:
                loss = masked_cross_entropy(logits, y.to(device))
            else:
                loss = weighted_cross_entropy(logits, y.to(device), w.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        relpath = f"{fold_dir}/epoch_{epoch:04d}.pt"
        dtype = torch.float16 if config.half_checkpoints else None
        state = {
            k: (v.detach().to("cpu", dtype) if dtype is not None and v.is_floating_point() else v.detach().cpu())
            for k, v in model.state_dict().items()
        }
        _atomic_torch_save(state, os.path.join(run_dir, relpath))
        manifest.record_file(run_dir, relpath)
        checkpoints.append(relpath)
        manifest.checkpoints[fold] = list(checkpoints)
        if epoch < config.epochs:
            resume_state = dict(
                epoch=epoch, model=model.state_dict(), optimizer=optimizer.state_dict(),
                generator=generator.get_state(), torch_rng=torch.get_rng_state(),
            )  # fmt: skip
            _atomic_torch_save(resume_state, os.path.join(run_dir, resume_path))
            manifest.record_file(run_dir, resume_path)
        if on_epoch is not None:
            on_epoch()
        if progress_stage is not None:
            progress_stage.update()
    if resume_path in manifest.files:
        manifest.files.pop(resume_path)
        os.remove(os.path.join(run_dir, resume_path))
    return checkpoints


def _atomic_torch_save(obj, path: str) -> None:
    with atomic_file(path, "wb") as f:
        torch.save(obj, f)


def _resume(run_dir, manifest, fold, resume_path, model, optimizer, generator, epochs, device) -> list:
    """The verified checkpoints of ``fold`` already in ``manifest``, with the
    model, optimiser and random states restored after the last of them; []
    (a fresh start) if anything does not verify."""
    done = list(manifest.checkpoints[fold])
    if not done:
        return []
    try:
        for relpath in done:
            manifest.verified_path(run_dir, relpath)
        if len(done) >= epochs:
            return done[:epochs]
        state = torch.load(manifest.verified_path(run_dir, resume_path), map_location=device, weights_only=True)
        if int(state["epoch"]) != len(done):
            raise CSLError("the resume state is not the last checkpoint's")
    except (CSLError, KeyError, RuntimeError):
        manifest.checkpoints[fold] = []
        return []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return done

"""Replay of every checkpoint over every frame it scores.

For each video, the replay yields its loss trajectory: the cross-entropy of
every frame against its *given* label under every checkpoint, (T, E).
Checkpoints are loaded with ``weights_only=True`` after their sha256 is
checked against the run manifest.

:class:`Replayer` is the engine: it stacks all checkpoints of a fold
(:class:`~fiftyone_csl.models.stacked.StackedHead`) and streams the videos
one at a time, so memory holds one video's windows times the checkpoints,
never the dataset. :func:`replay_fold_naive` is the plain loop (load a
checkpoint, run every video, next checkpoint) kept as the reference the
engine is tested and measured against.
"""

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ...models import build_head
from ...models.losses import per_frame_cross_entropy
from ...models.stacked import StackedHead
from .errors import CSLError


@dataclass
class Trajectory:
    """What the replay records for one video.

    Attributes:
        loss: (T, E) per-frame cross-entropy against the given label, one
            column per checkpoint, oldest first
        margin: (T, E) logit of the given label minus the largest other logit
        final_probs: (T, C) class probabilities under the last checkpoint
        mean_probs: (T, C) class probabilities averaged over checkpoints
        decode_probs: (T, C) the second round's mean class probabilities
            (:mod:`~fiftyone_csl.plugin.core.rounds`), or None
    """

    loss: np.ndarray
    margin: np.ndarray
    final_probs: np.ndarray
    mean_probs: np.ndarray
    decode_probs: np.ndarray | None = None

    @property
    def emission_probs(self) -> np.ndarray:
        """The class probabilities the decoder reads: the second round's where
        there is one, else the first's."""
        return self.mean_probs if self.decode_probs is None else self.decode_probs

    def take(self, index) -> "Trajectory":
        """The trajectory of the frames at ``index`` only."""
        second = None if self.decode_probs is None else self.decode_probs[index]
        return Trajectory(self.loss[index], self.margin[index], self.final_probs[index], self.mean_probs[index], second)


def load_trajectory(path: str, labelled_only: bool = True) -> Trajectory:
    """Reads a trajectory saved in a run directory; of a video with sparse
    labels, its labelled frames only unless ``labelled_only`` is False."""
    with np.load(path) as data:
        trajectory = Trajectory(
            loss=data["loss"],
            margin=data["margin"],
            final_probs=data["final_probs"],
            mean_probs=data["mean_probs"],
            decode_probs=data["decode_probs"] if "decode_probs" in data.files else None,
        )
        if labelled_only and "labelled" in data.files:
            trajectory = trajectory.take(np.flatnonzero(data["labelled"]))
    return trajectory


PRECISIONS = ("auto", "fp32", "fp16", "bf16")

# windows x frames x checkpoints evaluated in one call; bounds the activations
# (about 1 KB per frame-checkpoint for the default heads)
ROWS_PER_CALL = 1 << 18


def load_state(run_dir: str, manifest, relpath: str, device) -> dict:
    """A checkpoint's state dict in float32, after its sha256 is verified
    against ``manifest`` (a :class:`~fiftyone_csl.plugin.record.Manifest`)."""
    path = manifest.verified_path(run_dir, relpath)
    state = torch.load(path, map_location=device, weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_checkpoint(run_dir: str, manifest, relpath: str, model: torch.nn.Module, device) -> None:
    model.load_state_dict(load_state(run_dir, manifest, relpath, device))


def build_run_head(manifest, device) -> torch.nn.Module:
    config = manifest.config
    head = build_head(config["model"], manifest.in_dim, len(manifest.classes), **config.get("model_kwargs", {}))
    return head.to(device)


def autocast_context(device, precision: str = "auto"):
    """The autocast context of ``precision`` on ``device``.

    ``"auto"`` is float16 on CUDA and float32 elsewhere; ``"bf16"`` works on
    CPUs too. Losses are always computed from float32 logits.
    """
    if precision not in PRECISIONS:
        raise CSLError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise CSLError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


class Replayer:
    """Replays a run's checkpoints over videos, one video at a time.

    Args:
        run_dir: the run directory
        manifest: its manifest (checkpoint paths and sha256)
        device: torch device
        precision: ``"auto"``, ``"fp32"``, ``"fp16"`` (CUDA) or ``"bf16"``
    """

    def __init__(self, run_dir: str, manifest, device, precision: str = "auto"):
        self.run_dir = run_dir
        self.manifest = manifest
        self.device = torch.device(device)
        self.autocast = lambda: autocast_context(self.device, precision)
        self.max_frames = manifest.config["max_frames"]
        self._stacks = {}

    def _stack(self, fold: int) -> StackedHead:
        if fold not in self._stacks:
            relpaths = self.manifest.checkpoints[fold]
            if not relpaths:
                raise CSLError(f"nothing to replay: fold {fold} has no checkpoint")
            states = [load_state(self.run_dir, self.manifest, r, self.device) for r in relpaths]
            self._stacks[fold] = StackedHead(build_run_head(self.manifest, self.device), states, self.device)
        return self._stacks[fold]

    def keep_only(self, folds) -> None:
        """Frees the stacked weights of every fold not in ``folds``."""
        for k in [k for k in self._stacks if k not in folds]:
            del self._stacks[k]

    @torch.no_grad()
    def logits(self, fold: int, features: np.ndarray) -> torch.Tensor:
        """(E, T, C) float32 logits of one video under every checkpoint of ``fold``.

        The video is cut into windows of ``max_frames`` as in training; whole
        windows run together, in groups small enough to bound memory.
        """
        if features.shape[1] != self.manifest.in_dim:
            raise CSLError(
                f"features have dimension {features.shape[1]}; the run's models expect {self.manifest.in_dim}"
            )
        stack = self._stack(fold)
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(self.device)
        T, L = len(x), self.max_frames
        full = T // L
        per_call = max(1, ROWS_PER_CALL // (L * stack.num_checkpoints))
        parts = []
        with self.autocast():
            for start in range(0, full, per_call):
                stop = min(full, start + per_call)
                windows = x[start * L : stop * L].reshape(stop - start, L, -1)
                parts.append(stack(windows).float().flatten(1, 2))  # (E, windows*L, C)
            if T > full * L:
                parts.append(stack(x[full * L :][None]).float()[:, 0])
        return torch.cat(parts, dim=1)

    def trajectory(self, sequence, folds: list) -> Trajectory:
        """The trajectory of ``sequence`` under the checkpoints of ``folds``
        (several folds: their trajectories averaged)."""
        targets = torch.from_numpy(sequence.labels).to(self.device)
        out = [_trajectory_from_logits(self.logits(k, sequence.features), targets) for k in folds]
        if len(out) == 1:
            return out[0]
        return Trajectory(*(np.mean([getattr(t, f) for t in out], axis=0) for f in _REPLAYED))

    def mean_probs(self, sequence, folds: list) -> np.ndarray:
        """(T, C) class probabilities of ``sequence`` averaged over the
        checkpoints of ``folds`` (and over the folds)."""
        return np.mean([_checkpoint_mean(F.softmax(self.logits(k, sequence.features), dim=-1)) for k in folds], axis=0)


_REPLAYED = ("loss", "margin", "final_probs", "mean_probs")


def _trajectory_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> Trajectory:
    # logits: (E, T, C) float32; targets: (T,)
    E = logits.shape[0]
    index = targets[None, :, None].expand(E, -1, 1)
    loss = per_frame_cross_entropy(logits, targets[None].expand(E, -1))  # (E, T)
    given = logits.gather(2, index).squeeze(2)
    others = logits.scatter(2, index, float("-inf")).max(2).values
    probs = F.softmax(logits, dim=-1)
    return Trajectory(
        loss=loss.T.contiguous().cpu().numpy(),
        margin=(given - others).T.contiguous().cpu().numpy(),
        final_probs=probs[-1].cpu().numpy(),
        mean_probs=_checkpoint_mean(probs),
    )


def _checkpoint_mean(probs: torch.Tensor) -> np.ndarray:
    """(E, T, C) class probabilities -> (T, C), averaged over the checkpoints in double."""
    return probs.double().mean(0).float().cpu().numpy()


@torch.no_grad()
def _batch_logits(model, batch: list, max_frames: int, device) -> list:
    """Logits (T_i, C) of each sequence in ``batch``, computed together.

    Long sequences are cut into windows of ``max_frames`` (as in training);
    windows are padded to a common length and masked, so the result does not
    depend on how sequences are batched.
    """
    windows, owners = [], []
    for i, s in enumerate(batch):
        for start in range(0, len(s), max_frames):
            windows.append(s.features[start : start + max_frames])
            owners.append(i)
    length = max(len(w) for w in windows)
    x = np.zeros((len(windows), length, windows[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(windows), length), dtype=bool)
    for j, w in enumerate(windows):
        x[j, : len(w)] = w
        mask[j, : len(w)] = True
    logits = model(torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device)).float()  # (W, L, C)
    out = [[] for _ in batch]
    for j, w in enumerate(windows):
        out[owners[j]].append(logits[j, : len(w)])
    return [torch.cat(parts) for parts in out]


def replay_fold_naive(
    sequences: list,
    checkpoints: list,
    run_dir: str,
    manifest,
    device,
    progress_stage=None,
    batch_size: int = 8,
) -> dict:
    """Replays ``checkpoints`` (relative paths, oldest first) over ``sequences``
    the plain way: one checkpoint at a time, every video through it.

    The reference for :class:`Replayer`. Returns ``{sample_id: Trajectory}``.
    """
    if not checkpoints:
        raise CSLError("nothing to replay: the fold has no checkpoint")
    config = manifest.config
    classes = manifest.classes
    model = build_run_head(manifest, device)
    for s in sequences:
        if s.features.shape[1] != manifest.in_dim:
            raise CSLError(
                f"features of {s.sample_id} have dimension {s.features.shape[1]}; "
                f"the run's models expect {manifest.in_dim}"
            )
    E = len(checkpoints)
    losses = {s.sample_id: np.zeros((len(s), E), dtype=np.float32) for s in sequences}
    margins = {s.sample_id: np.zeros((len(s), E), dtype=np.float32) for s in sequences}
    prob_sums = {s.sample_id: np.zeros((len(s), len(classes)), dtype=np.float64) for s in sequences}
    final_probs = {}
    for e, relpath in enumerate(checkpoints):
        load_checkpoint(run_dir, manifest, relpath, model, device)
        model.eval()
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # similar lengths pad less
        batches = [[sequences[i] for i in order[j : j + batch_size]] for j in range(0, len(order), batch_size)]
        for batch in batches:
            for s, logits in zip(batch, _batch_logits(model, batch, config["max_frames"], device)):
                _record(s, logits, e, E, losses, margins, prob_sums, final_probs, device)
        if progress_stage is not None:
            progress_stage.update()
    return {
        sid: Trajectory(
            loss=losses[sid],
            margin=margins[sid],
            final_probs=final_probs[sid],
            mean_probs=(prob_sums[sid] / E).astype(np.float32),
        )
        for sid in losses
    }


def _record(s, logits, e, E, losses, margins, prob_sums, final_probs, device):
    """Stores checkpoint ``e``'s loss, margin and probabilities of sequence ``s``."""
    targets = torch.from_numpy(s.labels).to(device)
    losses[s.sample_id][:, e] = per_frame_cross_entropy(logits, targets).cpu().numpy()
    given = logits.gather(1, targets[:, None]).squeeze(1)
    others = logits.scatter(1, targets[:, None], float("-inf")).max(1).values
    margins[s.sample_id][:, e] = (given - others).cpu().numpy()
    probs = F.softmax(logits, dim=-1).cpu().numpy()
    prob_sums[s.sample_id] += probs
    if e == E - 1:
        final_probs[s.sample_id] = probs.astype(np.float32)

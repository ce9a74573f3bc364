"""Replay of every checkpoint over every frame it scores.

For each video, the replay yields its loss trajectory: the cross-entropy of
every frame against its *given* label under every checkpoint, (T, E).
Checkpoints are loaded with ``weights_only=True`` after their sha256 is
checked against the run manifest.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..models import build_head
from ..models.losses import per_frame_cross_entropy
from .runs import verified_path
from .utils import CSLError


@dataclass
class Trajectory:
    """What the replay records for one video.

    Attributes:
        loss: (T, E) per-frame cross-entropy against the given label, one
            column per checkpoint, oldest first
        margin: (T, E) logit of the given label minus the largest other logit
        final_probs: (T, C) class probabilities under the last checkpoint
        mean_probs: (T, C) class probabilities averaged over checkpoints
    """

    loss: np.ndarray
    margin: np.ndarray
    final_probs: np.ndarray
    mean_probs: np.ndarray


def load_checkpoint(run_dir: str, manifest: dict, relpath: str, model: torch.nn.Module, device) -> None:
    path = verified_path(run_dir, manifest, relpath)
    state = torch.load(path, map_location=device, weights_only=True)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state)


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


def replay_fold(
    sequences: list,
    checkpoints: list,
    run_dir: str,
    manifest: dict,
    device,
    progress_stage=None,
    batch_size: int = 8,
) -> dict:
    """Replays ``checkpoints`` (relative paths, oldest first) over ``sequences``.

    Returns ``{sample_id: Trajectory}``.
    """
    if not checkpoints:
        raise CSLError("nothing to replay: the fold has no checkpoint")
    config = manifest["config"]
    classes = manifest["classes"]
    model = build_head(config["model"], manifest["in_dim"], len(classes), **config.get("model_kwargs", {})).to(device)
    for s in sequences:
        if s.features.shape[1] != manifest["in_dim"]:
            raise CSLError(
                f"features of {s.sample_id} have dimension {s.features.shape[1]}; "
                f"the run's models expect {manifest['in_dim']}"
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

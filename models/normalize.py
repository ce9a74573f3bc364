"""Feature standardisation stored inside a head's state dict."""

import numpy as np
import torch
from torch import nn


class FeatureNorm(nn.Module):
    """Standardises features with statistics fixed at training time.

    The statistics are buffers, so a checkpoint carries them and a replay on
    new videos normalises exactly as training did.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        # features: (N, D) pooled over all training frames
        self.fit_chunks([features])

    @torch.no_grad()
    def fit_chunks(self, chunks) -> None:
        """The statistics of the rows of every ``(n_i, D)`` chunk together,
        one chunk in memory at a time: per-chunk mean and squared deviations
        in float64, merged pairwise (Chan et al.), so no copy of all the
        features is ever made. Unbiased std, as ``torch.std``."""
        count, mean, m2 = 0, None, None
        for x in _blocks(chunks):
            n = len(x)
            if n == 0:
                continue
            chunk_mean = x.mean(0)
            chunk_m2 = ((x - chunk_mean) ** 2).sum(0)
            if mean is None:
                count, mean, m2 = n, chunk_mean, chunk_m2
                continue
            delta = chunk_mean - mean
            total = count + n
            mean = mean + delta * (n / total)
            m2 = m2 + chunk_m2 + delta**2 * (count * n / total)
            count = total
        if mean is None:
            return
        self.mean.copy_(mean.float())
        if count > 1:  # the std of one frame is undefined (NaN)
            self.std.copy_((m2 / (count - 1)).sqrt().float().clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


BLOCK_ROWS = 16384  # a long video is summed in blocks: at most this many rows in float64 at once


def _blocks(chunks):
    for chunk in chunks:  # sliced before it is converted: a memory-mapped array is read one block at a time
        for start in range(0, len(chunk), BLOCK_ROWS):
            block = chunk[start : start + BLOCK_ROWS]
            if isinstance(block, torch.Tensor):
                yield block.to(torch.float64)
            else:
                yield torch.from_numpy(np.asarray(block, dtype=np.float64))

"""Torch modules of fiftyone-csl: temporal heads, frame backbones and losses.

Each head maps a sequence of frame features ``(B, T, D)`` to per-frame class
logits ``(B, T, C)``. :func:`build_head` is the one place that knows the names.
"""

from .losses import masked_cross_entropy
from .mlp import FrameMLP
from .tcn import MultiStageTCN
from .transformer import TemporalTransformer

HEADS = {
    "transformer": TemporalTransformer,
    "tcn": MultiStageTCN,
    "mlp": FrameMLP,
}


def build_head(name, in_dim, num_classes, **kwargs):
    """Builds the temporal head called ``name`` (one of :data:`HEADS`)."""
    if name not in HEADS:
        raise ValueError(f"Unknown model '{name}'; choose one of {sorted(HEADS)}")
    return HEADS[name](in_dim=in_dim, num_classes=num_classes, **kwargs)


__all__ = [
    "HEADS",
    "FrameMLP",
    "MultiStageTCN",
    "TemporalTransformer",
    "build_head",
    "masked_cross_entropy",
]

"""Many checkpoints of one head, evaluated in one pass.

A replay asks the same question of every checkpoint of a fold: what are the
logits of these frames? :class:`StackedHead` stacks the checkpoints' weights
along a leading axis E and answers for all of them at once:

- the feature normalisation is computed once when every checkpoint carries
  the same statistics (they are fixed before training starts);
- the temporal transformer runs as batched matrix products over E with
  ``torch.baddbmm`` and one attention call over E x windows x heads;
- other heads are mapped over E with ``torch.func.vmap`` and
  ``torch.func.functional_call`` on their ``body``.

The result equals calling each checkpoint's module in turn, up to float
rounding.
"""

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from .transformer import TemporalTransformer, sinusoidal_positions


class _Body(nn.Module):
    """Exposes a head's ``body`` as ``forward`` for ``functional_call``."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, h):
        return self.head.body(h)


class StackedHead:
    """E checkpoints of the head ``template``'s architecture.

    Args:
        template: a head module (its own weights are not used)
        states: E state dicts for ``template``, oldest first
        device: where the stacked weights live
    """

    def __init__(self, template: nn.Module, states: list, device):
        if not states:
            raise ValueError("no checkpoint to stack")
        self.template = template.to(device).eval()
        self.num_checkpoints = len(states)
        self.weights = {
            k: torch.stack([s[k].to(device, torch.float32) for s in states])
            if states[0][k].is_floating_point()
            # integer buffers (none today) are shared
            else states[0][k].to(device)
            for k in states[0]
        }
        mean, std = self.weights["norm.mean"], self.weights["norm.std"]
        self.shared_norm = bool((mean == mean[:1]).all() and (std == std[:1]).all())
        self._explicit = isinstance(template, TemporalTransformer) and _plain_encoder(template)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (E, B, L, C) of windows ``x`` (B, L, D), none padded."""
        mean, std = self.weights["norm.mean"], self.weights["norm.std"]
        if self.shared_norm:
            h = (x - mean[0]) / std[0]  # (B, L, D), once for every checkpoint
            in_dims = None
        else:
            h = (x[None] - mean[:, None, None]) / std[:, None, None]  # (E, B, L, D)
            in_dims = 0
        if self._explicit:
            return self._transformer(h)
        body = {f"head.{k}": v for k, v in self.weights.items() if not k.startswith("norm.")}
        wrapper = _Body(self.template)
        return vmap(lambda w, h_: functional_call(wrapper, w, (h_,)), in_dims=(0, in_dims))(body, h)

    def _transformer(self, h: torch.Tensor) -> torch.Tensor:
        w = self.weights
        model = self.template
        E = self.num_checkpoints
        proj_w = w["proj.weight"]  # (E, H, D)
        if h.dim() == 3:  # shared input: one (B*L, D) x (D, E*H) product
            B, L, D = h.shape
            H = proj_w.shape[1]
            z = h.reshape(B * L, D) @ proj_w.reshape(E * H, D).T  # (B*L, E*H)
            z = z.reshape(B * L, E, H).transpose(0, 1)  # (E, B*L, H)
            z = z + w["proj.bias"][:, None]
        else:
            _, B, L, D = h.shape
            H = proj_w.shape[1]
            z = torch.baddbmm(w["proj.bias"][:, None], h.reshape(E, B * L, D), proj_w.transpose(1, 2))
        z = z + sinusoidal_positions(L, H, z.device).repeat(B, 1)[None]
        for i, layer in enumerate(model.encoder.layers):
            p = f"encoder.layers.{i}."
            heads = layer.self_attn.num_heads
            a = _layer_norm(z, w[p + "norm1.weight"], w[p + "norm1.bias"], layer.norm1.eps)
            qkv = torch.baddbmm(
                w[p + "self_attn.in_proj_bias"][:, None], a, w[p + "self_attn.in_proj_weight"].transpose(1, 2)
            )  # (E, B*L, 3H)
            q, k, v = (
                t.reshape(E * B, L, heads, H // heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1)
            )  # (E*B, heads, L, H/heads)
            att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(E, B * L, H)
            z = z + torch.baddbmm(
                w[p + "self_attn.out_proj.bias"][:, None], att, w[p + "self_attn.out_proj.weight"].transpose(1, 2)
            )
            a = _layer_norm(z, w[p + "norm2.weight"], w[p + "norm2.bias"], layer.norm2.eps)
            a = F.relu(torch.baddbmm(w[p + "linear1.bias"][:, None], a, w[p + "linear1.weight"].transpose(1, 2)))
            z = z + torch.baddbmm(w[p + "linear2.bias"][:, None], a, w[p + "linear2.weight"].transpose(1, 2))
        out = torch.baddbmm(w["out.bias"][:, None], z, w["out.weight"].transpose(1, 2))  # (E, B*L, C)
        return out.reshape(E, B, L, -1)


def _plain_encoder(model: TemporalTransformer) -> bool:
    """True for the encoder layout the explicit stacked path implements."""
    return (
        all(
            layer.norm_first and layer.activation_relu_or_gelu == 1 and layer.self_attn.batch_first
            for layer in model.encoder.layers
        )
        and model.encoder.norm is None
    )


def _layer_norm(z, weight, bias, eps):
    # z: (E, N, H); weight, bias: (E, H)
    return F.layer_norm(z, z.shape[-1:], eps=eps) * weight[:, None] + bias[:, None]

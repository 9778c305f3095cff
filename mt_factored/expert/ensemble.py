"""The stacked Q ensemble of a TD-MPC2 expert: its state-dict holder, its frozen target copy,
and one batched forward over any subset of members.

Members keep their weights stacked ``[members, out, in]`` (``mt_factored.nn.ensemble_mlp``), so
the whole ensemble, or the two members TD-MPC2 draws for a value, is one ``baddbmm`` per layer.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mt_factored.nn import EnsembleNormedLinear


class QEnsemble(nn.Module):
    """Holds the stacked Q members under `params`, so keys read `_Qs.params.{i}.*`."""

    def __init__(self, params: nn.Sequential) -> None:
        super().__init__()
        self.params = params


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters are buffers: saved and moved, never optimised."""
    clone = copy.deepcopy(module)
    for sub in clone.modules():
        for name, param in list(sub._parameters.items()):
            del sub._parameters[name]
            sub.register_buffer(name, param.detach().clone())
    return clone


def ensemble_forward(
    layers: nn.Sequential,
    x: Tensor,
    members: Tensor | None = None,
    detach: bool = False,
    dropout: bool = True,
) -> Tensor:
    """Runs the (possibly selected) members of a stacked ensemble on a shared input.

    Args:
        layers: `ensemble_mlp` layers (weights `[num_q, out, in]`).
        x: `[..., in]`, the same input for every member.
        members: LongTensor of member indices to run (all when None).
        detach: use detached weights (gradients reach `x` only).
        dropout: apply the first layer's dropout module (active in training mode).

    Returns:
        `[members, ..., out]`.
    """
    lead = x.shape[:-1]
    h = x.reshape(1, -1, x.shape[-1])
    for layer in layers:
        normed = isinstance(layer, EnsembleNormedLinear)
        params = [layer.weight, layer.bias]
        if normed:
            params += [layer.ln.weight, layer.ln.bias]
        if members is not None:
            params = [p.index_select(0, members) for p in params]
        if detach:
            params = [p.detach() for p in params]
        weight, bias = params[0], params[1]
        h = torch.baddbmm(bias.unsqueeze(1), h.expand(weight.shape[0], -1, -1), weight.mT)
        if normed:
            if dropout and layer.dropout is not None:
                h = layer.dropout(h)
            h = F.layer_norm(h, (h.shape[-1],)) * params[2].unsqueeze(1) + params[3].unsqueeze(1)
            h = layer.act(h)
    return h.reshape(h.shape[0], *lead, h.shape[-1])

"""Per-agent networks whose conditioning is folded into the first layer's bias.

Every per-agent network of the student reads ``cat([x, c])``: a varying input ``x``
(latent, action) and a conditioning ``c`` (task and agent embeddings) that is
constant over a plan or a rollout. The first layer is split accordingly,
``W [x; c] + b = W_x x + (W_c c + b)``: :meth:`ConditionedMLP.condition` computes
the bracket once per (batch item, agent) and :meth:`ConditionedMLP.forward` adds it
to ``W_x x`` for any number of samples and steps. Training and planning both go
through this one path.

Shapes: ``members`` networks (an ensemble, 1 for a plain network) keep their
weights stacked ``[members, out, in]`` and run in one batched matmul; outputs carry
a leading ``members`` axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Layer(nn.Module):
    """Stacked parameters of one layer of ``members`` networks (optional LayerNorm affine)."""

    def __init__(self, members: int, in_features: int, out_features: int, norm: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(members, out_features))
        if norm:
            self.ln_weight = nn.Parameter(torch.ones(members, out_features))
            self.ln_bias = nn.Parameter(torch.zeros(members, out_features))
        nn.init.trunc_normal_(self.weight, std=0.02)  # TD-MPC2's initialisation

    def linear(self, x: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """``x [1 or members, R, in]`` -> ``[members, R, out]`` (x broadcast over members)."""
        if self.weight.shape[0] == 1:
            return F.linear(x, self.weight[0], self.bias[0] if bias else None)
        if not bias:
            return torch.matmul(x, self.weight.mT)
        return torch.baddbmm(
            self.bias.unsqueeze(1), x.expand(self.weight.shape[0], -1, -1), self.weight.mT
        )

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm of ``x [members, ..., out]`` with each member's affine."""
        dim = x.shape[-1]
        if self.ln_weight.shape[0] == 1:
            return F.layer_norm(x, (dim,), self.ln_weight[0], self.ln_bias[0])
        shape = (self.ln_weight.shape[0],) + (1,) * (x.dim() - 2) + (dim,)
        return torch.addcmul(
            self.ln_bias.view(shape), F.layer_norm(x, (dim,)), self.ln_weight.view(shape)
        )


class ConditionedMLP(nn.Module):
    """``members`` MLPs over ``cat([x, c])``: (Linear -> LayerNorm -> act) x ``num_hidden``, then
    a plain Linear.

    Args:
        in_dim: size of the varying input ``x``.
        cond_dim: size of the conditioning ``c``.
        hidden_dim: width of the hidden layers.
        num_hidden: hidden layers (>= 1).
        out_dim: output size.
        members: networks run side by side (an ensemble).
        act: activation of the hidden layers.
    """

    def __init__(
        self,
        in_dim: int,
        cond_dim: int,
        hidden_dim: int,
        num_hidden: int,
        out_dim: int,
        members: int = 1,
        act: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if num_hidden < 1:
            raise ValueError(f"num_hidden must be >= 1, got {num_hidden}")
        self.members, self.in_dim, self.cond_dim = members, in_dim, cond_dim
        self.hidden_dim, self.out_dim = hidden_dim, out_dim
        self.first = _Layer(members, in_dim, hidden_dim, norm=True)
        self.cond_weight = nn.Parameter(torch.empty(members, hidden_dim, cond_dim))
        nn.init.trunc_normal_(self.cond_weight, std=0.02)
        self.hidden = nn.ModuleList(
            _Layer(members, hidden_dim, hidden_dim, norm=True) for _ in range(num_hidden - 1)
        )
        self.out = _Layer(members, hidden_dim, out_dim, norm=False)
        self.act = act if act is not None else nn.SiLU()

    def condition(self, c: torch.Tensor) -> torch.Tensor:
        """First-layer bias ``W_c c + b`` of conditioning ``c [..., cond_dim]``: ``[members, ..., hidden]``."""
        flat = c.reshape(1, -1, self.cond_dim)
        bias = torch.baddbmm(
            self.first.bias.unsqueeze(1), flat.expand(self.members, -1, -1), self.cond_weight.mT
        )
        return bias.view(self.members, *c.shape[:-1], self.hidden_dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Run on ``x [..., in_dim]`` with the bias of :meth:`condition`.

        ``bias [members, *cond_shape, hidden]`` broadcasts against the trailing dims
        of ``x``'s batch shape (e.g. x ``[samples, B, N, in]`` with bias ``[M, B, N, hidden]``).

        Returns:
            ``[members, *batch, out_dim]``, batch = broadcast of x's batch dims and cond_shape.
        """
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"expected inputs [..., {self.in_dim}], got {tuple(x.shape)}")
        m, cond_shape = self.members, bias.shape[1:-1]
        extra = x.dim() - 1 - len(cond_shape)
        if extra < 0:
            raise ValueError(
                f"inputs {tuple(x.shape)} have fewer batch dims than the conditioning {tuple(cond_shape)}"
            )
        h = self.first.linear(x.reshape(1, -1, self.in_dim), bias=False)
        h = h.view(m, *x.shape[:-1], self.hidden_dim) + bias.view(
            m, *(1,) * extra, *cond_shape, self.hidden_dim
        )
        batch = h.shape[1:-1]
        h = self.act(self.first.norm(h)).view(m, -1, self.hidden_dim)
        for layer in self.hidden:
            h = self.act(layer.norm(layer.linear(h)))
        return self.out.linear(h).view(m, *batch, self.out_dim)

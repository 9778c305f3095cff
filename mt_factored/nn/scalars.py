"""Symlog scalars and two-hot discrete regression (TD-MPC2, Appendix A)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class DiscreteRegression(nn.Module):
    """Maps logits over ``num_bins`` evenly spaced symlog bins to scalars and back.

    Args:
        num_bins: number of bins (101 in TD-MPC2).
        vmin, vmax: bin range in symlog space (-10, 10 in TD-MPC2).
    """

    def __init__(self, num_bins: int = 101, vmin: float = -10.0, vmax: float = 10.0) -> None:
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.num_bins, self.vmin, self.vmax = num_bins, float(vmin), float(vmax)
        self.bin_size = (self.vmax - self.vmin) / (num_bins - 1)
        self.register_buffer("bins", torch.linspace(vmin, vmax, num_bins), persistent=False)

    def to_scalar(self, logits: torch.Tensor) -> torch.Tensor:
        """``[..., num_bins]`` logits -> ``[..., 1]`` scalar (expectation, then symexp)."""
        probs = logits.softmax(dim=-1)
        return symexp((probs * self.bins).sum(dim=-1, keepdim=True))

    def two_hot(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., 1]`` scalars -> ``[..., num_bins]`` two-hot targets in symlog space."""
        x = symlog(x).clamp(self.vmin, self.vmax).squeeze(-1)
        pos = (x - self.vmin) / self.bin_size
        low = pos.floor().long().clamp(0, self.num_bins - 1)
        high_weight = (pos - low.to(pos.dtype)).unsqueeze(-1)
        target = torch.zeros(*x.shape, self.num_bins, device=x.device, dtype=x.dtype)
        target.scatter_(-1, low.unsqueeze(-1), 1 - high_weight)
        high = (low + 1).clamp(max=self.num_bins - 1)
        target.scatter_add_(-1, high.unsqueeze(-1), high_weight)
        return target

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Soft cross-entropy between logits and two-hot(target); ``[..., 1]``."""
        log_probs = F.log_softmax(logits, dim=-1)
        return -(self.two_hot(target) * log_probs).sum(dim=-1, keepdim=True)

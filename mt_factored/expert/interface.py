"""`Expert`: what students, distillation and planners use from a TD-MPC2 teacher.

Implemented by `TDMPC2Expert` (one multi-task or single-task model) and by
`PerTaskExperts` (single-task experts behind the multi-task padded layout).
`PolicyOutput` is what `TDMPC2Expert.pi` returns (trainers use all of its fields).
Tensors have batch dims first; `task` is a LongTensor of task ids whose shape
broadcasts to the batch dims (None only for a single-task `TDMPC2Expert`).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import torch


class PolicyOutput(NamedTuple):
    """One draw of the TD-MPC2 policy prior (padded action entries are 0 everywhere)."""

    action: torch.Tensor
    """Sampled action after tanh, `[..., A]`."""
    mean: torch.Tensor
    """tanh of the masked mean, `[..., A]` (the deterministic action)."""
    log_std: torch.Tensor
    """Masked log standard deviation before the tanh, `[..., A]`."""
    log_prob: torch.Tensor
    """Log-density of `action` including the tanh correction, `[..., 1]`."""
    entropy: torch.Tensor
    """`-log_prob`, `[..., 1]` (a one-sample entropy estimate)."""
    scaled_entropy: torch.Tensor
    """Entropy rescaled by the task's number of real action dims, `[..., 1]`:
    the term TD-MPC2's policy loss weights with `entropy_coef`."""


@runtime_checkable
class Expert(Protocol):
    """A TD-MPC2 world model seen from outside: latents, rewards, values, policy prior."""

    @property
    def num_tasks(self) -> int:
        """Task ids are 0 .. num_tasks - 1."""

    @property
    def obs_dim(self) -> int:
        """Observation size of `encode`'s input."""

    @property
    def action_dim(self) -> int:
        """Action size of every action input and output."""

    @property
    def latent_dim(self) -> int:
        """Latent size of `encode`'s output."""

    @property
    def action_masks(self) -> torch.Tensor:
        """`[num_tasks, action_dim]`: 1 on each task's real action entries, 0 on padding."""

    @property
    def discounts(self) -> torch.Tensor:
        """`[num_tasks]` discount per task."""

    def action_mask(self, task: torch.Tensor | None) -> torch.Tensor:
        """`[..., action_dim]` mask of each task id."""

    def encode(self, obs: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        """`[..., obs_dim]` -> `[..., latent_dim]`."""

    def next(
        self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None
    ) -> torch.Tensor:
        """Next latent `[..., latent_dim]`."""

    def reward(
        self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None
    ) -> torch.Tensor:
        """Predicted reward `[..., 1]`."""

    def q_all(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        task: torch.Tensor | None,
        target: bool = False,
    ) -> torch.Tensor:
        """Value of every ensemble member `[num_q, ..., 1]`."""

    def q_avg(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        task: torch.Tensor | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean value of two random members `[..., 1]` (TD-MPC2's planning value)."""

    def pi_mean(self, z: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        """Deterministic policy action `[..., action_dim]` (0 on padded entries)."""

    def pi_sample(
        self,
        z: torch.Tensor,
        task: torch.Tensor | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sampled policy action `[..., action_dim]` (0 on padded entries)."""

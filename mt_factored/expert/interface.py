"""`Expert`: what students, distillation and planners use from a TD-MPC2 teacher.

Implemented by `TDMPC2Expert` (one multi-task or single-task model) and by
`PerTaskExperts` (single-task experts behind the multi-task padded layout).
Tensors have batch dims first; `task` is a LongTensor of task ids whose shape
broadcasts to the batch dims (None only for a single-task `TDMPC2Expert`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


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

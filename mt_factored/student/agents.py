"""How each task's action vector maps onto agents: index tables, masks, split and merge.

An environment action ``[..., A]`` becomes agent actions ``[..., N, G]`` (agent k of
task t holds the action entries of its group, in group order) and back. Entries
that are not real (agents a task does not have, group slots beyond a narrow group)
are 0 after a split and are dropped by a merge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mt_factored.student.config import StudentConfig


def _expand_task_rows(rows: torch.Tensor, batch_shape: torch.Size, what: str) -> torch.Tensor:
    """``rows [*task.shape, k]`` broadcast to ``[*batch_shape, k]`` with a clear error."""
    try:
        return rows.expand(*batch_shape, rows.shape[-1])
    except RuntimeError as err:
        raise ValueError(
            f"task ids of shape {tuple(rows.shape[:-1])} do not broadcast to the batch shape "
            f"{tuple(batch_shape)} of {what}"
        ) from err


class AgentLayout(nn.Module):
    """Index tables of every task's partition, as (non-persistent) buffers.

    ``task`` arguments are LongTensors whose shape broadcasts to the batch dims of
    the other input (``[B]`` against ``[S, B, ...]``; use ``task[:, None]`` for
    ``[B, T, ...]``).
    """

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        num_tasks, n, g, a = (
            config.num_tasks,
            config.num_agents,
            config.agent_action_dim,
            config.action_dim,
        )
        self.num_agents, self.agent_action_dim, self.action_dim = n, g, a
        gather = torch.full((num_tasks, n * g), a, dtype=torch.long)  # a = the zero column
        scatter = torch.full((num_tasks, a), n * g, dtype=torch.long)  # n * g = the zero column
        for t, groups in enumerate(config.partitions):
            for k, group in enumerate(groups):
                for i, j in enumerate(group):
                    gather[t, k * g + i] = j
                    scatter[t, j] = k * g + i
        action_mask = (gather < a).float().view(num_tasks, n, g)
        self.register_buffer("_gather", gather, persistent=False)
        self.register_buffer("_scatter", scatter, persistent=False)
        self.register_buffer("_agent_action_mask", action_mask, persistent=False)
        self.register_buffer("_agent_mask", action_mask.amax(dim=-1), persistent=False)

    def agent_mask(self, task: torch.Tensor) -> torch.Tensor:
        """``[*task.shape, N]``: 1 for the task's agents, 0 for padded agents."""
        return self._agent_mask[task]

    def agent_action_mask(self, task: torch.Tensor) -> torch.Tensor:
        """``[*task.shape, N, G]``: 1 on real action entries of each agent."""
        return self._agent_action_mask[task]

    def split(self, action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """``[..., A]`` environment actions -> ``[..., N, G]`` agent actions (padding 0)."""
        if action.shape[-1] != self.action_dim:
            raise ValueError(
                f"actions must end in action_dim={self.action_dim}, got {tuple(action.shape)}"
            )
        index = _expand_task_rows(self._gather[task], action.shape[:-1], "the actions")
        padded = F.pad(action, (0, 1))
        out = torch.gather(padded, -1, index)
        return out.unflatten(-1, (self.num_agents, self.agent_action_dim))

    def merge(self, agent_action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """``[..., N, G]`` agent actions -> ``[..., A]`` environment actions (padding 0)."""
        if agent_action.shape[-2:] != (self.num_agents, self.agent_action_dim):
            raise ValueError(
                f"agent actions must end in (N, G)=({self.num_agents}, {self.agent_action_dim}), "
                f"got {tuple(agent_action.shape)}"
            )
        flat = F.pad(agent_action.flatten(-2), (0, 1))
        index = _expand_task_rows(self._scatter[task], flat.shape[:-1], "the agent actions")
        return torch.gather(flat, -1, index)

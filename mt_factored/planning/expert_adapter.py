"""The TD-MPC2 expert seen through the planner's agent axis: one agent, A dims.

Works with any object that has the expert's planning methods (``encode``,
``next``, ``reward``, ``q_avg``, ``pi_sample``, ``action_mask`` and a
``discounts`` tensor indexed by task), e.g. ``mt_factored.expert.TDMPC2Expert``.
The return of a trajectory is TD-MPC2's: discounted model rewards over the
horizon plus the discounted value of the last latent under a policy action,
the value being the mean of two randomly chosen Q ensemble members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from mt_factored.planning.mppi import GeneratorLike, LazyGenerator

if TYPE_CHECKING:
    from mt_factored.expert.interface import Expert

_NEEDED = (
    "encode",
    "next",
    "reward",
    "q_avg",
    "pi_sample",
    "action_mask",
    "discounts",
    "action_dim",
)
"""The part of :class:`~mt_factored.expert.interface.Expert` that planning uses."""


@dataclass
class ExpertPlanState:
    """One plan's encoded envs, with the latents expanded over samples cached."""

    z: torch.Tensor
    """``[E, L]`` latents of the observed states."""
    task: torch.Tensor
    """``[E]`` task ids."""
    discount: torch.Tensor
    """``[E]`` discount per env."""
    _expanded: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def expand(self, copies: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z [E*copies, L], task [E*copies])``, env-major; built once per plan and count."""
        if copies not in self._expanded:
            self._expanded[copies] = (
                self.z.repeat_interleave(copies, dim=0),
                self.task.repeat_interleave(copies, dim=0),
            )
        return self._expanded[copies]


class ExpertPlanningModel:
    """Centralized :class:`~mt_factored.planning.base.PlanningModel` over a TD-MPC2 expert.

    Args:
        expert: the world model (an :class:`~mt_factored.expert.interface.Expert`;
            only the methods in ``_NEEDED`` are used); call ``expert.eval()`` yourself,
            the Q ensemble has dropout.
        generator: randomness of the policy samples and of the Q-member choice: a
            ``torch.Generator`` on the inputs' device, an int seed, or None.
    """

    num_agents = 1

    def __init__(self, expert: Expert, generator: GeneratorLike = None) -> None:
        missing = [name for name in _NEEDED if not hasattr(expert, name)]
        if missing:
            raise TypeError(
                f"{type(expert).__name__} lacks what planning needs: {', '.join(missing)}"
            )
        self.expert = expert
        self.agent_action_dim = int(expert.action_dim)
        self._generator = LazyGenerator(generator)

    def reseed(self, seed: int) -> None:
        """Restart the policy samples' randomness from ``seed``."""
        self._generator = LazyGenerator(seed)

    def initial_state(self, obs: torch.Tensor, task: torch.Tensor) -> ExpertPlanState:
        z = self.expert.encode(obs, task)
        discount = self.expert.discounts.to(device=z.device, dtype=z.dtype)[task]
        return ExpertPlanState(z=z, task=task, discount=discount)

    def action_mask(self, task: torch.Tensor) -> torch.Tensor:
        return self.expert.action_mask(task).unsqueeze(1)

    def policy_actions(
        self, state: ExpertPlanState, task: torch.Tensor, num_trajs: int, horizon: int
    ) -> torch.Tensor:
        gen = self._generator.on(state.z.device)
        z, task_rep = state.expand(num_trajs)
        out = z.new_empty(z.shape[0], horizon, self.agent_action_dim)
        for h in range(horizon):
            out[:, h] = self.expert.pi_sample(z, task_rep, generator=gen)
            if h + 1 < horizon:
                z = self.expert.next(z, out[:, h], task_rep)
        return out.view(state.z.shape[0], 1, num_trajs, horizon, self.agent_action_dim)

    def returns(
        self, state: ExpertPlanState, actions: torch.Tensor, task: torch.Tensor
    ) -> torch.Tensor:
        num_envs, agents, samples, horizon, dims = actions.shape
        if agents != 1 or dims != self.agent_action_dim:
            raise ValueError(
                f"expert planning expects actions [envs, 1, samples, horizon, {self.agent_action_dim}], "
                f"got {tuple(actions.shape)}"
            )
        gen = self._generator.on(state.z.device)
        z, task_rep = state.expand(samples)
        # Step-major copy so each step's actions are one contiguous [E*S, A] block.
        steps = actions.reshape(num_envs * samples, horizon, dims).transpose(0, 1).contiguous()
        discount = state.discount.unsqueeze(1)  # [E, 1]
        weight = torch.ones_like(discount)
        total = z.new_zeros(num_envs, samples)
        for h in range(horizon):
            reward = self.expert.reward(z, steps[h], task_rep).view(num_envs, samples)
            z = self.expert.next(z, steps[h], task_rep)
            total += weight * reward
            weight = weight * discount
        pi = self.expert.pi_sample(z, task_rep, generator=gen)
        value = self.expert.q_avg(z, pi, task_rep, generator=gen).view(num_envs, samples)
        total += weight * value
        return total.unsqueeze(1)

    def to_env_action(self, agent_action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return agent_action.squeeze(1)

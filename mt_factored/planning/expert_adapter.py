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

from mt_factored.expert.model import TDMPC2Expert
from mt_factored.nn.compiling import Compiled
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
        compile: run the returns through ``torch.compile`` (a :class:`TDMPC2Expert` only;
            see ``mt_factored.nn.compiling``); the same random numbers as the eager path.
    """

    num_agents = 1

    def __init__(
        self, expert: Expert, generator: GeneratorLike = None, compile: bool = False
    ) -> None:
        missing = [name for name in _NEEDED if not hasattr(expert, name)]
        if missing:
            raise TypeError(
                f"{type(expert).__name__} lacks what planning needs: {', '.join(missing)}"
            )
        self.expert = expert
        self.agent_action_dim = int(expert.action_dim)
        self._generator = LazyGenerator(generator)
        # Only the multi-task model takes its noise from outside; other experts (the
        # per-task router) plan eagerly.
        self._compiled = _COMPILED_RETURNS if compile and isinstance(expert, TDMPC2Expert) else None

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

    def policy_mean(self, state: ExpertPlanState, task: torch.Tensor) -> torch.Tensor:
        """The policy prior's deterministic action at the observed states: ``[E, 1, A]``."""
        return self.expert.pi_mean(state.z, state.task).unsqueeze(1)

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
        if self._compiled is None:
            return _eager_returns(self.expert, z, task_rep, steps, state.discount, gen)
        # The same draws as the eager path, in its order (policy noise, then the Q pair),
        # made outside the compiled rollout.
        noise = self.expert.policy_noise(z, gen)
        members = self.expert.q_members(gen, z.device)
        return self._compiled(self.expert, z, task_rep, steps, state.discount, noise, members)

    def to_env_action(self, agent_action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return agent_action.squeeze(1)


def _rollout(expert, z, task_rep, steps, discount):
    """Discounted model rewards over the horizon: (last latent, total ``[E, S]``, weight)."""
    num_envs = discount.shape[0]
    discount = discount.unsqueeze(1)  # [E, 1]
    weight = torch.ones_like(discount)
    total = z.new_zeros(num_envs, z.shape[0] // num_envs)
    for h in range(steps.shape[0]):
        total += weight * expert.reward(z, steps[h], task_rep).view(num_envs, -1)
        z = expert.next(z, steps[h], task_rep)
        weight = weight * discount
    return z, total, weight


def _eager_returns(expert, z, task_rep, steps, discount, gen) -> torch.Tensor:
    z, total, weight = _rollout(expert, z, task_rep, steps, discount)
    pi = expert.pi_sample(z, task_rep, generator=gen)
    value = expert.q_avg(z, pi, task_rep, generator=gen).view(total.shape)
    return (total + weight * value).unsqueeze(1)


def expert_returns(
    expert: TDMPC2Expert,
    z: torch.Tensor,
    task_rep: torch.Tensor,
    steps: torch.Tensor,
    discount: torch.Tensor,
    noise: torch.Tensor,
    members: torch.Tensor,
) -> torch.Tensor:
    """TD-MPC2's H-step returns ``[E, 1, S]`` as a pure function of its tensors.

    Args:
        z: ``[E*S, L]`` latents, env-major; task_rep: ``[E*S]`` their task ids.
        steps: ``[H, E*S, A]`` actions; discount: ``[E]``.
        noise: ``[E*S, A]`` policy noise of the terminal action; members: ``[2]`` Q members.
    """
    z, total, weight = _rollout(expert, z, task_rep, steps, discount)
    pi = expert.pi(z, task_rep, noise=noise).action
    value = expert.q_avg(z, pi, task_rep, members=members).view(total.shape)
    return (total + weight * value).unsqueeze(1)


_COMPILED_RETURNS = Compiled(expert_returns, "expert planning returns")

"""What the MPPI planner needs from a world model, and its settings.

The planner works on an explicit agent axis. Every tensor it handles is shaped
``[envs, agents, samples, horizon, dims]`` (or a prefix of that):

- centralized planning (TD-MPC2 expert): 1 agent x A action dims;
- decentralized planning (factored student): N agents x G dims each (G = 1 for
  one joint per agent).

A :class:`PlanningModel` adapts a world model to that view. It owns how latents
are expanded over samples and how agent actions map back to the environment's
action vector, so one MPPI serves both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import torch

from mt_factored.artifacts.configs import overrides, partial_config
from mt_factored.errors import InputError


@dataclass
class MPPIConfig:
    """MPPI settings (defaults: TD-MPC2 / Fac-TDMPC Table 2)."""

    iterations: int = 6
    """Optimisation iterations per control step."""
    num_samples: int = 512
    """Trajectories sampled per iteration and agent (policy trajectories included)."""
    num_elites: int = 64
    """Top trajectories that update the sampling distribution."""
    num_pi_trajs: int = 24
    """Trajectories proposed by the policy prior (0 disables the prior)."""
    horizon: int = 3
    """Planning horizon in agent steps."""
    min_std: float = 0.05
    """Lower bound of the sampling standard deviation."""
    max_std: float = 2.0
    """Upper bound (and initial value) of the sampling standard deviation."""
    temperature: float = 0.5
    """Inverse temperature of the elite weighting ``exp(temperature * (G - max G))``."""
    prior_weight: float = 0.0
    """Anchor to the policy prior (actor-regularised control, LOOP, Sikchi et al. 2022): each
    candidate is ranked by ``G - prior_weight * ||a_0 - pi(s_0)||^2``, its return less the
    squared distance (summed over the agent's dims) of its first action from the prior's
    deterministic action, in return units. 0: plain MPPI; large: the prior's action unless
    the model's returns say a candidate is worth the distance. For a model whose returns
    rank candidates less reliably than its prior acts (``evaluate mpc=false``)."""

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.horizon < 1:
            raise InputError("MPPI iterations and horizon must be >= 1")
        if not 0 <= self.num_pi_trajs < self.num_samples:
            raise InputError(
                f"num_pi_trajs ({self.num_pi_trajs}) must be in [0, num_samples={self.num_samples})"
            )
        if not 1 <= self.num_elites <= self.num_samples:
            raise InputError(
                f"num_elites ({self.num_elites}) must be in [1, num_samples={self.num_samples}]"
            )
        if not self.prior_weight >= 0:  # also refuses NaN
            raise InputError(f"prior_weight must be >= 0, got {self.prior_weight}")
        if not 0 < self.min_std <= self.max_std:
            raise InputError(f"need 0 < min_std <= max_std, got {self.min_std}, {self.max_std}")


MPPIOverrides = partial_config(
    MPPIConfig,
    "MPPIOverrides",
    """Some MPPI settings on top of another :class:`MPPIConfig` (None: keep its value), e.g. the
    student's own budget ``{num_samples: 128, iterations: 2, num_elites: 16, num_pi_trajs: 16}``.""",
)


def with_overrides(base: MPPIConfig, changes: Any) -> MPPIConfig:
    """``base`` with the fields an :data:`MPPIOverrides` (or a mapping) sets."""
    return replace(base, **overrides(changes))


@runtime_checkable
class PlanningModel(Protocol):
    """A world model seen through the planner's agent axis.

    ``state`` is whatever the model needs per environment (a latent tensor with a
    leading ``envs`` dim, or a tuple of them); the planner only passes it back.

    Optionally, with ``fuses_iterations`` True, the planner hands all of MPPI's iterations to
    ``iterate(state, task, pi_actions, mean, std, noise, mask, anchor, settings)``, with
    ``noise`` drawn up front for every iteration. It runs
    :func:`~mt_factored.planning.mppi.mppi_iterations` with its returns inlined (so it can
    compile them as one graph) and must draw its own random numbers in the order
    per-iteration :meth:`returns` calls would.
    """

    num_agents: int
    """N: agents planned independently (1 for a centralized model)."""
    agent_action_dim: int
    """G: action dims per agent (A for a centralized model, 1 per joint)."""

    def initial_state(self, obs: torch.Tensor, task: torch.Tensor) -> Any:
        """Encode ``obs [envs, obs_dim]`` for tasks ``task [envs]``."""

    def action_mask(self, task: torch.Tensor) -> torch.Tensor:
        """``[envs, agents, dims]`` with 1 where an action entry is real, 0 where padded.

        ``agents`` may be fewer than ``num_agents`` when the batch's tasks use fewer
        (the planner then plans that many); ``initial_state`` must agree with it.
        """

    def policy_actions(
        self, state: Any, task: torch.Tensor, num_trajs: int, horizon: int
    ) -> torch.Tensor:
        """Roll the policy prior out: ``[envs, agents, num_trajs, horizon, dims]``."""

    def returns(self, state: Any, actions: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Each agent's H-step return for ``actions [envs, agents, samples, horizon, dims]``.

        Discounted rewards along the model's own rollout plus the discounted value
        of the last latent; returns ``[envs, agents, samples]``.
        """

    def to_env_action(self, agent_action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Map ``[envs, agents, dims]`` to the environment's ``[envs, action_dim]``."""

"""Acting with a world model's policy prior alone, without planning (TD-MPC2's ``mpc: false``).

A diagnostic beside MPPI: when the student's policy prior alone scores well and its MPPI does
not, the student knows the behaviour but its rewards and values rank the planner's candidates
wrongly. :class:`PolicyActor` has the planner's interface (``plan``, ``reset``, ``reseed``,
``budget``), so every episode loop runs it in place of an :class:`~mt_factored.planning.mppi.
MPPIPlanner`.
"""

from __future__ import annotations

import torch

from mt_factored.planning.base import PlanningModel
from mt_factored.planning.mppi import check_plan_inputs

POLICY_BUDGET = (0, 0)
"""The ``budget`` (samples, iterations) of acting without planning."""


class PolicyActor:
    """The policy prior's action at the current state, per env.

    The sampled actions (``eval_mode`` false) draw from the model's own generator, which
    :meth:`reseed` restarts.

    Args:
        model: a planning view with ``policy_mean(state, task) -> [envs, agents, dims]``
            (both the student's and the expert's adapters have one).
    """

    budget = POLICY_BUDGET

    def __init__(self, model: PlanningModel) -> None:
        if not callable(getattr(model, "policy_mean", None)):
            raise TypeError(
                f"{type(model).__name__} has no policy_mean(state, task): acting without "
                "planning needs a model with a policy prior"
            )
        self.model = model

    def reset(self, envs: torch.Tensor | list[int] | None = None) -> None:
        """Nothing carries over between steps (no warm start to forget)."""

    def reseed(self, seed: int) -> None:
        """Restart the sampled actions' randomness (the model's) from ``seed``."""
        reseed_model = getattr(self.model, "reseed", None)
        if reseed_model is not None:
            reseed_model(seed)

    def plan(
        self,
        obs: torch.Tensor,
        task: torch.Tensor,
        t0: bool | torch.Tensor = False,
        eval_mode: bool = True,
    ) -> torch.Tensor:
        """The policy's action for each env: its mean (``eval_mode``) or a sample.

        Returns:
            ``[E, action_dim]`` environment actions in [-1, 1], padded entries 0.
        """
        check_plan_inputs(obs, task)
        with torch.inference_mode():
            state = self.model.initial_state(obs, task)
            if eval_mode:
                action = self.model.policy_mean(state, task)
            else:
                action = self.model.policy_actions(state, task, 1, 1)[:, :, 0, 0]
            mask = self.model.action_mask(task).to(action.dtype)
            action = self.model.to_env_action(action.clamp(-1.0, 1.0) * mask, task)
        return action.clone()

"""The factored student seen through the planner's agent axis: N agents x G dims.

Decentralized planning (Fac-TDMPC Sec. 4.3): each agent's return is computed on its
own latent rollout, with its own rewards and value,

    G_k = sum_h gamma^h r_k(s_k^h, a_k^h) + gamma^H mean_members q_k(s_k^H, pi_k(s_k^H)),

so the planner optimises every agent independently (Proposition 1). All agents,
samples and envs of one step go through each per-agent network in one batched
call; the task and agent embeddings are folded into first-layer biases once per
plan (``FactoredStudent.condition``), so a joint costs one more row block of the
same matmuls and nothing else.

Internally the sample axis leads (``[S, E, N, dim]``) so the per-(env, agent)
biases broadcast without copies; the planner's ``[E, N, S, ...]`` layout is restored
at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mt_factored.nn.compiling import Compiled
from mt_factored.planning.mppi import (
    GeneratorLike,
    IterationSettings,
    LazyGenerator,
    mppi_iterations,
)
from mt_factored.student.model import FactoredStudent, StudentConditioning


@dataclass
class StudentPlanState:
    """One plan's encoded envs."""

    s: torch.Tensor
    """``[E, N, m]`` per-agent latents of the observed states."""
    cond: StudentConditioning
    """Task/agent conditioning of the E envs."""


class StudentPlanningModel:
    """Decentralized :class:`~mt_factored.planning.base.PlanningModel` over a :class:`FactoredStudent`.

    Args:
        student: the world model (needs its policy prior when MPPI uses policy
            trajectories); call ``student.eval()`` yourself.
        generator: randomness of the policy samples: a ``torch.Generator`` on the
            inputs' device, an int seed, or None.
        compile: run MPPI's optimisation iterations (sampling, every sample's H-step
            rollout, elite selection and the distribution update, one graph per plan) and
            :meth:`returns` through ``torch.compile`` (see ``mt_factored.nn.compiling``);
            equal to the eager path within fp32 round-off, same random numbers.
    """

    def __init__(
        self, student: FactoredStudent, generator: GeneratorLike = None, compile: bool = False
    ) -> None:
        if not isinstance(student, FactoredStudent):
            raise TypeError(f"student must be a FactoredStudent, got {type(student).__name__}")
        self.student = student
        self._returns = _COMPILED_RETURNS if compile else student_returns
        self._iterations = _COMPILED_ITERATIONS if compile else student_iterations
        # The planner hands the whole optimisation to iterate() only when it is compiled:
        # eagerly the per-iteration loop draws its numbers exactly as it always did, also
        # when a caller shares one generator between planner and model.
        self.fuses_iterations = compile
        self.num_agents = student.num_agents
        self.agent_action_dim = student.agent_action_dim
        self._generator = LazyGenerator(generator)

    def active_agents(self, task: torch.Tensor) -> int:
        """Agents up to the last real agent of any task in the batch.

        A task's real agents come first, so agents past that point carry no action for
        any env: a 1-joint task in an mt30 student plans 1 agent, not 6.
        """
        real = self.student.agent_mask(task).any(dim=0)
        return int(real.nonzero().max()) + 1 if bool(real.any()) else 1

    def reseed(self, seed: int) -> None:
        """Restart the policy samples' randomness from ``seed``."""
        self._generator = LazyGenerator(seed)

    def initial_state(self, obs: torch.Tensor, task: torch.Tensor) -> StudentPlanState:
        n = self.active_agents(task)
        s = self.student.encode(obs, task)[:, :n]
        return StudentPlanState(s=s, cond=self.student.condition(task).narrow_agents(n))

    def action_mask(self, task: torch.Tensor) -> torch.Tensor:
        return self.student.agent_action_mask(task)[:, : self.active_agents(task)]

    def policy_actions(
        self, state: StudentPlanState, task: torch.Tensor, num_trajs: int, horizon: int
    ) -> torch.Tensor:
        gen = self._generator.on(state.s.device)
        s = state.s.expand(num_trajs, *state.s.shape)  # [P, E, N, m]
        steps = []
        for h in range(horizon):
            action = self.student.pi(s, state.cond, generator=gen).action
            steps.append(action)
            if h + 1 < horizon:
                s = self.student.next(s, action, state.cond)
        # [H, P, E, N, G] -> [E, N, P, H, G]
        return torch.stack(steps).permute(2, 3, 1, 0, 4)

    def policy_mean(self, state: StudentPlanState, task: torch.Tensor) -> torch.Tensor:
        """The policy prior's deterministic action of each agent: ``[E, N, G]``."""
        return self.student.pi(state.s, state.cond).mean

    def returns(
        self, state: StudentPlanState, actions: torch.Tensor, task: torch.Tensor
    ) -> torch.Tensor:
        num_envs, agents, samples, horizon, dims = actions.shape
        if (agents, dims) != (state.s.shape[1], self.agent_action_dim):
            raise ValueError(
                f"student planning expects actions [envs, {state.s.shape[1]}, samples, horizon, "
                f"{self.agent_action_dim}], got {tuple(actions.shape)}"
            )
        # The terminal policy action's noise, drawn here (as the eager pi would draw it)
        # so the rollout is a pure function that may be compiled.
        noise = self.student.policy_noise(
            (samples, num_envs, agents, dims), state.s, self._generator.on(state.s.device)
        )
        return self._returns(self.student, state.s, actions, state.cond, noise)

    def iterate(
        self,
        state: StudentPlanState,
        task: torch.Tensor,
        pi_actions: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        noise: torch.Tensor,
        mask: torch.Tensor,
        anchor: torch.Tensor | None,
        settings: IterationSettings,
    ) -> tuple[torch.Tensor, ...]:
        """MPPI's iterations (:func:`~mt_factored.planning.mppi.mppi_iterations`) with this
        model's returns inlined, eager or compiled as one graph (the planner calls it when
        ``fuses_iterations``). The same numbers as the per-iteration loop when this model's
        generator is not the planner's (with one shared generator the draws interleave
        differently)."""
        iterations, num_envs, agents = noise.shape[:3]
        samples = pi_actions.shape[2] + noise.shape[3]
        gen = self._generator.on(state.s.device)
        # Each iteration's terminal policy noise, drawn in the order :meth:`returns` draws it.
        shape = (samples, num_envs, agents, self.agent_action_dim)
        terminal = torch.stack(
            [self.student.policy_noise(shape, state.s, gen) for _ in range(iterations)]
        )
        result = self._iterations(
            self.student,
            state.s,
            state.cond,
            pi_actions,
            mean,
            std,
            noise,
            terminal,
            mask,
            anchor,
            settings,
        )
        if state.s.device.type == "cuda":
            # Under CUDA graphs the outputs live in the graph's memory, which the next plan
            # overwrites; the planner keeps the mean (warm start) and the stats past it.
            result = tuple(t.clone() for t in result)
        return result

    def to_env_action(self, agent_action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        missing = self.num_agents - agent_action.shape[1]  # agents dropped by active_agents
        full = torch.nn.functional.pad(agent_action, (0, 0, 0, missing))
        return self.student.merge_actions(full, task)


def student_returns(
    student: FactoredStudent,
    s0: torch.Tensor,
    actions: torch.Tensor,
    cond: StudentConditioning,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Every agent's H-step return, ``[E, N, S]``: a pure function of its tensors.

    Args:
        s0: ``[E, N, m]`` latents of the observed states.
        actions: ``[E, N, S, H, G]`` candidate actions.
        cond: the E envs' conditioning.
        noise: ``[S, E, N, G]`` standard normal noise of the terminal policy action.
    """
    samples, horizon = actions.shape[2], actions.shape[3]
    steps = actions.permute(3, 2, 0, 1, 4)  # [H, S, E, N, G]
    s = s0.expand(samples, *s0.shape)  # [S, E, N, m]
    discount = cond.discount.unsqueeze(-1)  # [E, 1]: broadcasts over [S, E, N]
    weight = torch.ones_like(discount)
    total = torch.zeros(samples, *s0.shape[:2], dtype=s.dtype, device=s.device)
    for h in range(horizon):
        s, reward = student.step(s, steps[h], cond)
        total += weight * reward
        weight = weight * discount
    pi = student.pi(s, cond, noise=noise).action
    total += weight * student.q(s, pi, cond).mean(dim=0)
    return total.permute(1, 2, 0)  # [E, N, S]


def student_iterations(
    student: FactoredStudent,
    s0: torch.Tensor,
    cond: StudentConditioning,
    pi_actions: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    noise: torch.Tensor,
    terminal_noise: torch.Tensor,
    mask: torch.Tensor,
    anchor: torch.Tensor | None,
    settings: IterationSettings,
) -> tuple[torch.Tensor, ...]:
    """:func:`~mt_factored.planning.mppi.mppi_iterations` over :func:`student_returns`.

    Args:
        terminal_noise: ``[iterations, S, E, N, G]`` each iteration's terminal policy noise.
        (the rest: see :func:`student_returns` and ``mppi_iterations``)
    """
    return mppi_iterations(
        lambda actions, it: student_returns(student, s0, actions, cond, terminal_noise[it]),
        pi_actions,
        mean,
        std,
        noise,
        mask,
        anchor,
        settings,
    )


_COMPILED_RETURNS = Compiled(student_returns, "student planning returns")
"""One compiled function for every planner, so graphs are shared across planners and
evaluations (a graph is keyed by the student, its shapes and devices)."""

_COMPILED_ITERATIONS = Compiled(student_iterations, "student planning iterations")
"""The same for a plan's whole optimisation (one graph per student, shapes and budget)."""

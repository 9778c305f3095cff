"""Noisy action sequences and the two models' rollouts under them (Alg. 1).

Both models roll their *own* latents forward from the window's first observation
under the same noisy actions; the student is never fed the expert's latents.
Shapes: ``K`` noise samples lead, then the batch ``B``: actions ``[K, B, H, A]``,
per-step outputs ``[H, K, B]``.

The rollouts are what the loss terms (:mod:`.terms`) read. Each carries its model and its
final latent, and an ``extra`` mapping, so a term that needs more than rewards and values
(e.g. the value at the end of the horizon) computes it from the rollout without a change
to every other term.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

import torch

from mt_factored.expert.interface import Expert
from mt_factored.student.model import FactoredStudent, StudentConditioning

NO_EXTRA: Mapping[str, torch.Tensor] = MappingProxyType({})


def noisy_actions(
    action: torch.Tensor,
    mask: torch.Tensor,
    num_samples: int,
    noise_std: float | Sequence[float],
    generator: torch.Generator | None = None,
    keep_data_action: bool = False,
) -> torch.Tensor:
    """``num_samples`` copies of ``action [B, H, A]`` with Gaussian action noise: ``[K, B, H, A]``.

    Noise ``N(0, noise_std^2)`` is added (a sequence: one std per sample, length
    ``num_samples``), the result clamped to [-1, 1] and multiplied
    by ``mask [B, A]`` (padded entries stay 0). With ``keep_data_action`` one more,
    noise-free copy is appended as sample ``K``.
    """
    eps = torch.randn(
        (num_samples, *action.shape), generator=generator, dtype=action.dtype, device=action.device
    )
    if not isinstance(noise_std, int | float):
        if len(noise_std) != num_samples:
            raise ValueError(f"need one noise std per sample ({num_samples}), got {len(noise_std)}")
        noise_std = torch.tensor(noise_std, dtype=action.dtype, device=action.device)
        noise_std = noise_std.view(num_samples, *([1] * action.dim()))
    noisy = (action + noise_std * eps).clamp_(-1.0, 1.0)
    if keep_data_action:
        noisy = torch.cat([noisy, action.unsqueeze(0)], dim=0)
    return noisy * mask[:, None, :]


def planner_actions(
    centers: torch.Tensor,
    mask: torch.Tensor,
    num_samples: int,
    std_range: tuple[float, float],
    generator: torch.Generator | None = None,
    agent_masks: torch.Tensor | None = None,
    single_agent_fraction: float = 0.0,
) -> torch.Tensor:
    """``num_samples`` candidate sequences like the ones MPPI scores: ``[K, B, H, A]``.

    Sample k is drawn around ``centers[k % C]`` (``centers [C, B, H, A]``) with a std drawn
    log-uniformly in ``std_range`` per sample and window (MPPI's std moves from its max to its
    min over the iterations). With ``agent_masks [B, N, A]`` (1 on the entries each agent
    controls) a share ``single_agent_fraction`` of the samples moves one real agent only, the
    others staying at the center. Clamped to [-1, 1], multiplied by ``mask [B, A]``.
    """
    num_centers, batch, horizon, dims = centers.shape
    like = dict(dtype=centers.dtype, device=centers.device)
    center = centers[torch.arange(num_samples, device=centers.device) % num_centers]
    low, high = math.log(std_range[0]), math.log(std_range[1])
    u = torch.rand((num_samples, batch, 1, 1), generator=generator, **like)
    noise = torch.randn((num_samples, batch, horizon, dims), generator=generator, **like)
    noise = noise * torch.exp(low + (high - low) * u)
    if agent_masks is not None and single_agent_fraction > 0:
        real = (agent_masks.sum(-1) > 0).to(centers.dtype)  # [B, N]
        pick = torch.multinomial(real, num_samples, replacement=True, generator=generator)  # [B, K]
        one = torch.gather(agent_masks, 1, pick[..., None].expand(-1, -1, dims))  # [B, K, A]
        single = torch.rand((num_samples, batch, 1), generator=generator, **like)
        moved = torch.where(single < single_agent_fraction, one.transpose(0, 1), 1.0)
        noise = noise * moved[:, :, None]
    return (center + noise).clamp(-1.0, 1.0) * mask[:, None, :]


@torch.no_grad()
def expert_policy_sequence(
    expert: Expert, obs0: torch.Tensor, task: torch.Tensor, horizon: int
) -> torch.Tensor:
    """The expert's policy-mean rollout from ``obs0 [B, obs_dim]``: ``[B, H, A]``."""
    z, steps = expert.encode(obs0, task), []
    for _ in range(horizon):
        steps.append(expert.pi_mean(z, task))
        z = expert.next(z, steps[-1], task)
    return torch.stack(steps, dim=1)


@torch.no_grad()
def student_policy_sequence(
    student: FactoredStudent, obs0: torch.Tensor, task: torch.Tensor, horizon: int
) -> torch.Tensor:
    """The student's policy-mean rollout from ``obs0 [B, obs_dim]``: ``[B, H, A]``."""
    cond = student.condition(task)
    s, steps = student.encode(obs0, task), []
    for _ in range(horizon):
        action = student.pi(s, cond).mean  # [B, N, G]
        steps.append(student.merge_actions(action, task))
        s = student.next(s, action, cond)
    return torch.stack(steps, dim=1)


class ExpertRollout(NamedTuple):
    """The expert along the noisy actions (computed without gradients)."""

    reward: torch.Tensor
    """``[H, K, B]`` predicted rewards."""
    value: torch.Tensor
    """``[H, K, B]`` mean over all Q members at ``(z_h, a_h)``."""
    pi_mean: torch.Tensor
    """``[H, K, B, A]`` deterministic policy actions at ``z_h`` (empty unless asked for)."""
    final_latent: torch.Tensor | None = None
    """``[K, B, L]`` the latent ``z_H`` after the last action."""
    model: Expert | None = None
    """The expert (frozen; call it under ``torch.no_grad``)."""
    task: torch.Tensor | None = None
    """``[B]`` task ids the expert was run with."""
    extra: Mapping[str, torch.Tensor] = NO_EXTRA
    """Further tensors a term needs (none by default)."""


class StudentRollout(NamedTuple):
    """The student along the same actions (with gradients)."""

    reward: torch.Tensor
    """``[H, K, B]`` global rewards (sums over the task's agents)."""
    value: torch.Tensor
    """``[H, num_q, K, B]`` global values of every member."""
    latents: torch.Tensor
    """``[H + 1, K, B, N, m]`` latents ``s_0 .. s_H``."""
    data_latents: torch.Tensor | None = None
    """``[H + 1, B, N, m]`` latents along the data actions (when a term asked for them)."""
    model: FactoredStudent | None = None
    """The student."""
    cond: StudentConditioning | None = None
    """Its conditioning on the batch's tasks."""
    extra: Mapping[str, torch.Tensor] = NO_EXTRA
    """Further tensors a term needs (none by default)."""


@torch.no_grad()
def expert_rollout(
    expert: Expert, obs0: torch.Tensor, actions: torch.Tensor, task: torch.Tensor, with_pi: bool
) -> ExpertRollout:
    """Roll ``expert`` from ``obs0 [B, obs_dim]`` under ``actions [K, B, H, A]``."""
    k, horizon = actions.shape[0], actions.shape[2]
    z = expert.encode(obs0, task)
    z = z.expand(k, *z.shape)
    rewards, values, pis = [], [], []
    for h in range(horizon):
        a = actions[:, :, h]
        rewards.append(expert.reward(z, a, task).squeeze(-1))
        values.append(expert.q_all(z, a, task).mean(dim=0).squeeze(-1))
        if with_pi:
            pis.append(expert.pi_mean(z, task))
        z = expert.next(z, a, task)
    pi = torch.stack(pis) if with_pi else actions.new_zeros(0)
    return ExpertRollout(torch.stack(rewards), torch.stack(values), pi, z, expert, task)


def agent_groups(student: FactoredStudent, task: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """``(n, rows)`` for every number ``n`` of real agents among the windows of ``task [B]``:
    the rows whose tasks have ``n`` agents (a task's real agents come first)."""
    count = student.agent_mask(task).gt(0).sum(dim=-1)  # [B]
    return [(int(n), (count == n).nonzero().squeeze(-1)) for n in torch.unique(count).tolist()]


def _rollout_agents(
    student: FactoredStudent,
    s: torch.Tensor,
    agent_actions: torch.Tensor,
    cond: StudentConditioning,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rewards ``[H, S, B]``, values ``[H, num_q, S, B]``, latents ``[H+1, S, B, n, m]`` from
    latents ``s [S, B, n, m]`` under ``agent_actions [S, B, H, n, G]``."""
    latents, rewards, values = [s], [], []
    for h in range(agent_actions.shape[2]):
        a = agent_actions[:, :, h]
        values.append(student.global_q(s, a, cond))
        s, r = student.step(s, a, cond)
        rewards.append(r.sum(dim=-1))
        latents.append(s)
    return torch.stack(rewards), torch.stack(values), torch.stack(latents)


def student_rollout(
    student: FactoredStudent,
    obs0: torch.Tensor,
    actions: torch.Tensor,
    task: torch.Tensor,
    cond: StudentConditioning,
    num_noise_samples: int | None = None,
    group_agents: bool = False,
) -> StudentRollout:
    """Roll ``student`` from ``obs0 [B, obs_dim]`` under ``actions [S, B, H, A]``.

    All ``S`` samples run in one batched rollout. With ``num_noise_samples=K < S`` the
    first ``K`` are the noise samples and sample ``K`` the data actions
    (``noisy_actions(..., keep_data_action=True)``), returned as ``data_latents``.

    With ``group_agents`` the windows are grouped by their tasks' number of real agents and
    each group runs only those agents (a 1-joint task in a batch with a 6-joint one costs one agent, not six):
    the per-agent networks then do no work on padded agents. Padded agents' latents are 0
    in the result (every term masks them).
    """
    k = actions.shape[0] if num_noise_samples is None else num_noise_samples
    samples, num_agents = actions.shape[0], student.num_agents
    agent_actions = student.split_actions(actions, task[:, None])  # [S, B, H, N, G]
    s0 = student.encode(obs0, task)  # [B, N, m]
    groups = agent_groups(student, task) if group_agents else [(num_agents, None)]
    if len(groups) == 1 and groups[0][0] == num_agents:
        reward, value, latent = _rollout_agents(
            student, s0.expand(samples, *s0.shape), agent_actions, cond
        )
    else:
        parts, order = [], []
        for n, rows in groups:
            c = student.condition(task[rows]).narrow_agents(n)
            s = s0[rows, :n]
            r, v, lat = _rollout_agents(
                student, s.expand(samples, *s.shape), agent_actions[:, rows, :, :n], c
            )
            parts.append((r, v, torch.nn.functional.pad(lat, (0, 0, 0, num_agents - n))))
            order.append(rows)
        back = torch.argsort(torch.cat(order))  # batch position -> its place in the groups
        reward = torch.cat([p[0] for p in parts], dim=-1)[..., back]
        value = torch.cat([p[1] for p in parts], dim=-1)[..., back]
        latent = torch.cat([p[2] for p in parts], dim=2)[:, :, back]
    data = latent[:, k] if samples > k else None
    return StudentRollout(reward[:, :k], value[:, :, :k], latent[:, :k], data, student, cond)

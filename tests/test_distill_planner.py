"""Planner-matched distillation: planner-like candidates and the H-step return ranking."""

from __future__ import annotations

import pytest
import torch
from test_distill import PENDULUM, REACHER, WALKER, make_batch, make_student

from mt_factored.constants import ACTION, OBS, TASK
from mt_factored.distill import (
    DistillConfig,
    distill_losses,
    planner_actions,
    ranking_kl,
)
from mt_factored.distill.losses import planner_candidates
from mt_factored.errors import InputError


def test_planner_actions_cycle_centers_stay_masked_and_move_one_agent() -> None:
    student = make_student()
    task = torch.tensor([WALKER, REACHER])
    mask = student.merge_actions(student.agent_action_mask(task), task)  # [B, A]
    centers = torch.stack([torch.full((2, 3, 6), -0.5), torch.full((2, 3, 6), 0.5)]) * mask[:, None]
    agents = student.agent_env_masks(task)
    assert agents.sum(-1)[0].tolist() == [1.0] * 6  # walker: one joint per agent
    assert agents.sum(-1)[1].tolist() == [1.0, 1.0, 0, 0, 0, 0]
    gen = torch.Generator().manual_seed(0)
    out = planner_actions(centers, mask, 400, (0.05, 2.0), gen, agents, single_agent_fraction=1.0)
    assert out.shape == (400, 2, 3, 6)
    assert out.abs().max() <= 1.0
    assert (out * (1 - mask[:, None]) == 0).all()  # padded entries stay 0
    moved = (out != centers[torch.arange(400) % 2]).any(dim=2)  # [K, B, A] entries that moved
    assert (moved.sum(-1) <= 1).all()  # one agent (= one joint here) per sequence
    assert moved[:, 0].any(0).all()  # ... and every walker joint gets its turn
    # without the single-agent share every real entry moves
    joint = planner_actions(centers, mask, 50, (0.5, 0.5), gen)
    assert (joint != centers[torch.arange(50) % 2]).any(dim=2)[:, 0].all()


def test_planner_candidates_are_seeded(expert) -> None:
    student = make_student()
    batch = make_batch([WALKER, PENDULUM])
    task = batch[TASK]
    mask = expert.action_mask(task)
    cfg = DistillConfig(num_noise_samples=8, noise="planner")
    draw = lambda: planner_candidates(  # noqa: E731
        student,
        expert,
        batch[OBS][:, 0],
        batch[ACTION],
        task,
        mask,
        cfg,
        torch.Generator().manual_seed(4),
    )
    assert torch.equal(draw(), draw())


def test_return_kl_matches_a_hand_computation(expert) -> None:
    student = make_student()
    batch = make_batch([WALKER, REACHER, PENDULUM])
    cfg = DistillConfig(num_noise_samples=6, noise="planner", terms={"return_kl": 1.0})
    out = distill_losses(student, expert, batch, cfg, torch.Generator().manual_seed(3))
    assert set(out) == {"loss/return_kl", "loss", "metric/reward_top1", "metric/value_top1"}

    obs0, task = batch[OBS][:, 0], batch[TASK]
    actions = planner_candidates(
        student,
        expert,
        obs0,
        batch[ACTION],
        task,
        expert.action_mask(task),
        cfg,
        torch.Generator().manual_seed(3),
    )  # [K, B, H, A]
    k, b, horizon, _ = actions.shape
    expert_j, student_j = torch.zeros(k, b), torch.zeros(k, b)
    for i in range(k):
        for w in range(b):
            t = task[w : w + 1]
            gamma = float(expert.discounts[t])
            z = expert.encode(obs0[w : w + 1], t)
            s = student.encode(obs0[w : w + 1], t)
            c = student.condition(t)
            for h in range(horizon):
                a = actions[i, w : w + 1, h]
                expert_j[i, w] += gamma**h * expert.reward(z, a, t).squeeze()
                z = expert.next(z, a, t)
                s, r = student.step(s, student.split_actions(a, t), c)
                student_j[i, w] += gamma**h * r.sum()
            expert_j[i, w] += gamma**horizon * expert.q_all(z, expert.pi_mean(z, t), t).mean()
            q = student.q(s, student.pi(s, c).mean, c).mean(0)  # [1, N]
            student_j[i, w] += gamma**horizon * (q * c.agent_mask).sum()
    scale = expert_j.std(dim=0, keepdim=True).clamp_min(cfg.return_std_floor)
    by_hand = ranking_kl(student_j, expert_j, 0, scale=scale).mean()
    torch.testing.assert_close(out["loss/return_kl"], by_hand, rtol=1e-4, atol=1e-6)


def test_return_kl_trains_the_student(expert) -> None:
    student = make_student()
    batch = make_batch([WALKER, REACHER, PENDULUM] * 4)
    cfg = DistillConfig(num_noise_samples=8, noise="planner", terms={"return_kl": 1.0})
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = distill_losses(student, expert, batch, cfg, torch.Generator().manual_seed(0))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_rollouts_of_planner_candidates_share_the_data_path(expert) -> None:
    """With a data-action term the data actions ride along as sample K."""
    student = make_student()
    batch = make_batch([WALKER])
    cfg = DistillConfig(
        num_noise_samples=4, noise="planner", terms={"return_kl": 1.0, "consistency": 0.1}
    )
    out = distill_losses(student, expert, batch, cfg, torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"]) and "loss/consistency" in out


@pytest.mark.parametrize(
    "bad",
    [
        {"noise": "uniform"},
        {"planner_centers": ["nowhere"]},
        {"planner_centers": []},
        {"planner_std": [0.0, 1.0]},
        {"planner_std": [2.0, 1.0]},
        {"single_agent_fraction": 1.5},
        {"return_std_floor": 0.0},
    ],
)
def test_bad_planner_settings_are_refused(bad) -> None:
    with pytest.raises(InputError):
        DistillConfig(**bad)


def test_grouped_rollout_equals_running_every_agent() -> None:
    """Rows grouped by their number of agents give the rollout of all N agents (padded
    agents' latents aside, which every term masks), values and gradients alike."""
    from mt_factored.distill.rollout import _rollout_agents, agent_groups, student_rollout

    student = make_student()
    batch = make_batch([WALKER, REACHER, PENDULUM, WALKER, PENDULUM])
    obs0, task = batch[OBS][:, 0], batch[TASK]
    assert [n for n, _ in agent_groups(student, task)] == [1, 2, 6]
    actions = (torch.rand(4, 5, 3, 6) * 2 - 1) * student.merge_actions(
        student.agent_action_mask(task), task
    )[:, None]
    cond = student.condition(task)
    grouped = student_rollout(
        student, obs0, actions, task, cond, num_noise_samples=3, group_agents=True
    )
    s0 = student.encode(obs0, task)
    reward, value, latent = _rollout_agents(
        student, s0.expand(4, *s0.shape), student.split_actions(actions, task[:, None]), cond
    )
    torch.testing.assert_close(grouped.reward, reward[:, :3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grouped.value, value[:, :, :3], rtol=1e-5, atol=1e-6)
    real = cond.agent_mask[None, None, :, :, None]  # [1, 1, B, N, 1]
    torch.testing.assert_close(grouped.latents, (latent * real)[:, :3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grouped.data_latents, (latent * real)[:, 3], rtol=1e-5, atol=1e-6)
    assert (grouped.latents * ~real == 0).all()
    g1 = torch.autograd.grad(
        grouped.reward.sum() + grouped.value.sum(), student.step_net.parameters()
    )
    g2 = torch.autograd.grad(
        reward[:, :3].sum() + value[:, :, :3].sum(), student.step_net.parameters()
    )
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

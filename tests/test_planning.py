"""MPPI with an agent axis, and the centralized expert adapter.

Toy world models with closed-form returns stand in for learned ones, so every
optimum is known exactly.
"""

from __future__ import annotations

import dataclasses
import math
import types

import pytest
import torch

from mt_factored.planning import (
    ExpertPlanningModel,
    MPPIConfig,
    MPPIPlanner,
    PlanningModel,
)

LONG = torch.long


class QuadraticWorld:
    """Per-agent return ``-scale * sum_h sum_g (a[h, g] - target[h, g])^2``.

    ``targets [tasks, N, H, G]`` (or ``[tasks, N, G]``, the same target at every
    step); obs are ignored, the task id picks the target.
    """

    def __init__(self, targets: torch.Tensor, scale: float = 1.0, mask: torch.Tensor | None = None):
        if targets.dim() == 3:
            targets = targets.unsqueeze(2)
        self.targets = targets
        self.num_agents, self.agent_action_dim = targets.shape[1], targets.shape[3]
        self.scale = scale
        tasks = targets.shape[0]
        self.mask = (
            mask if mask is not None else torch.ones(tasks, self.num_agents, self.agent_action_dim)
        )
        self.calls: list[torch.Tensor] = []

    def initial_state(self, obs, task):
        return self.targets[task]  # [E, N, 1 or H, G]

    def action_mask(self, task):
        return self.mask[task]

    def policy_actions(self, state, task, num_trajs, horizon):
        e, n = state.shape[:2]
        return torch.full((e, n, num_trajs, horizon, self.agent_action_dim), 0.9)

    def returns(self, state, actions, task):
        self.calls.append(actions.clone())
        return -self.scale * (actions - state.unsqueeze(2)).square().sum((-1, -2))

    def to_env_action(self, agent_action, task):
        return agent_action.flatten(1)


def _plan(planner, num_envs=1, task=None, **kwargs):
    task = torch.arange(num_envs) if task is None else task
    return planner.plan(torch.zeros(len(task), 3), task, **kwargs)


@pytest.mark.parametrize(
    "agents,dims", [(1, 4), (6, 1), (2, 3)], ids=["central-1x4", "decentral-6x1", "2x3"]
)
def test_quadratic_optimum(agents, dims):
    targets = (
        torch.rand(1, agents, dims, generator=torch.Generator().manual_seed(agents)) * 1.6 - 0.8
    )
    planner = MPPIPlanner(QuadraticWorld(targets), generator=0)
    action = _plan(planner, t0=True)
    assert action.shape == (1, agents * dims)
    torch.testing.assert_close(action, targets.flatten(1), atol=0.05, rtol=0)


def test_envs_do_not_influence_each_other():
    targets = torch.tensor([[[-0.7, 0.2]], [[0.0, 0.9]], [[0.5, -0.4]]])  # 3 envs, 1 agent x 2
    planner = MPPIPlanner(QuadraticWorld(targets), generator=1)
    action = _plan(planner, num_envs=3, t0=True)
    torch.testing.assert_close(action, targets.flatten(1), atol=0.05, rtol=0)
    # The same envs in another order plan the same optima.
    order = torch.tensor([2, 0, 1])
    action = _plan(planner, task=order, t0=True)
    torch.testing.assert_close(action, targets[order].flatten(1), atol=0.05, rtol=0)


class TwoStepWorld:
    """Per agent: ``s1 = s0 + a0``; return ``f(s1) - (a1 - 0.5 * s1)^2``.

    ``f(s) = 0.5 * s - log cosh(3 (s - c))``: smooth, unimodal, not quadratic, with
    an interior optimum that differs per agent.
    """

    num_agents, agent_action_dim = 3, 1

    def __init__(self):
        self.s0 = torch.tensor([[-0.6, 0.1, 0.5]])  # [tasks, N]
        self.c = torch.tensor([-0.2, 0.3, 0.1])  # [N]

    def initial_state(self, obs, task):
        return self.s0[task]

    def action_mask(self, task):
        return torch.ones(len(task), self.num_agents, 1)

    def policy_actions(self, state, task, num_trajs, horizon):
        raise AssertionError("not used: num_pi_trajs=0")

    def returns(self, state, actions, task):
        a0, a1 = actions[..., 0, 0], actions[..., 1, 0]  # [E, N, S]
        s1 = state.unsqueeze(-1) + a0
        f = 0.5 * s1 - torch.cosh(3.0 * (s1 - self.c.view(1, -1, 1))).log()
        return f - (a1 - 0.5 * s1).square()

    def to_env_action(self, agent_action, task):
        return agent_action.flatten(1)


def test_agrees_with_brute_force():
    world = TwoStepWorld()
    grid = torch.linspace(-1, 1, 201)
    a0, a1 = torch.meshgrid(grid, grid, indexing="ij")
    every = torch.stack([a0.flatten(), a1.flatten()], -1)[:, :, None]  # [S, 2, 1]
    every = every.expand(1, 3, *every.shape)  # [1, N, S, H=2, 1]
    best = world.returns(world.s0, every, torch.zeros(1, dtype=LONG)).argmax(-1)  # [1, N]
    expected = every[0, 0, best[0], 0, 0]  # best first action per agent

    cfg = MPPIConfig(horizon=2, num_pi_trajs=0)
    action = _plan(MPPIPlanner(world, cfg, generator=3), t0=True)
    torch.testing.assert_close(action[0], expected, atol=0.03, rtol=0)


def test_masks_zero_padded_entries():
    targets = torch.full((2, 2, 3), 0.6)  # 2 tasks, 2 agents x 3 dims
    mask = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])
    world = QuadraticWorld(targets, mask=mask)
    planner = MPPIPlanner(world, generator=0)
    for eval_mode in (True, False):
        action = _plan(planner, num_envs=2, t0=True, eval_mode=eval_mode)
        flat = mask.flatten(1).bool()
        assert torch.all(action[~flat] == 0.0)
        assert torch.all((action[flat] - 0.6).abs() < 0.3)
    # Every sample the model saw, policy trajectories included, was masked too.
    seen = torch.stack(world.calls)  # [calls, E, N, S, H, G]
    assert torch.all(seen * (1 - mask)[None, :, :, None, None] == 0)
    stats = planner.last_stats
    assert torch.all(stats.mean * (1 - mask)[:, :, None] == 0)
    assert torch.all(stats.std * (1 - mask)[:, :, None] == 0)


def _per_step_world(num_envs=2):
    """Different target at each horizon step, so the shift of the warm start is visible."""
    steps = torch.tensor([0.5, -0.3, 0.8]).view(1, 1, 3, 1)
    signs = torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)  # agent 1 mirrors agent 0
    return QuadraticWorld((steps * signs).repeat(num_envs, 1, 1, 1))


def _first_samples(world, planner, **kwargs):
    """Plan with a vanishing std, so the first iteration samples its initial mean."""
    tiny = 1e-6
    planner.config = dataclasses.replace(planner.config, min_std=tiny, max_std=tiny)
    world.calls.clear()
    _plan(planner, num_envs=2, **kwargs)
    return world.calls[0][:, :, planner.config.num_pi_trajs :].mean(2)  # [E, N, H, G]


def test_warm_start_shifts_previous_mean():
    world = _per_step_world()
    planner = MPPIPlanner(world, generator=0)
    _plan(planner, num_envs=2, t0=True)
    previous = planner.last_stats.mean.clone()
    torch.testing.assert_close(previous, world.targets, atol=0.1, rtol=0)

    start = _first_samples(world, planner, t0=False)
    torch.testing.assert_close(start[:, :, :-1], previous[:, :, 1:], atol=1e-4, rtol=0)
    assert torch.all(start[:, :, -1].abs() < 1e-4)


def test_t0_per_env_and_reset():
    world = _per_step_world()
    planner = MPPIPlanner(world, generator=0)
    _plan(planner, num_envs=2, t0=True)
    previous = planner.last_stats.mean.clone()
    default_cfg = planner.config

    start = _first_samples(world, planner, t0=torch.tensor([True, False]))
    assert torch.all(start[0].abs() < 1e-4)
    torch.testing.assert_close(start[1, :, :-1], previous[1, :, 1:], atol=1e-4, rtol=0)

    planner.config = default_cfg
    _plan(planner, num_envs=2, t0=True)
    planner.reset(envs=[1])
    start = _first_samples(world, planner, t0=False)
    assert start[0, :, :-1].abs().min() > 0.1  # env 0 kept its warm start
    assert torch.all(start[1].abs() < 1e-4)

    planner.reset()
    start = _first_samples(world, planner, t0=False)
    assert torch.all(start.abs() < 1e-4)


def test_warm_start_needs_same_envs():
    planner = MPPIPlanner(
        QuadraticWorld(torch.zeros(3, 1, 1)), MPPIConfig(iterations=1), generator=0
    )
    _plan(planner, num_envs=2)
    with pytest.raises(ValueError, match="reset"):
        _plan(planner, num_envs=3)
    _plan(planner, num_envs=3, t0=True)  # a fresh start needs no memory


def test_determinism_for_a_seed():
    targets = torch.tensor([[[0.3, -0.2, 0.1]]])
    for eval_mode in (True, False):
        runs = []
        for seed in (7, 7, 8):
            planner = MPPIPlanner(QuadraticWorld(targets), generator=seed)
            first = _plan(planner, t0=True, eval_mode=eval_mode)
            runs.append(torch.cat([first, _plan(planner, eval_mode=eval_mode)]))
        assert torch.equal(runs[0], runs[1])
        assert not torch.equal(runs[0], runs[2])

    # generator=None draws its seed from torch's global RNG.
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        outs.append(_plan(MPPIPlanner(QuadraticWorld(targets)), t0=True, eval_mode=False))
    assert torch.equal(outs[0], outs[1])


def test_eval_is_the_mean_and_exploration_adds_noise():
    target = 0.4
    planner = MPPIPlanner(QuadraticWorld(torch.full((1, 1, 2), target)), generator=0)
    action = _plan(planner, t0=True, eval_mode=True)
    torch.testing.assert_close(action, planner.last_stats.mean[:, 0, 0], rtol=0, atol=0)

    explore = torch.stack([_plan(planner, t0=True, eval_mode=False) for _ in range(30)])
    final_std = planner.last_stats.std[:, 0, 0]  # min_std here
    evals = torch.stack([_plan(planner, t0=True, eval_mode=True) for _ in range(30)])
    assert explore.abs().max() <= 1.0
    # Exploration spreads by at least the final std around the optimum; the mean
    # moves far less between plans.
    assert torch.all(explore.std(0) > 0.8 * final_std)
    assert explore.std(0).min() > 5 * evals.std(0).max()
    assert (explore.mean(0) - target).abs().max() < 0.05


class AnchoredQuadraticWorld(QuadraticWorld):
    """A :class:`QuadraticWorld` with a policy prior whose deterministic action is ``prior``."""

    def __init__(self, targets, prior: torch.Tensor, scale: float = 1.0):
        super().__init__(targets, scale)
        self.prior = prior  # [tasks, N, G]

    def policy_mean(self, state, task):
        return self.prior[task]


@pytest.mark.parametrize("weight", [0.0, 0.5, 3.0, 1e4])
def test_prior_weight_plans_the_anchored_optimum(weight):
    # Per entry the first action maximises -c (a - t)^2 - w (a - mu)^2: a* = (c t + w mu) / (c + w).
    target = torch.tensor([[[0.6], [-0.4]]])  # 1 task, 2 agents x 1 dim
    prior = torch.tensor([[[-0.5], [0.3]]])
    scale = 2.0
    world = AnchoredQuadraticWorld(target, prior, scale=scale)
    config = MPPIConfig(prior_weight=weight, num_samples=1024, num_elites=64, iterations=8)
    action = _plan(MPPIPlanner(world, config, generator=0), t0=True)
    expected = (scale * target + weight * prior) / (scale + weight)
    torch.testing.assert_close(action, expected.flatten(1), atol=0.03, rtol=0)


def test_prior_weight_needs_a_policy_prior():
    with pytest.raises(ValueError, match="prior_weight"):
        MPPIConfig(prior_weight=-1.0)
    with pytest.raises(ValueError, match="prior_weight"):
        MPPIConfig(prior_weight=float("nan"))
    with pytest.raises(TypeError, match="policy_mean"):
        MPPIPlanner(QuadraticWorld(torch.zeros(1, 1, 1)), MPPIConfig(prior_weight=1.0))


def test_invalid_config_and_inputs():
    with pytest.raises(ValueError, match="num_pi_trajs"):
        MPPIConfig(num_samples=16, num_pi_trajs=16)
    with pytest.raises(ValueError, match="num_elites"):
        MPPIConfig(num_elites=0)
    with pytest.raises(ValueError, match="num_elites"):
        MPPIConfig(num_samples=32, num_elites=33, num_pi_trajs=0)
    with pytest.raises(ValueError, match="min_std"):
        MPPIConfig(min_std=3.0, max_std=2.0)
    with pytest.raises(ValueError, match="iterations"):
        MPPIConfig(iterations=0)

    world = QuadraticWorld(torch.zeros(2, 1, 2))
    with pytest.raises(TypeError, match="PlanningModel"):
        MPPIPlanner(object())
    with pytest.raises(TypeError, match="MPPIConfig"):
        MPPIPlanner(world, {"iterations": 2})
    with pytest.raises(TypeError, match="generator"):
        MPPIPlanner(world, generator="seed")
    planner = MPPIPlanner(world, generator=0)
    with pytest.raises(ValueError, match="obs"):
        planner.plan(torch.zeros(3), torch.zeros(1, dtype=LONG))
    with pytest.raises(ValueError, match="task"):
        planner.plan(torch.zeros(2, 3), torch.zeros(3, dtype=LONG))
    with pytest.raises(ValueError, match="t0"):
        _plan(planner, num_envs=2, t0=torch.tensor([True]))

    class WrongReturns(QuadraticWorld):
        def returns(self, state, actions, task):
            return super().returns(state, actions, task)[:, :, :-1]

    with pytest.raises(ValueError, match="returns"):
        _plan(MPPIPlanner(WrongReturns(torch.zeros(1, 1, 1))), t0=True)


# --- the expert adapter -----------------------------------------------------------------


class StandInExpert:
    """Closed-form expert with the planning methods of ``TDMPC2Expert``.

    Latent = obs; dynamics ``z' = z + 0.1 * pad(a)``; reward ``-|a - z[:A]|^2``
    (masked); value ``q_scale * z.sum()``; policy = clamped noise.
    """

    def __init__(self, action_dims=(3, 2), action_dim=3, q_scale=0.0):
        self.action_dim = action_dim
        self.masks = torch.zeros(len(action_dims), action_dim)
        for t, d in enumerate(action_dims):
            self.masks[t, :d] = 1.0
        self.discounts = torch.tensor([0.9, 0.5])[: len(action_dims)]
        self.q_scale = q_scale

    def encode(self, obs, task):
        return obs.clone()

    def next(self, z, action, task):
        out = z.clone()
        out[:, : self.action_dim] += 0.1 * action
        return out

    def reward(self, z, action, task):
        return (
            -((action - z[:, : self.action_dim]) * self.action_mask(task))
            .square()
            .sum(1, keepdim=True)
        )

    def q_avg(self, z, action, task, generator=None):
        return self.q_scale * z.sum(1, keepdim=True)

    def pi_sample(self, z, task, generator=None):
        noise = torch.randn(z.shape[0], self.action_dim, generator=generator)
        return noise.clamp(-1, 1) * self.action_mask(task)

    def action_mask(self, task):
        return self.masks[task]


def test_expert_adapter_returns_match_by_hand():
    expert = StandInExpert(q_scale=0.7)
    model = ExpertPlanningModel(expert, generator=0)
    assert isinstance(model, PlanningModel)
    assert (model.num_agents, model.agent_action_dim) == (1, 3)
    obs, task = torch.randn(2, 5), torch.tensor([0, 1])
    state = model.initial_state(obs, task)
    actions = torch.rand(2, 1, 4, 3, 3) * 2 - 1
    got = model.returns(state, actions, task)
    assert got.shape == (2, 1, 4)
    for e in range(2):
        for s in range(4):
            z, total, disc = obs[e : e + 1], 0.0, expert.discounts[task[e]].item()
            for h in range(3):
                a = actions[e, 0, s, h].unsqueeze(0)
                total += disc**h * expert.reward(z, a, task[e : e + 1]).item()
                z = expert.next(z, a, task[e : e + 1])
            total += disc**3 * expert.q_avg(z, None, None).item()
            assert math.isclose(got[e, 0, s].item(), total, rel_tol=1e-5, abs_tol=1e-5)

    pi = model.policy_actions(state, task, num_trajs=5, horizon=3)
    assert pi.shape == (2, 1, 5, 3, 3)
    assert torch.all(pi[1, :, :, :, 2] == 0)  # task 1 has 2 action dims


def test_expert_adapter_plans_the_optimum():
    expert = StandInExpert()
    obs = torch.tensor([[0.5, -0.4, 0.3, 0.0], [-0.2, 0.7, 0.9, 0.0]])
    task = torch.tensor([0, 1])
    for eval_mode in (True, False):
        planner = MPPIPlanner(ExpertPlanningModel(expert, generator=1), generator=1)
        action = planner.plan(obs, task, t0=True, eval_mode=eval_mode)
        assert action.shape == (2, 3)
        assert action[1, 2] == 0.0  # padded
        tol = 0.05 if eval_mode else 0.3
        torch.testing.assert_close(action[0], obs[0, :3], atol=tol, rtol=0)
        torch.testing.assert_close(action[1, :2], obs[1, :2], atol=tol, rtol=0)


def test_expert_adapter_rejects_incomplete_expert():
    expert = StandInExpert()
    methods = {name: getattr(expert, name) for name in ("encode", "next", "reward", "pi_sample")}
    incomplete = types.SimpleNamespace(**methods, action_dim=3)
    with pytest.raises(TypeError, match="q_avg, action_mask, discounts"):
        ExpertPlanningModel(incomplete)


# --- a real (tiny, random) TD-MPC2 expert --------------------------------------------


@pytest.fixture(scope="module")
def tiny_expert():
    from tiny import tiny_expert_config

    from mt_factored.expert import TDMPC2Expert

    torch.manual_seed(0)
    return TDMPC2Expert(tiny_expert_config()).eval()


def test_expert_adapter_matches_the_expert_rollout(tiny_expert):
    expert, seed = tiny_expert, 5
    model = ExpertPlanningModel(expert, generator=seed)
    obs, task = torch.randn(2, expert.obs_dim), torch.tensor([3, 17])
    mask = model.action_mask(task)[:, :, None, None]
    actions = (torch.rand(2, 1, 8, 3, expert.action_dim) * 2 - 1) * mask
    with torch.inference_mode():
        got = model.returns(model.initial_state(obs, task), actions, task)

        gen = torch.Generator().manual_seed(seed)
        z, t = expert.encode(obs, task).repeat_interleave(8, 0), task.repeat_interleave(8)
        disc = expert.discounts[t]
        expected, weight = 0.0, 1.0
        for h in range(3):
            a = actions[:, 0, :, h].reshape(16, -1)
            expected = expected + weight * expert.reward(z, a, t)[:, 0]
            z = expert.next(z, a, t)
            weight = weight * disc
        pi = expert.pi_sample(z, t, generator=gen)
        expected = expected + weight * expert.q_avg(z, pi, t, generator=gen)[:, 0]
    torch.testing.assert_close(got, expected.view(2, 1, 8), rtol=1e-5, atol=1e-6)


def test_plans_with_a_tiny_tdmpc2_expert(tiny_expert):
    expert = tiny_expert
    obs, task = torch.randn(3, expert.obs_dim), torch.tensor([0, 12, 29])
    cfg = MPPIConfig(num_samples=64, num_elites=8, num_pi_trajs=4)
    runs = []
    for _ in range(2):
        planner = MPPIPlanner(ExpertPlanningModel(expert, generator=2), cfg, generator=2)
        first = planner.plan(obs, task, t0=True, eval_mode=False)
        runs.append(torch.stack([first, planner.plan(obs, task, t0=False, eval_mode=True)]))
    assert torch.equal(runs[0], runs[1])
    actions = runs[0]
    assert actions.shape == (2, 3, expert.action_dim)
    assert actions.abs().max() <= 1.0
    mask = expert.action_mask(task).bool()
    assert torch.all(actions[:, ~mask] == 0.0)
    # Callers may update the action in place outside inference mode.
    assert not torch.is_inference(actions)


def test_expert_plan_does_the_reference_work():
    """Matmul FLOPs of one plan: encoder once, policy trajectories once, and per iteration
    and sample H dynamics + reward steps, one policy step and two of the five Q members."""
    from tiny import tiny_expert_config
    from torch.utils.flop_counter import FlopCounterMode

    from mt_factored.expert import TDMPC2Expert

    c = tiny_expert_config(num_q=5)
    expert = TDMPC2Expert(c).eval()
    cfg = MPPIConfig(iterations=2, num_samples=32, num_elites=4, num_pi_trajs=3, horizon=3)
    planner = MPPIPlanner(ExpertPlanningModel(expert, generator=0), cfg, generator=0)
    counter = FlopCounterMode(display=False)
    with counter:
        planner.plan(torch.zeros(1, c.obs_dim), torch.tensor([4]))

    def mlp_macs(dims):
        return sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=False))

    z_a_t = c.latent_dim + c.action_dim + c.task_dim
    encoder = mlp_macs([c.obs_dim + c.task_dim, c.enc_dim, c.latent_dim])
    dynamics = mlp_macs([z_a_t, c.mlp_dim, c.mlp_dim, c.latent_dim])
    reward = q = mlp_macs([z_a_t, c.mlp_dim, c.mlp_dim, c.num_bins])
    pi = mlp_macs([c.latent_dim + c.task_dim, c.mlp_dim, c.mlp_dim, 2 * c.action_dim])
    h = cfg.horizon
    policy_trajs = cfg.num_pi_trajs * (h * pi + (h - 1) * dynamics)
    per_sample = h * (dynamics + reward) + pi + 2 * q
    elite_averages = 2 * cfg.num_elites * h * c.action_dim  # weighted mean and variance
    per_iteration = cfg.num_samples * per_sample + elite_averages
    expected = 2 * (encoder + policy_trajs + cfg.iterations * per_iteration)
    assert counter.get_total_flops() == expected

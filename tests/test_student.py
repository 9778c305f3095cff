"""The factored student: config, agent layout, per-agent independence, masking, planning adapter."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from mt_factored.nn import SimNorm, renormed_embedding, simnorm
from mt_factored.planning import MPPIConfig, MPPIPlanner
from mt_factored.planning.student_adapter import StudentPlanningModel
from mt_factored.student import FactoredStudent, StudentConfig
from mt_factored.student.conditioned import ConditionedMLP

TINY = dict(latent_dim=16, mlp_dim=32, enc_dim=32, task_dim=8, agent_dim=8)
WALKER, PENDULUM, REACHER = 1, 7, 4  # mt30 ids: 6, 1 and 2 joints
WALKER_PAIRS = ((0, 1), (2, 3), (4, 5))


def tiny_student(seed: int = 0, tasks="mt30", **overrides) -> FactoredStudent:
    torch.manual_seed(seed)
    student = FactoredStudent(StudentConfig.for_task_set(tasks, **{**TINY, **overrides}))
    with torch.no_grad():  # reward and value heads start at 0: make them informative
        for head in (student.step_net, student.q_head):
            head.out.weight.normal_(std=0.3)
    return student.eval()


def inputs(student: FactoredStudent, task: list[int], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    task_t = torch.tensor(task)
    obs = torch.randn(len(task), student.config.obs_dim, generator=gen)
    action = torch.rand(len(task), student.config.action_dim, generator=gen) * 2 - 1
    action = student.split_actions(action, task_t)
    return obs, task_t, action


# ----------------------------------------------------------------------------- config
def test_config_defaults_and_json_round_trip() -> None:
    config = StudentConfig.for_task_set("mt30", partitions={"walker-walk": WALKER_PAIRS})
    assert config.partitions[0] == tuple((j,) for j in range(6))
    assert config.partitions[WALKER] == WALKER_PAIRS
    assert config.partitions[PENDULUM] == ((0,),)
    assert (config.num_agents, config.agent_action_dim) == (6, 2)
    text = json.dumps(dataclasses.asdict(config))
    assert StudentConfig.from_dict(json.loads(text)) == config


def test_config_for_task_names_and_errors() -> None:
    config = StudentConfig.for_task_set(["pendulum-swingup", "reacher-easy"])
    assert config.task_names == ("pendulum-swingup", "reacher-easy")
    assert (config.num_agents, config.agent_action_dim, config.obs_dim) == (2, 1, 24)
    base = dict(task_names=("a",), action_dims=(2,), discounts=(0.99,))
    with pytest.raises(ValueError, match="exactly once"):
        StudentConfig(**base, partitions=(((0,), (0,)),))
    with pytest.raises(ValueError, match="exactly once"):
        StudentConfig(**base, partitions=(((0,),),))
    with pytest.raises(ValueError, match="multiple of simnorm_dim"):
        StudentConfig(**base, latent_dim=12)
    with pytest.raises(ValueError, match="discounts"):
        StudentConfig(task_names=("a",), action_dims=(2,), discounts=(1.5,))
    with pytest.raises(TypeError, match="unknown fields"):
        StudentConfig.from_dict({**base, "latent": 3})
    with pytest.raises(ValueError, match="not in the task set"):
        StudentConfig.for_task_set("mt30", partitions={"walker-flip": ((0,),)})


# ----------------------------------------------------------------------------- layers
def test_conditioning_folded_into_bias_equals_concatenated_input() -> None:
    torch.manual_seed(0)
    net = ConditionedMLP(5, 3, 16, 2, 4, members=2)
    x, c = torch.randn(7, 2, 5), torch.randn(2, 3)  # 7 samples x 2 items
    out = net(x, net.condition(c))
    # The same network written as Linear over cat([x, c]) for member 1.
    full = torch.cat([x, c.expand(7, -1, -1)], dim=-1)
    h = full @ torch.cat([net.first.weight[1], net.cond_weight[1]], dim=1).T + net.first.bias[1]
    h = net.act(nn.functional.layer_norm(h, (16,), net.first.ln_weight[1], net.first.ln_bias[1]))
    layer = net.hidden[0]
    h = net.act(
        nn.functional.layer_norm(
            h @ layer.weight[1].T + layer.bias[1], (16,), layer.ln_weight[1], layer.ln_bias[1]
        )
    )
    ref = h @ net.out.weight[1].T + net.out.bias[1]
    assert out.shape == (2, 7, 2, 4)
    torch.testing.assert_close(out[1], ref)


def test_simnorm_and_renormed_embedding_match_reference() -> None:
    x = torch.randn(5, 3, 32) * 4
    reference = x.unflatten(-1, (-1, 8)).softmax(dim=-1).flatten(-2)
    torch.testing.assert_close(simnorm(x, 8), reference)
    torch.testing.assert_close(SimNorm(8)(x), reference)
    # A group far below the row maximum stays finite (uniform) instead of 0/0.
    far = torch.cat([torch.zeros(8), torch.full((8,), -500.0)])
    assert torch.isfinite(simnorm(far, 8)).all()
    emb = nn.Embedding(4, 6, max_norm=1.0)
    with torch.no_grad():
        emb.weight.mul_(torch.tensor([0.1, 1.0, 5.0, 20.0])[:, None])
    weight = emb.weight.detach().clone()
    before = weight.clone()
    ids = torch.tensor([3, 0, 2, 2])
    out = renormed_embedding(weight, ids, 1.0)
    assert torch.equal(weight, before), "the stored rows must not be renormalised in place"
    torch.testing.assert_close(out, emb(ids))
    assert out.norm(dim=-1).max() <= 1.0 + 1e-6


# ----------------------------------------------------------------------------- layout
def test_grouped_partition_split_merge_round_trip() -> None:
    config = StudentConfig.for_task_set("mt30", partitions={"walker-walk": WALKER_PAIRS}, **TINY)
    student = FactoredStudent(config)
    task = torch.tensor([WALKER, PENDULUM, REACHER])
    action = torch.rand(4, 3, 6) * 2 - 1  # [samples, B, A]
    mask = student.merge_actions(student.agent_action_mask(task), task)
    action = action * mask
    split = student.split_actions(action, task)
    assert split.shape == (4, 3, 6, 2)
    torch.testing.assert_close(split[:, 0, :3], action[:, 0].view(4, 3, 2))  # walker pairs
    assert split[:, 0, 3:].abs().sum() == 0
    torch.testing.assert_close(split[:, 1, 0, 0], action[:, 1, 0])  # pendulum: 1 agent x 1 dim
    assert split[:, 1].flatten(1)[:, 1:].abs().sum() == 0
    torch.testing.assert_close(student.merge_actions(split, task), action)
    assert student.agent_mask(task).tolist() == [
        [1, 1, 1, 0, 0, 0],
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
    ]
    s = student.encode(torch.randn(3, 24), task)
    next_s, reward = student.step(s.expand(4, -1, -1, -1), split, student.condition(task))
    assert s.shape == (3, 6, 16) and next_s.shape == (4, 3, 6, 16) and reward.shape == (4, 3, 6)


# ----------------------------------------------------------------- factored structure
def test_changing_one_joint_changes_only_that_agent() -> None:
    student = tiny_student()
    obs, task, action = inputs(student, [WALKER, WALKER])
    cond = student.condition(task)
    s = student.encode(obs, task)
    with torch.no_grad():
        base = (*student.step(s, action, cond), student.q(s, action, cond))
        for j in range(6):
            moved = action.clone()
            moved[:, j] += 0.5
            next_s, reward, q = (
                (after - before).abs()
                for after, before in zip(
                    (*student.step(s, moved, cond), student.q(s, moved, cond)), base, strict=True
                )
            )
            # Largest change per agent: [B, N, m], [B, N], [Q, B, N] -> [N].
            for per_agent in (next_s.amax(dim=(0, 2)), reward.amax(dim=0), q.amax(dim=(0, 1))):
                assert per_agent[j] > 0
                assert torch.all(per_agent[torch.arange(6) != j] == 0)


def test_padded_agents_contribute_zero_and_get_no_gradient() -> None:
    student = tiny_student()
    obs, task, action = inputs(student, [PENDULUM, REACHER, WALKER])
    action.requires_grad_(True)
    cond = student.condition(task)
    s = student.encode(obs, task).detach().requires_grad_(True)
    _, reward = student.step(s, action, cond)
    q = student.q(s, action, cond)
    agent_mask = student.agent_mask(task).bool()
    assert torch.all(reward[~agent_mask] == 0) and torch.all(q[:, ~agent_mask] == 0)
    assert torch.all(reward[agent_mask] != 0)
    # Global = sum over the task's agents.
    torch.testing.assert_close(
        student.global_reward(s, action, cond), (reward * agent_mask).sum(-1)
    )
    torch.testing.assert_close(student.global_q(s, action, cond), (q * agent_mask).sum(-1))
    pi = student.pi(s, cond)
    (
        student.global_reward(s, action, cond).sum()
        + student.global_q(s, action, cond).sum()
        + pi.action.sum()
        + pi.mean.sum()
    ).backward()
    assert torch.all(s.grad[~agent_mask] == 0) and torch.all(action.grad[~agent_mask] == 0)
    assert s.grad[agent_mask].abs().sum() > 0
    action_mask = student.agent_action_mask(task).bool()
    assert torch.all(pi.action[~action_mask] == 0) and torch.all(pi.mean[~action_mask] == 0)


def test_extend_agents_keeps_existing_outputs() -> None:
    student = tiny_student()
    obs, task, action = inputs(student, [WALKER, REACHER])
    with torch.no_grad():
        cond = student.condition(task)
        s = student.encode(obs, task)
        before = (s, *student.step(s, action, cond), student.q(s, action, cond))
        student.extend_agents(8)
        assert student.agent_emb.weight.shape[0] == 8 and student.config.agent_slots == 8
        torch.testing.assert_close(
            student.agent_emb.weight[6:], student.agent_emb.weight[:6].mean(0).expand(2, -1)
        )
        cond = student.condition(task)
        s2 = student.encode(obs, task)
        after = (s2, *student.step(s2, action, cond), student.q(s2, action, cond))
    for b, a in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="shrink"):
        student.extend_agents(4)


def test_save_load_exact(tmp_path) -> None:
    student = tiny_student(partitions={"walker-walk": WALKER_PAIRS})
    student.save_pretrained(tmp_path / "student")
    loaded = FactoredStudent.from_pretrained(tmp_path / "student").eval()
    assert loaded.config == student.config
    obs, task, action = inputs(student, [WALKER, PENDULUM])

    @torch.no_grad()
    def outputs(model: FactoredStudent) -> tuple[torch.Tensor, ...]:
        cond = model.condition(task)
        s = model.encode(obs, task)
        return (s, *model.step(s, action, cond), model.q(s, action, cond), model.pi(s, cond).mean)

    for a, b in zip(outputs(student), outputs(loaded), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["format_version"] == 1


# ----------------------------------------------------------------------- planning
def test_adapter_returns_are_per_agent() -> None:
    student = tiny_student()
    obs, task, _ = inputs(student, [WALKER, REACHER])

    def returns(actions: torch.Tensor) -> torch.Tensor:
        model = StudentPlanningModel(student, generator=0)  # same policy noise every call
        with torch.no_grad():
            return model.returns(model.initial_state(obs, task), actions, task)

    mask = student.agent_action_mask(task)[:, :, None, None]  # [E, N, 1, 1, G]
    actions = (torch.rand(2, 6, 5, 3, 1) * 2 - 1) * mask
    ret = returns(actions)
    assert ret.shape == (2, 6, 5)
    assert torch.all(ret[1, 2:] == 0)  # reacher has 2 agents
    moved = actions.clone()
    moved[:, 0] = -moved[:, 0]
    ret_moved = returns(moved)
    assert not torch.allclose(ret[:, 0], ret_moved[:, 0])
    torch.testing.assert_close(ret[:, 1:], ret_moved[:, 1:], rtol=0, atol=0)


def test_student_plans_masked_actions_with_mppi() -> None:
    tasks = ["walker-walk", "pendulum-swingup", "reacher-easy"]  # ids 0, 1, 2 here
    student = tiny_student(tasks=tasks, partitions={"walker-walk": WALKER_PAIRS})
    model = StudentPlanningModel(student, generator=0)
    assert (model.num_agents, model.agent_action_dim) == (3, 2)
    config = MPPIConfig(iterations=2, num_samples=32, num_elites=4, num_pi_trajs=4, horizon=3)
    planner = MPPIPlanner(model, config, generator=0)
    obs, task, _ = inputs(student, [0, 1, 2])
    for t0 in (True, False):
        action = planner.plan(obs, task, t0=t0)
        assert action.shape == (3, 6) and action.abs().max() <= 1
        assert torch.all(action[1, 1:] == 0) and torch.all(action[2, 2:] == 0)
    pi = model.policy_actions(model.initial_state(obs, task), task, 4, 3)
    assert (
        pi.shape == (3, 3, 4, 3, 2)
        and torch.all(pi[1, 1:] == 0)
        and torch.all(pi[1, 0, ..., 1] == 0)
    )


def test_planning_skips_agents_no_task_in_the_batch_uses() -> None:
    """A batch of 1- and 2-joint tasks plans 2 agents, not the student's 6 (cost)."""
    student = tiny_student()
    model = StudentPlanningModel(student, generator=0)
    obs, task, _ = inputs(student, [PENDULUM, REACHER])
    assert model.active_agents(task) == 2
    assert model.action_mask(task).shape == (2, 2, 1)
    config = MPPIConfig(iterations=2, num_samples=32, num_elites=4, num_pi_trajs=4, horizon=3)
    planner = MPPIPlanner(model, config, generator=0)
    action = planner.plan(obs, task, t0=True)
    assert action.shape == (2, 6)
    assert torch.all(action[0, 1:] == 0) and torch.all(action[1, 2:] == 0)
    assert action[1, :2].abs().min() > 0
    # The narrowed state steps each agent exactly as the full student does.
    state = model.initial_state(obs, task)
    actions = torch.rand(2, 2, 1) * 2 - 1
    full = torch.nn.functional.pad(actions, (0, 0, 0, 4))
    with torch.no_grad():
        narrow_next, narrow_reward = student.step(state.s, actions, state.cond)
        full_next, full_reward = student.step(
            student.encode(obs, task), full, student.condition(task)
        )
        narrow_q = student.q(narrow_next, actions, state.cond)
        full_q = student.q(full_next, full, student.condition(task))
    torch.testing.assert_close(narrow_next, full_next[:, :2], rtol=0, atol=0)
    torch.testing.assert_close(narrow_reward, full_reward[:, :2], rtol=0, atol=0)
    torch.testing.assert_close(narrow_q, full_q[..., :2], rtol=0, atol=0)
    assert model.active_agents(torch.tensor([PENDULUM, WALKER])) == 6


def test_param_groups_split_encoder_from_the_rest() -> None:
    student = tiny_student()
    encoder, rest = student.param_groups(lr=1e-3, enc_lr_scale=0.3)
    assert encoder["lr"] == pytest.approx(3e-4) and rest["lr"] == pytest.approx(1e-3)
    encoder_ids = {id(p) for p in student.encoder_parameters()}
    assert {id(p) for p in encoder["params"]} == encoder_ids
    assert encoder_ids.isdisjoint(id(p) for p in rest["params"])
    # every parameter in exactly one group
    assert len(encoder["params"]) + len(rest["params"]) == len(list(student.parameters()))

"""The planning-fidelity metric: exact on identical planners, rank agreement by hand, the command."""

from __future__ import annotations

import json

import pytest
import torch

from mt_factored.expert import TDMPC2Expert
from mt_factored.planning.base import MPPIConfig
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.fidelity import (
    ExpertScorer,
    FidelityConfig,
    FidelityProbe,
    StudentScorer,
    planned_sequences,
    spearman,
    task_fidelity,
)
from mt_factored.planning.mppi import MPPIPlanner
from mt_factored.student import FactoredStudent, StudentConfig
from tests.tiny import SMOKE_TASK, SMOKE_TASK_ID, run_cli, tiny_expert_config, write_tiny_chunk

BUDGET = MPPIConfig(num_samples=32, iterations=2, num_elites=4, num_pi_trajs=4)
SMALL = FidelityConfig(random_sequences=16, candidates_per_std=4, own_states=4, own_steps=8)
WALKER, WALKER_ID = "walker-stand", 0  # 6 joints


@pytest.fixture(scope="module")
def expert() -> TDMPC2Expert:
    """A random tiny expert whose rewards and values vary (TD-MPC2 zero-initialises its
    reward and Q heads, which would make every return the same)."""
    torch.manual_seed(0)
    net = TDMPC2Expert(tiny_expert_config()).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net


@pytest.fixture(scope="module")
def student() -> FactoredStudent:
    torch.manual_seed(1)
    sizes = dict(latent_dim=16, mlp_dim=32, enc_dim=32, task_dim=8, agent_dim=8)
    return FactoredStudent(StudentConfig.for_task_set("mt30", **sizes)).eval()


def _expert_planner(expert: TDMPC2Expert, seed: int = 3) -> MPPIPlanner:
    return MPPIPlanner(ExpertPlanningModel(expert, generator=seed), BUDGET, generator=seed)


def test_spearman_matches_a_hand_computation() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    y = torch.tensor([[10.0, 30.0, 20.0, 40.0], [1.0, 2.0, 3.0, 4.0]])
    # ranks [0,1,2,3] vs [0,2,1,3]: 1 - 6*sum(d^2)/(n(n^2-1)) = 1 - 6*2/60 = 0.8; reversed: -1
    assert torch.allclose(spearman(x, y), torch.tensor([0.8, -1.0], dtype=torch.float64))


def test_regret_is_zero_when_student_and_expert_are_the_same_model(expert) -> None:
    obs = torch.randn(6, expert.obs_dim, generator=torch.Generator().manual_seed(0))
    same = task_fidelity(
        WALKER,
        WALKER_ID,
        obs,
        _expert_planner(expert),
        ExpertScorer(expert),
        _expert_planner(expert),
        ExpertScorer(expert),
        SMALL,
    )
    assert same.regret == 0.0 and same.q_regret == 0.0
    assert same.rank_joint == pytest.approx(1.0) and same.rank_agent == pytest.approx(1.0)
    assert same.policy_mse == 0.0 and same.prior_q_regret == 0.0


def test_regret_is_positive_for_a_planner_that_plans_worse(expert) -> None:
    """One iteration over 8 samples finds worse plans than the expert's budget, in its eyes."""
    obs = torch.randn(16, expert.obs_dim, generator=torch.Generator().manual_seed(1))
    weak = MPPIPlanner(
        ExpertPlanningModel(expert, generator=5),
        MPPIConfig(num_samples=8, iterations=1, num_elites=8, num_pi_trajs=0, min_std=2.0),
        generator=5,
    )
    worse = task_fidelity(
        WALKER,
        WALKER_ID,
        obs,
        weak,
        ExpertScorer(expert),
        _expert_planner(expert),
        ExpertScorer(expert),
        SMALL,
    )
    assert worse.regret > 0.05


def test_student_scorer_sums_to_the_planner_returns(student) -> None:
    """The scorer's per-agent returns are the planning model's (with the policy mean)."""
    task = torch.full((2,), WALKER_ID)
    obs = torch.randn(2, student.config.obs_dim)
    actions = torch.rand(2, 5, BUDGET.horizon, student.config.action_dim) * 2 - 1
    actions = actions * student.merge_actions(student.agent_action_mask(task), task)[:, None, None]
    per_agent = StudentScorer(student).returns(obs, task, actions)
    assert per_agent.shape == (2, student.num_agents, 5)
    # by hand: each agent's discounted rewards plus its discounted value at the policy mean
    cond = student.condition(task)
    s = student.encode(obs, task)
    steps = student.split_actions(actions.permute(1, 2, 0, 3), task)  # [C, H, E, N, G]
    for c in range(5):
        z, total, w = s, 0.0, torch.ones(2, 1)
        for h in range(BUDGET.horizon):
            z, r = student.step(z, steps[c, h], cond)
            total = total + w * r
            w = w * cond.discount[:, None]
        total = total + w * student.q(z, student.pi(z, cond).mean, cond).mean(0)
        assert torch.allclose(per_agent[:, :, c], total, atol=1e-5)


def test_prior_metrics_match_a_hand_computation(expert, student) -> None:
    """policy_mse: the two priors' deterministic actions, squared distance over the task's
    real entries; prior_q_regret: their first-action Q gap in the q_regret unit."""
    from mt_factored.planning.student_adapter import StudentPlanningModel

    obs = torch.randn(4, expert.obs_dim, generator=torch.Generator().manual_seed(2))
    task = torch.full((4,), WALKER_ID)
    student_planner = MPPIPlanner(StudentPlanningModel(student, generator=3), BUDGET, generator=3)
    got = task_fidelity(
        WALKER,
        WALKER_ID,
        obs,
        student_planner,
        StudentScorer(student),
        _expert_planner(expert),
        ExpertScorer(expert),
        SMALL,
    )
    with torch.no_grad():
        cond = student.condition(task)
        s_prior = student.merge_actions(student.pi(student.encode(obs, task), cond).mean, task)
        e_prior = expert.pi_mean(expert.encode(obs, task), task)
    joints = 6  # walker-stand's real action entries of the 6 padded ones
    want = (s_prior - e_prior)[:, :joints].square().mean()
    assert got.policy_mse == pytest.approx(float(want), rel=1e-5)
    assert got.policy_mse > 0  # two different random networks
    q = ExpertScorer(expert).first_action_q(obs, task, torch.stack([e_prior, s_prior], dim=1))
    assert (got.prior_q_regret > 0) == bool((q[:, 0] - q[:, 1]).mean() > 0)


def test_planned_sequences_are_the_planners_final_mean(expert) -> None:
    obs = torch.randn(3, expert.obs_dim)
    task = torch.full((3,), WALKER_ID)
    planner = _expert_planner(expert)
    plan = planned_sequences(planner, obs, task)
    assert plan.shape == (3, BUDGET.horizon, expert.action_dim)
    first = _expert_planner(expert).plan(obs, task, t0=True)
    assert torch.equal(plan[:, 0], first)


def test_probe_scores_data_and_own_states(tmp_path, expert, student) -> None:
    from mt_factored.data.stream import open_store

    chunk = write_tiny_chunk(
        tmp_path / "chunk_0.pt",
        {SMOKE_TASK_ID: 2},
        {SMOKE_TASK_ID: 1},
        {SMOKE_TASK_ID: 5},
        frames=40,
    )
    probe = FidelityProbe(
        expert,
        {SMOKE_TASK: SMOKE_TASK_ID},
        expert.obs_dim,
        BUDGET,
        store=open_store(str(chunk)),
        config=FidelityConfig(
            data_states=5,
            own_states=3,
            own_envs=1,
            own_steps=4,
            random_sequences=8,
            candidates_per_std=2,
        ),
    )
    first = probe.measure(student)
    assert set(first[SMOKE_TASK]) == {"data", "own"}
    assert first[SMOKE_TASK]["data"].states == 5 and first[SMOKE_TASK]["own"].states == 3
    # the same student scores the same (seeded states, planners and candidates)
    assert probe.measure(student) == first


def test_fidelity_command_prints_the_table_and_writes_json(tmp_path) -> None:
    from tests.tiny import write_tiny_expert, write_tiny_student

    expert = write_tiny_expert(tmp_path / "expert.pt")
    student = write_tiny_student(tmp_path / "student")
    chunk = write_tiny_chunk(
        tmp_path / "data" / "chunk_0.pt",
        {SMOKE_TASK_ID: 2},
        {SMOKE_TASK_ID: 1},
        {SMOKE_TASK_ID: 5},
        frames=40,
    )
    out = tmp_path / "fidelity.json"
    done = run_cli(
        "mt_factored.fidelity",
        f"student={student}",
        f"expert={expert}",
        "expert_model_size=auto",
        f"data={chunk.parent}",
        f"tasks=[{SMOKE_TASK}]",
        f"out={out}",
        f"out_dir={tmp_path / 'record'}",
        "fidelity.data_states=4",
        "fidelity.own_states=2",
        "fidelity.own_steps=4",
        "fidelity.own_envs=1",
        "fidelity.random_sequences=8",
        "fidelity.candidates_per_std=2",
        "planning.num_samples=16",
        "planning.num_elites=4",
        "planning.num_pi_trajs=2",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"| {SMOKE_TASK} | data | 4 |" in done.stdout
    written = json.loads(out.read_text())
    assert set(written["tasks"][SMOKE_TASK]) == {"data", "own"}
    assert "regret" in written["summary"]


def test_fidelity_command_needs_an_expert(tmp_path) -> None:
    from tests.tiny import write_tiny_student

    student = write_tiny_student(tmp_path / "student")
    done = run_cli(
        "mt_factored.fidelity", f"student={student}", f"out_dir={tmp_path}", cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: fidelity needs the expert")

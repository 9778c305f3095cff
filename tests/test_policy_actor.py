"""Acting with the policy prior alone (``evaluate mpc=false``): the prior's mean, masked, per env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import run_cli, tiny_expert_config, write_tiny_expert, write_tiny_student

from mt_factored.expert import TDMPC2Expert
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.policy_actor import PolicyActor
from mt_factored.planning.student_adapter import StudentPlanningModel
from mt_factored.student import FactoredStudent, StudentConfig
from mt_factored.tasks import get_task_set

CARTPOLE, WALKER = "cartpole-balance", "walker-stand"  # 1 and 6 joints


def tiny_student() -> FactoredStudent:
    torch.manual_seed(0)
    sizes = dict(latent_dim=16, mlp_dim=32, enc_dim=32, task_dim=8, agent_dim=8)
    return FactoredStudent(StudentConfig.for_task_set("mt30", **sizes)).eval()


def test_student_acts_with_its_policy_mean_and_padded_joints_stay_zero() -> None:
    student = tiny_student()
    names = student.config.task_names
    task = torch.tensor([names.index(CARTPOLE), names.index(WALKER)])
    obs = torch.randn(2, student.config.obs_dim, generator=torch.Generator().manual_seed(1))
    action = PolicyActor(StudentPlanningModel(student)).plan(obs, task)

    with torch.no_grad():
        mean = student.pi(student.encode(obs, task), student.condition(task)).mean
        expected = student.merge_actions(mean.clamp(-1, 1), task) * student.merge_actions(
            student.agent_action_mask(task), task
        )
    torch.testing.assert_close(action, expected, rtol=0, atol=0)
    assert action.shape == (2, student.config.action_dim)
    assert bool((action[0, 1:] == 0).all())  # cartpole has one joint: the rest is padding
    assert bool((action[1, :6] != 0).all())


def test_expert_acts_with_its_policy_mean() -> None:
    torch.manual_seed(0)
    expert = TDMPC2Expert(tiny_expert_config()).eval()
    task = torch.tensor([get_task_set("mt30").index(WALKER)])
    obs = torch.randn(1, expert.obs_dim, generator=torch.Generator().manual_seed(2))
    action = PolicyActor(ExpertPlanningModel(expert)).plan(obs, task)
    with torch.no_grad():
        expected = expert.pi_mean(expert.encode(obs, task), task)
    torch.testing.assert_close(action[:, :6], expected[:, :6].clamp(-1, 1), rtol=0, atol=1e-6)


def test_sampled_actions_follow_the_seed() -> None:
    student = tiny_student()
    task = torch.tensor([student.config.task_names.index(WALKER)])
    obs = torch.zeros(1, student.config.obs_dim)
    actors = [PolicyActor(StudentPlanningModel(student, generator=5)) for _ in "ab"]
    a, b = (actor.plan(obs, task, eval_mode=False) for actor in actors)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, actors[0].plan(obs, task, eval_mode=True))


def test_a_model_without_a_policy_is_refused() -> None:
    class NoPolicy:
        pass

    with pytest.raises(TypeError, match="policy_mean"):
        PolicyActor(NoPolicy())  # type: ignore[arg-type]


def test_evaluate_mpc_false_runs_both_models_on_their_priors(tmp_path: Path) -> None:
    expert = write_tiny_expert(tmp_path / "expert.pt")
    student = write_tiny_student(tmp_path / "student")
    out = run_cli(
        "mt_factored.evaluate",
        f"expert={expert}",
        "expert_model_size=auto",
        f"student={student}",
        "tasks=[cartpole-balance]",
        "episodes=2",
        "max_steps=10",
        "latency_repeats=1",
        "mpc=false",
        "progress_bar=false",
        f"out={tmp_path / 'results.json'}",
        f"out_dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "expert ms/step (policy prior)" in out.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["student"][CARTPOLE]["returns"]) == 2
    assert len(results["expert"][CARTPOLE]["returns"]) == 2


@pytest.mark.parametrize("extra", [[], ["perturb=dummy:0"]], ids=["evaluate", "robustness"])
def test_evaluate_mpc_false_refuses_a_student_without_a_prior(
    tmp_path: Path, extra: list[str]
) -> None:
    student = write_tiny_student(tmp_path / "student", use_policy_prior=False)
    out = run_cli(
        "mt_factored.evaluate",
        f"student={student}",
        "tasks=[cartpole-balance]",
        "mpc=false",
        *extra,
        f"out_dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert "mpc=false" in out.stderr and "policy prior" in out.stderr

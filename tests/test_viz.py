"""Interpretability plots (Fac-TDMPC 5.6): latents, per-joint plan returns, `python -m mt_factored.viz`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny import write_tiny_expert

from mt_factored.analysis.viz import (
    RETURNS_FIGSIZE,
    TSNE_FIGSIZE,
    Rollout,
    joint_latents,
    plan_returns,
)
from mt_factored.student import FactoredStudent, StudentConfig
from mt_factored.tasks import get_task_set

pytest.importorskip("sklearn", reason="the t-SNE plots need the viz extra (scikit-learn)")

MT30 = get_task_set("mt30")
CARTPOLE, WALKER = MT30.index("cartpole-balance"), MT30.index("walker-stand")  # 1 and 6 joints


def tiny_student(seed: int = 0) -> FactoredStudent:
    torch.manual_seed(seed)
    sizes = dict(latent_dim=16, mlp_dim=32, enc_dim=32, task_dim=8, agent_dim=8)
    student = FactoredStudent(StudentConfig.for_task_set("mt30", **sizes))
    with torch.no_grad():  # reward and value heads start at 0: make them informative
        for head in (student.step_net, student.q_head):
            head.out.weight.normal_(std=0.3)
    return student.eval()


def random_plans(batch: int, student: FactoredStudent, task_id: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, student.config.obs_dim, generator=gen)
    plans = torch.rand(batch, student.num_agents, 3, student.agent_action_dim, generator=gen)
    mask = student.agent_action_mask(torch.tensor(task_id))  # [N, G]
    return obs, (plans * 2 - 1) * mask[:, None]


# ----------------------------------------------------------------------------- returns
def test_plan_returns_are_per_agent_and_zero_for_padded_agents() -> None:
    student = tiny_student()
    obs, plans = random_plans(4, student, WALKER)
    returns = plan_returns(student, obs, WALKER, plans)
    assert returns.shape == (4, 6) and returns.abs().min() > 0
    # Decentralized: changing joint 0's plan leaves every other joint's return as it was.
    changed = plans.clone()
    changed[:, 0] = -changed[:, 0]
    other = plan_returns(student, obs, WALKER, changed)
    assert not torch.allclose(other[:, 0], returns[:, 0])
    torch.testing.assert_close(other[:, 1:], returns[:, 1:], rtol=0, atol=1e-6)
    # Cartpole has one joint: the five padded agents return exactly 0.
    obs, plans = random_plans(4, student, CARTPOLE)
    returns = plan_returns(student, obs, CARTPOLE, plans)
    assert returns[:, 0].abs().min() > 0 and torch.equal(returns[:, 1:], torch.zeros(4, 5))


def test_joint_latents_leave_out_padded_agents() -> None:
    student = tiny_student()
    steps, envs = 6, 2
    rollouts = [
        Rollout(task, task_id, torch.randn(steps, envs, 24), torch.zeros(steps, envs, 6, 3, 1), [])
        for task, task_id in (("cartpole-balance", CARTPOLE), ("walker-stand", WALKER))
    ]
    latents, agents, tasks = joint_latents(student, rollouts, stride=2)
    per_task = (steps // 2) * envs
    assert latents.shape == (per_task * (1 + 6), student.config.latent_dim)
    assert tasks == ["cartpole-balance"] * per_task + ["walker-stand"] * per_task * 6
    assert set(agents[:per_task]) == {0} and sorted(set(agents[per_task:])) == list(range(6))
    # The rows are the student's own encodings of the strided states.
    obs = rollouts[1].obs[::2].flatten(0, 1)
    with torch.no_grad():
        expected = student.encode(obs, torch.full((len(obs),), WALKER)).flatten(0, 1)
    torch.testing.assert_close(torch.from_numpy(latents[per_task:]), expected)


# ----------------------------------------------------------------------------- CLI
def test_viz_writes_pngs_of_the_expected_size(tmp_path: Path) -> None:
    student = tmp_path / "student"
    tiny_student().save_pretrained(student)
    expert = write_tiny_expert(tmp_path / "expert.pt")
    out, dpi = tmp_path / "docs", 50
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mt_factored.viz",
            f"student={student}",
            f"expert={expert}",
            "expert_model_size=auto",
            "tasks=[cartpole-balance,walker-stand]",
            "episodes=2",
            "max_steps=8",
            f"dpi={dpi}",
            f"out={out}",
            f"out_dir={tmp_path / 'run'}",
            "planning.num_samples=32",
            "planning.num_elites=4",
            "planning.num_pi_trajs=4",
            "planning.iterations=2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    sizes = {
        "tsne_joints.png": TSNE_FIGSIZE,
        "tsne_embodiments.png": TSNE_FIGSIZE,
        "returns_walker-stand.png": RETURNS_FIGSIZE,  # the task with the most joints
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(sizes)  # no temp files left
    for name, (width, height) in sizes.items():
        with Image.open(out / name) as image:
            image.verify()
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            assert image.size == (round(width * dpi), round(height * dpi))
        assert f": {out / name}" in run.stdout


def test_viz_needs_a_student(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mt_factored.viz", f"out_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode != 0 and "viz needs a student: pass student=" in run.stderr

"""Action perturbations (Fac-TDMPC 5.5): the hooks, their specs, and `evaluate perturb=...`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import run_cli, write_tiny_expert, write_tiny_student

from mt_factored.analysis.perturbations import (
    Perturbation,
    PerturbationSpecError,
    actuator_names,
    parse_perturbation,
    parse_perturbations,
)
from mt_factored.tasks import get_task_set, make_env

FAST_PLANNING = [
    "planning.num_samples=32",
    "planning.num_elites=4",
    "planning.num_pi_trajs=4",
    "planning.iterations=2",
]


def walker_actions(seed: int = 0, envs: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(envs, 6))


# ----------------------------------------------------------------------------- hooks
@pytest.mark.parametrize("joint", range(6))
@pytest.mark.parametrize("kind", ["dummy:{}", "scale:{}:0.5", "scale:{}:-2"])
def test_hook_changes_only_the_named_joint(kind: str, joint: int) -> None:
    (hook,) = parse_perturbation(kind.format(joint), "walker-stand")
    action = walker_actions()
    before = action.copy()
    out = hook(action, np.random.default_rng(7))
    assert np.array_equal(action, before), "the hook must not modify its input"
    others = [j for j in range(6) if j != joint]
    assert np.array_equal(out[:, others], action[:, others])  # bit-identical
    assert out.dtype == action.dtype and out.shape == action.shape
    if hook.kind == "dummy":
        # Uniform noise in [-1, 1] from the generator the episode passes in.
        expected = np.random.default_rng(7).uniform(-1, 1, size=len(action))
        assert np.array_equal(out[:, joint], expected)
        assert not np.allclose(out[:, joint], action[:, joint])
    else:
        assert np.array_equal(out[:, joint], action[:, joint] * hook.factor)


def test_dummy_noise_follows_the_generator_state() -> None:
    (hook,) = parse_perturbation("dummy:2", "walker-stand")
    rng = np.random.default_rng(3)
    first, second = hook(walker_actions(), rng), hook(walker_actions(), rng)
    assert not np.array_equal(first[:, 2], second[:, 2])  # fresh noise every step
    assert np.all(np.abs(np.concatenate([first[:, 2], second[:, 2]])) <= 1)
    again = np.random.default_rng(3)
    assert np.array_equal(hook(walker_actions(), again), first)  # and reproducible


def test_hook_rejects_actions_without_the_joint() -> None:
    (hook,) = parse_perturbation("scale:5:0.5", "walker-stand")
    with pytest.raises(ValueError, match="action_dim > 5"):
        hook(np.zeros((2, 2)), np.random.default_rng(0))


class ZeroPlanner:
    """Stands in for MPPI in run_episodes: always the zero action."""

    def reset(self) -> None:
        pass

    def plan(self, obs: torch.Tensor, task: torch.Tensor, **_) -> torch.Tensor:
        return torch.zeros(len(obs), 6)


def test_run_episodes_steps_the_env_with_the_perturbed_action() -> None:
    from mt_factored.planning.episodes import EpisodeConfig, run_episodes

    def episode_returns(spec: str | None) -> list[float]:
        hook = None if spec is None else parse_perturbation(spec, "cartpole-balance")[0]
        config = EpisodeConfig(episodes=2, max_steps=30)
        task_id = get_task_set("mt30").index("cartpole-balance")
        return run_episodes(
            ZeroPlanner(), "cartpole-balance", task_id, 24, config, action_hook=hook
        ).returns

    still = episode_returns(None)
    assert episode_returns("scale:0:3") == still  # 3 x 0 = 0: the same episode
    assert episode_returns("dummy:slide") != still  # noise pushes the cart


# ----------------------------------------------------------------------------- specs
def test_joints_by_actuator_name_follow_the_physics_model() -> None:
    model = make_env("walker-stand", seed=0).physics.model
    names = [model.id2name(i, "actuator") for i in range(model.nu)]
    assert actuator_names("walker-stand") == tuple(names)
    for index, name in enumerate(names):
        (by_name,) = parse_perturbation(f"dummy:{name}", "walker-stand")
        (by_index,) = parse_perturbation(f"dummy:{index}", "walker-stand")
        assert by_name == by_index
        assert (by_name.joint, by_name.joint_name) == (index, name)


def test_sweep_gives_one_perturbation_per_joint_in_order() -> None:
    sweep = parse_perturbation("scale:*:0.25", "walker-stand")
    assert [p.joint for p in sweep] == list(range(6))
    assert {p.family for p in sweep} == {"scale:0.25"}
    assert [p.joint_name for p in sweep] == list(actuator_names("walker-stand"))
    (one,) = parse_perturbation("dummy:*", "cartpole-balance")  # a 1-joint task
    assert one == Perturbation("dummy", 0, actuator_names("cartpole-balance")[0])
    both = parse_perturbations(["dummy:*", "dummy:1", "scale:x:2"], "cup-catch")
    assert [p.label for p in both] == ["dummy:0", "dummy:1", "scale:0:2"]  # duplicate dropped


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("noise:1", "unknown kind 'noise'"),
        ("dummy", "expected 'dummy:<joint>'"),
        ("dummy:1:2", "expected 'dummy:<joint>'"),
        ("scale:1", "expected 'dummy:<joint>'"),
        ("scale:1:strong", "finite number"),
        ("scale:1:inf", "finite number"),
        ("dummy:6", "out of range for walker-stand, which has 6 joints: 0=right_hip"),
        ("dummy:-1", "out of range"),
        ("dummy:elbow", "no joint 'elbow'; valid joints: 0=right_hip, 1=right_knee"),
        ("dummy:", "no joint ''"),
    ],
)
def test_bad_specs_say_what_is_valid(spec: str, message: str) -> None:
    with pytest.raises(PerturbationSpecError, match=message):
        parse_perturbation(spec, "walker-stand")


def test_empty_or_non_string_specs() -> None:
    with pytest.raises(PerturbationSpecError, match="no perturbation given"):
        parse_perturbations([], "walker-stand")
    with pytest.raises(PerturbationSpecError, match="not a string"):
        parse_perturbations([3], "walker-stand")


# ----------------------------------------------------------------------------- evaluate
def evaluate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli("mt_factored.evaluate", *args, cwd=cwd)


def test_evaluate_perturb_writes_table_json_and_plot(tmp_path: Path) -> None:
    expert = write_tiny_expert(tmp_path / "expert.pt")
    student = write_tiny_student(tmp_path / "student")
    out_dir, plot = tmp_path / "eval", tmp_path / "docs" / "robustness.png"
    out = evaluate(
        f"expert={expert}",
        "expert_model_size=auto",
        f"student={student}",
        "tasks=[walker-stand]",
        "episodes=2",
        "max_steps=6",
        "perturb=[dummy:*,scale:right_knee:0.5,scale:left_hip:1]",
        f"perturb_plot={plot}",
        f"out_dir={out_dir}",
        *FAST_PLANNING,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "walker-stand: return under action perturbations" in out.stdout
    results = json.loads((out_dir / "robustness.json").read_text())
    conditions = results["walker-stand"]
    dummies = [f"dummy:{j}" for j in range(6)]
    assert list(conditions) == ["none", *dummies, "scale:1:0.5", "scale:3:1"]
    assert conditions["none"]["perturbation"] is None
    assert conditions["scale:1:0.5"]["perturbation"] == {
        "kind": "scale",
        "joint": 1,
        "joint_name": "right_knee",
        "factor": 0.5,
    }
    for by_model in conditions.values():
        for name in ("expert", "student"):
            returns = by_model[name]["returns"]
            assert len(returns) == 2 and all(0 <= r <= 12 for r in returns)  # 6 steps x <= 2
    for name in ("expert", "student"):  # conditions are paired: same seeds, fresh planners
        assert min(conditions["none"][name]["returns"]) > 0
        assert conditions["scale:3:1"][name]["returns"] == conditions["none"][name]["returns"]
        assert conditions["dummy:3"][name]["returns"] != conditions["none"][name]["returns"]
    assert results["_meta"]["episodes"] == 2
    for png in (out_dir / "robustness.png", plot):
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200


def test_evaluate_bad_perturb_spec_fails_before_running(tmp_path: Path) -> None:
    expert = write_tiny_expert(tmp_path / "expert.pt")
    out = evaluate(
        f"expert={expert}",
        "expert_model_size=auto",
        "tasks=[cartpole-balance]",
        "perturb=dummy:3",
        f"out_dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert "joint 3 is out of range for cartpole-balance, which has 1 joint: 0=slide" in out.stderr
    assert not (tmp_path / "eval" / "robustness.json").exists()

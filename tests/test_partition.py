"""Sub-dynamics discovery: planted block structure is recovered, the CLI writes a recipe
that composes and trains the student with the discovered agents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mt_factored import cli
from mt_factored.analysis.partition import (
    action_affinity,
    cluster_actions,
    discover_partition,
    influence_matrix,
    task_transitions,
    write_recipe,
)
from mt_factored.analysis.partition.recipe import GENERATED_MARKER, train_command
from mt_factored.artifacts.configs import as_object
from mt_factored.data.chunks import write_chunk
from mt_factored.tasks import get_task_set

WALKER, CARTPOLE = 0, 8  # mt30 ids of walker-stand (24 obs, 6 actions) and cartpole-balance
PLANTED = ((0, 3), (1, 4, 5), (2,))


def block_matrix(groups, num_states: int, gen: np.random.Generator) -> np.ndarray:
    """``[A, S]`` effects: group k drives only its own slice of the state, signs random."""
    num_actions = sum(len(g) for g in groups)
    slices = np.array_split(np.arange(num_states), len(groups))
    effect = np.zeros((num_actions, num_states))
    for group, states in zip(groups, slices, strict=True):
        for i in group:
            effect[i, states] = gen.uniform(0.5, 1.5, len(states)) * gen.choice([-1, 1])
    return effect


def planted_step(state, action, effect, gen, noise=0.05):
    """Stable linear dynamics: decay of the state plus the planted action effects."""
    return state - 0.2 * state + action @ effect + noise * gen.standard_normal(state.shape)


def planted_transitions(groups=PLANTED, num_states=12, n=4000, seed=0, feedback=False):
    gen = np.random.default_rng(seed)
    effect = block_matrix(groups, num_states, gen)
    obs = gen.standard_normal((n, num_states))
    action = gen.uniform(-1, 1, (n, effect.shape[0]))
    if feedback:  # a state-feedback policy: actions correlate with the state
        gain = gen.standard_normal((num_states, effect.shape[0]))
        action = np.clip(np.tanh(obs @ gain) + 0.3 * action, -1, 1)
    return obs, planted_step(obs, action, effect, gen), action


# ------------------------------------------------------------------ discovery on arrays
@pytest.mark.parametrize("method", ["regression", "correlation"])
@pytest.mark.parametrize("linkage", ["complete", "average"])
def test_recovers_planted_blocks(method, linkage) -> None:
    result = discover_partition(*planted_transitions(), method=method, linkage=linkage)
    assert result.partition == PLANTED
    assert result.influence.shape == (6, 12)
    # Every action has influence only on its block's states.
    slices = np.array_split(np.arange(12), 3)
    for k, group in enumerate(PLANTED):
        outside = np.setdiff1d(np.arange(12), slices[k])
        assert (result.influence[list(group)][:, outside] == 0).all()
        assert (result.influence[list(group)][:, slices[k]] > 0).all()


def test_recovers_two_legs_of_a_six_joint_robot() -> None:
    groups = ((0, 1, 2), (3, 4, 5))
    result = discover_partition(*planted_transitions(groups, num_states=24, seed=3))
    assert result.partition == groups


def test_regression_recovers_blocks_under_a_feedback_policy() -> None:
    result = discover_partition(*planted_transitions(feedback=True, n=6000, seed=1))
    assert result.partition == PLANTED


def test_num_groups_forces_the_count() -> None:
    data = planted_transitions()
    two = discover_partition(*data, num_groups=2).partition
    assert len(two) == 2
    for planted in PLANTED:  # forcing fewer groups only merges whole planted blocks
        assert any(set(planted) <= set(group) for group in two)
    assert discover_partition(*data, num_groups=6).partition == tuple((j,) for j in range(6))
    assert discover_partition(*data, num_groups=1).partition == (tuple(range(6)),)


def test_unrelated_actions_stay_one_per_agent() -> None:
    gen = np.random.default_rng(0)
    obs = gen.standard_normal((3000, 10))
    action = gen.uniform(-1, 1, (3000, 4))
    next_obs = 0.8 * obs + gen.standard_normal(obs.shape)  # no action effect at all
    result = discover_partition(obs, next_obs, action)
    assert result.partition == ((0,), (1,), (2,), (3,))
    assert result.merges == ()


def test_random_and_degenerate_data_give_valid_partitions() -> None:
    gen = np.random.default_rng(1)
    for n, s, a in [(40, 3, 5), (500, 24, 6), (200, 1, 1)]:
        obs, next_obs = gen.standard_normal((n, s)), gen.standard_normal((n, s))
        action = gen.uniform(-1, 1, (n, a))
        action[:, 0] = 0.3  # a dead actuator
        obs[:, -1] = 0.0  # a padding entry
        for method in ("regression", "correlation"):
            result = discover_partition(obs, next_obs, action, method=method, ridge=0.0)
            assert sorted(j for g in result.partition for j in g) == list(range(a))
            assert (result.influence[0] == 0).all()
            assert (0,) in result.partition
    still = discover_partition(obs, next_obs, np.zeros_like(action))  # no action ever moves
    assert still.partition == tuple((j,) for j in range(a)) and not still.influence.any()


def test_bad_inputs_raise_clear_errors() -> None:
    obs, next_obs, action = planted_transitions(n=200)
    bad = action.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        influence_matrix(obs, next_obs, bad)
    with pytest.raises(ValueError, match="same N"):
        influence_matrix(obs, next_obs, action[:-1])
    with pytest.raises(ValueError, match="too few"):
        influence_matrix(obs[:10], next_obs[:10], action[:10])
    with pytest.raises(ValueError, match="method"):
        influence_matrix(obs, next_obs, action, method="mutual-information")
    with pytest.raises(ValueError, match="num_groups"):
        discover_partition(obs, next_obs, action, num_groups=7)
    with pytest.raises(ValueError, match="linkage"):
        cluster_actions(np.eye(3), linkage="single")
    with pytest.raises(ValueError, match="non-negative"):
        action_affinity(-np.ones((2, 3)))


def test_complete_linkage_groups_are_pairwise_similar_average_may_chain() -> None:
    chain = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.8], [0.3, 0.8, 1.0]])  # a~b, b~c, a!~c
    assert len(cluster_actions(chain, 0.5, linkage="complete")[0]) == 2
    assert cluster_actions(chain, 0.5, linkage="average")[0] == ((0, 1, 2),)
    gen = np.random.default_rng(0)
    for _ in range(20):
        x = gen.uniform(0, 1, (7, 7))
        affinity = (x + x.T) / 2
        np.fill_diagonal(affinity, 1.0)
        partition, merges = cluster_actions(affinity, threshold=0.6)
        for group in partition:
            assert affinity[np.ix_(group, group)].min() >= 0.6
        assert all(link >= 0.6 for _, link in merges)


# ------------------------------------------------------------------ data, recipe, CLI
def write_planted_chunk(path: Path, groups=((0, 1, 2), (3, 4, 5)), episodes=6) -> Path:
    """Walker-stand episodes with planted dynamics, plus cartpole episodes to skip."""
    gen = np.random.default_rng(0)
    frames = 501
    effect = block_matrix(groups, 24, gen)
    obs = np.zeros((episodes + 2, frames, 24))
    action = np.zeros((episodes + 2, frames, 6))
    obs[:, 0] = gen.standard_normal((episodes + 2, 24))
    action[:, 1:] = gen.uniform(-1, 1, (episodes + 2, frames - 1, 6))
    for t in range(1, frames):  # action[t] leads from obs[t-1] to obs[t]
        obs[:, t] = planted_step(obs[:, t - 1], action[:, t], effect, gen)
    obs[episodes:, :, 5:] = 0.0  # cartpole: 5 obs, 1 action, the rest padding
    action[episodes:, :, 1:] = 0.0
    action[:, 0] = np.nan
    reward = gen.uniform(0, 1, (episodes + 2, frames))
    reward[:, 0] = np.nan
    task = np.repeat([WALKER] * episodes + [CARTPOLE] * 2, frames).reshape(-1, frames)
    data = {
        "obs": torch.tensor(obs, dtype=torch.float32),
        "action": torch.tensor(action, dtype=torch.float32),
        "reward": torch.tensor(reward, dtype=torch.float32),
        "task": torch.tensor(task, dtype=torch.int32),
    }
    return write_chunk(path, data)


@pytest.fixture(scope="module")
def planted_chunk(tmp_path_factory) -> Path:
    return write_planted_chunk(tmp_path_factory.mktemp("data") / "chunk_0.pt")


def test_task_transitions_align_and_skip_other_tasks(planted_chunk) -> None:
    obs, next_obs, action = task_transitions(planted_chunk, "walker-stand")
    assert obs.shape == next_obs.shape == (6 * 500, 24) and action.shape == (6 * 500, 6)
    assert np.isfinite(action).all()
    np.testing.assert_array_equal(obs[1:500], next_obs[:499])  # consecutive in an episode
    cart = task_transitions(planted_chunk, "cartpole-balance")
    assert cart[0].shape == (2 * 500, 5) and cart[2].shape == (2 * 500, 1)
    sub = task_transitions(planted_chunk, "walker-stand", max_episodes=2, seed=3)
    assert sub[0].shape == (2 * 500, 24)
    with pytest.raises(ValueError, match="no episodes of reacher-easy"):
        task_transitions(planted_chunk, "reacher-easy")


def test_task_transitions_read_prepared_shards_identically(planted_chunk, tmp_path) -> None:
    from mt_factored.data import prepare

    shards = prepare(planted_chunk, tmp_path / "shards", "mt30", shard_episodes=3, progress=False)
    for got, want in zip(
        task_transitions(shards, "walker-stand"),
        task_transitions(planted_chunk, "walker-stand"),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)


def compose_partition(overrides: list[str]):
    return cli.compose("partition", overrides=overrides)


def compose_train(search_dir: Path, overrides: list[str], **kwargs):
    search = f"hydra.searchpath=[file://{search_dir}]"
    return cli.compose("train", overrides=[search, *overrides], **kwargs)


def test_cli_recipe_composes_into_the_student_config(planted_chunk, tmp_path, capsys) -> None:
    from mt_factored.partition import run
    from mt_factored.training.build import build_student_config

    cfg = compose_partition(
        [
            f"data={planted_chunk}",
            "task=walker-stand",
            "base=smoke",
            f"recipe_dir={tmp_path / 'recipe'}",
            f"out_dir={tmp_path / 'out'}",
        ]
    )
    results = run(cfg)
    assert results["walker-stand"].partition == ((0, 1, 2), (3, 4, 5))
    printed = capsys.readouterr().out
    assert (
        f"recipe=smoke-walker-stand-partition 'hydra.searchpath=[file://{tmp_path.resolve()}]'"
        in printed
    )
    report = json.loads((tmp_path / "out" / "partition.json").read_text())
    assert report["walker-stand"]["partition"] == [[0, 1, 2], [3, 4, 5]]
    assert report["walker-stand"]["actions"][0] == "right_hip"

    train = compose_train(tmp_path, ["recipe=smoke-walker-stand-partition"], hydra_config=True)
    assert train.hydra.runtime.choices.recipe == "smoke-walker-stand-partition"
    assert train.trainer.max_steps == 20  # the base recipe's settings came along
    student = build_student_config(as_object(train), get_task_set("mt30"))
    assert student.partitions[WALKER] == ((0, 1, 2), (3, 4, 5))
    assert student.partitions[CARTPOLE] == ((0,),)  # other tasks keep one joint per agent


def test_generated_recipe_trains_the_student(planted_chunk, tmp_path) -> None:
    from tiny import write_tiny_expert

    from mt_factored.train import run

    legs = {"walker-stand": ((0, 1, 2), (3, 4, 5))}
    write_recipe("walker-legs", "smoke", legs, recipe_dir=tmp_path / "recipe")
    expert = write_tiny_expert(tmp_path / "expert.pt")
    overrides = [
        "recipe=walker-legs",
        "name=walker-legs",
        "tasks=[walker-stand]",
        f"expert={expert}",
        "expert_model_size=auto",
        f"data={planted_chunk}",
        f"run_dir={tmp_path / 'run'}",
        "logger=none",
        "trainer.max_steps=2",
        "trainer.enable_progress_bar=false",
        "eval.at_end=false",
    ]
    run(compose_train(tmp_path, overrides))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2
    partitions = ckpt["hyper_parameters"]["student"]["partitions"]
    assert [list(g) for g in partitions[WALKER]] == [[0, 1, 2], [3, 4, 5]]


def test_write_recipe_never_overwrites_hand_written_recipes(tmp_path) -> None:
    hand = tmp_path / "mine.yaml"
    hand.write_text("# @package _global_\ntasks: [walker-stand]\n")
    with pytest.raises(FileExistsError, match="not a generated recipe"):
        write_recipe("mine", "smoke", {"walker-stand": ((0,), (1, 2, 3, 4, 5))}, (), tmp_path)
    path = write_recipe("gen", "smoke", {"walker-stand": ((0,), (1, 2, 3, 4, 5))}, (), tmp_path)
    assert path.read_text().splitlines()[1].startswith(GENERATED_MARKER)
    path = write_recipe("gen", "smoke", {"walker-stand": ((0, 1), (2, 3, 4, 5))}, (), tmp_path)
    assert "walker-stand: [[0, 1], [2, 3, 4, 5]]" in path.read_text()
    with pytest.raises(FileNotFoundError, match="base recipe 'nope'"):
        write_recipe("x", "nope", {"walker-stand": ((0,),)}, (), tmp_path)
    with pytest.raises(ValueError, match="folder named 'recipe'"):
        train_command("gen", tmp_path)
    assert train_command("gen") == "python -m mt_factored.train recipe=gen"
    with pytest.raises(ValueError, match="cannot extend itself"):
        write_recipe("smoke", "smoke", {"walker-stand": ((0,),)}, (), tmp_path)


def test_cli_runs_as_a_module(planted_chunk, tmp_path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mt_factored.partition",
            f"data={planted_chunk}",
            "task=walker-stand",
            "num_groups=3",
            f"recipe_dir={tmp_path / 'recipe'}",
            f"out_dir={tmp_path / 'out'}",
            "name=three",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "partition: [[" in out.stdout
    text = (tmp_path / "recipe" / "three.yaml").read_text()
    assert "  - /recipe/quickstart" in text and "num_groups=3" in text

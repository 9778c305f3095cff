"""Expert results reused across runs: keyed by everything they depend on, marked in the table."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mt_factored.errors import InputError
from mt_factored.planning.base import MPPIConfig
from mt_factored.planning.episodes import EpisodeConfig, EpisodeStats
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.expert_cache import ExpertResultCache, cache_key
from mt_factored.planning.mppi import MPPIPlanner
from mt_factored.planning.report import comparison_table
from mt_factored.training import callbacks
from mt_factored.training.callbacks import PlanningEvalCallback
from mt_factored.training.config import TrainEvalConfig
from tests.tiny import write_tiny_expert

BUDGET = MPPIConfig(num_samples=16, iterations=1, num_elites=4, num_pi_trajs=2)
EPISODES = EpisodeConfig(episodes=2, seed=3, max_steps=5, latency_repeats=0)
TASKS = {"cartpole-balance": 8, "reacher-easy": 4}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_expert(tmp_path_factory.mktemp("expert") / "expert.pt")


def _stats(task: str = "cartpole-balance") -> EpisodeStats:
    return EpisodeStats(
        task=task,
        returns=[1.0, 2.0],
        plan_ms_per_call=3.0,
        envs_per_call=2,
        extra={"budget": (16, 1)},
    )


def test_the_key_changes_with_everything_the_returns_depend_on(checkpoint, tmp_path) -> None:
    files = {t: checkpoint for t in TASKS}
    key, facts = cache_key(files, EPISODES, BUDGET)
    assert facts["threads"] == torch.get_num_threads() and "torch" in facts["versions"]
    assert facts["tasks"] == list(TASKS)
    assert cache_key(files, EPISODES, BUDGET)[0] == key
    other_file = tmp_path / "other.pt"
    other_file.write_bytes(checkpoint.read_bytes() + b"\0")
    changed = [
        cache_key({**files, "reacher-easy": other_file}, EPISODES, BUDGET)[0],
        cache_key(dict(reversed(list(files.items()))), EPISODES, BUDGET)[0],  # task order
        cache_key({"cartpole-balance": checkpoint}, EPISODES, BUDGET)[0],
        cache_key(files, EpisodeConfig(episodes=3, seed=3, max_steps=5), BUDGET)[0],
        cache_key(files, EpisodeConfig(episodes=2, seed=4, max_steps=5), BUDGET)[0],
        cache_key(files, EPISODES, MPPIConfig(num_samples=32, num_elites=4, num_pi_trajs=2))[0],
        cache_key(files, EPISODES, dataclasses.replace(BUDGET, prior_weight=3.0))[0],
    ]
    assert key not in changed and len(set(changed)) == len(changed)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert cache_key(files, EPISODES, BUDGET)[0] != key
    finally:
        torch.set_num_threads(threads)
    # latency repeats do not change returns: same key
    latency = EpisodeConfig(episodes=2, seed=3, max_steps=5, latency_repeats=7)
    assert cache_key(files, latency, BUDGET)[0] == key
    # a setting added later, at its off value, is not in the key: older entries stay valid
    assert "prior_weight" not in facts["planning"]


def test_the_cache_round_trips_and_refresh_misses(checkpoint, tmp_path) -> None:
    path = tmp_path / "cache.json"
    key, facts = cache_key({"cartpole-balance": checkpoint}, EPISODES, BUDGET)
    cache = ExpertResultCache(path)
    assert cache.get(key) is None
    cache.put(key, {"cartpole-balance": _stats()}, facts)
    again = ExpertResultCache(path).get(key)["cartpole-balance"]
    assert again.returns == [1.0, 2.0] and again.extra == {"budget": (16, 1), "cached": True}
    assert ExpertResultCache(path, refresh=True).get(key) is None
    assert json.loads(path.read_text())["entries"][key]["key"]["tasks"] == ["cartpole-balance"]
    path.write_text("{ truncated")
    with pytest.raises(InputError, match="unreadable"):
        ExpertResultCache(path)


def test_a_task_scores_the_same_alone_or_after_another(expert) -> None:
    """evaluate_tasks reseeds the planner per task: results do not depend on the task list."""
    from mt_factored.planning.episodes import evaluate_tasks

    def planner() -> MPPIPlanner:
        return MPPIPlanner(ExpertPlanningModel(expert, generator=1), BUDGET, generator=1)

    episodes = EpisodeConfig(episodes=2, seed=3, max_steps=20, latency_repeats=2)
    first = {"reacher-easy": 4, "cartpole-balance": 8}
    both = evaluate_tasks(planner(), first, expert.obs_dim, episodes)
    alone = evaluate_tasks(planner(), {"cartpole-balance": 8}, expert.obs_dim, episodes)
    assert both["cartpole-balance"].returns == alone["cartpole-balance"].returns


def test_the_callback_reuses_cached_returns_and_the_table_marks_them(
    checkpoint, tmp_path, monkeypatch
) -> None:
    from mt_factored.expert import TDMPC2Expert

    expert = TDMPC2Expert.from_checkpoint(checkpoint, model_size="auto").eval()
    evaluated: list[list[str]] = []
    real = callbacks.evaluate_tasks

    def counting(planner, task_ids, *args, **kwargs):
        evaluated.append(list(task_ids))
        return real(planner, task_ids, *args, **kwargs)

    monkeypatch.setattr(callbacks, "evaluate_tasks", counting)
    evaluation = TrainEvalConfig(episodes=2, seed=3, max_steps=5, latency_repeats=1)

    def run(refresh: bool = False):
        cb = PlanningEvalCallback(
            list(TASKS),
            list(TASKS.values()),
            expert.obs_dim,
            BUDGET,
            evaluation,
            expert_checkpoints={t: str(checkpoint) for t in TASKS},
            expert_cache=ExpertResultCache(tmp_path / "cache.json", refresh=refresh),
        )
        planner = MPPIPlanner(ExpertPlanningModel(expert, generator=0), BUDGET, generator=0)
        return cb._evaluate_expert(planner, "cpu")

    first = run()
    second = run()
    assert evaluated == [list(TASKS)]  # the second run evaluates nothing
    for task in TASKS:
        assert second[task].returns == first[task].returns
        assert second[task].extra["cached"] and not first[task].extra.get("cached")
        assert second[task].plan_ms_single_env is not None  # latency measured anew
    table = comparison_table(first, second)
    assert "± 0.0*" in table or "*|" in table.replace(" ", "")
    assert "from the expert-result cache" in table
    assert "expert-result cache" not in comparison_table(first, first)
    run(refresh=True)
    assert evaluated == [list(TASKS), list(TASKS)]

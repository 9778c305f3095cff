"""One task's transitions ``(s_t, a_t, s_{t+1})`` from the public data, real dims only."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mt_factored.constants import ACTION, OBS
from mt_factored.data.stream import Source, open_store
from mt_factored.errors import InputError
from mt_factored.tasks import TaskSet, get_task_set

log = logging.getLogger(__name__)


def task_transitions(
    source: Source,
    task: str,
    task_set: str | TaskSet = "mt30",
    max_episodes: int | None = None,
    seed: int = 0,
    block_episodes: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every transition of ``task``'s episodes in ``source``, without the padding entries.

    Args:
        source: a prepared shard folder, official chunk file(s) or a folder of them.
        task: task name; its id in ``task_set`` selects the episodes.
        task_set: the task set whose ids the data uses.
        max_episodes: use at most this many episodes, drawn at random with ``seed``
            (None: all of them).
        seed: seed of that draw.
        block_episodes: episodes read at a time.

    Returns:
        (obs, next_obs, action) as float32 ``[N, obs_dim]``, ``[N, obs_dim]``,
        ``[N, action_dim]`` with the task's real sizes; ``action[n]`` led from ``obs[n]``
        to ``next_obs[n]``.
    """
    task_set = get_task_set(task_set) if isinstance(task_set, str) else task_set
    task_id = task_set.index(task)  # raises with close matches for typos
    spec = task_set[task]
    store = open_store(source)
    if store.obs_dim < spec.obs_dim or store.action_dim < spec.action_dim:
        raise InputError(
            f"{source}: observations/actions of width {store.obs_dim}/{store.action_dim} "
            f"cannot hold {task}'s {spec.obs_dim}/{spec.action_dim}"
        )
    episodes = np.flatnonzero(store.episode_tasks == task_id)
    if not len(episodes):
        present = sorted(set(store.episode_tasks.tolist()))
        raise InputError(
            f"{source} holds no episodes of {task} (task id {task_id} in {task_set.name}); "
            f"it holds task ids {present}"
        )
    if max_episodes is not None and len(episodes) > max_episodes:
        rng = np.random.default_rng(seed)
        episodes = np.sort(rng.choice(episodes, size=max_episodes, replace=False))
    horizon = store.frames - 1  # whole episodes: obs[0..T], action[1..T]
    parts: dict[str, list[Any]] = {"obs": [], "next_obs": [], "action": []}
    for start in range(0, len(episodes), block_episodes):
        block = episodes[start : start + block_episodes]
        window = store.gather(block, np.zeros(len(block), np.int64), horizon)
        obs = window[OBS][..., : spec.obs_dim]
        parts["obs"].append(obs[:, :-1].reshape(-1, spec.obs_dim))
        parts["next_obs"].append(obs[:, 1:].reshape(-1, spec.obs_dim))
        parts["action"].append(window[ACTION][..., : spec.action_dim].reshape(-1, spec.action_dim))
    log.info(
        "%s: %d episodes, %d transitions from %s",
        task,
        len(episodes),
        len(episodes) * horizon,
        source,
    )
    return tuple(np.concatenate(parts[k]) for k in ("obs", "next_obs", "action"))

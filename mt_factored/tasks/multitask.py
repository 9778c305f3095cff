"""Multi-task environment: one padded observation/action space over a task set."""

from __future__ import annotations

import numpy as np

from mt_factored.tasks.env import DMControlEnv
from mt_factored.tasks.sets import get_task_set
from mt_factored.tasks.spec import TaskSet


class MultiTaskEnv:
    """All tasks of a task set behind one interface, as TD-MPC2's multi-task wrapper.

    Observations are zero-padded at the end to `obs_dim`; `step` takes an `action_dim`
    vector and passes only the first `action_dims[task]` entries to the task (the
    rest are ignored). Sub-environments are built on first use, all with `seed`.

    Args:
        task_set: a `TaskSet` or the name of a known one.
        seed: seed of every sub-environment.
        obs_dim: padded observation size; defaults to the set's largest (24 for mt30).
            Pass the model's size when running a subset of the set it was trained on.
        action_dim: padded action size; defaults to the set's largest (6 for mt30).

    Attributes:
        task_set, current_task (task id of the last reset, None before), obs_dim,
        action_dim, max_episode_steps.
    """

    def __init__(
        self,
        task_set: TaskSet | str = "mt30",
        seed: int = 0,
        obs_dim: int | None = None,
        action_dim: int | None = None,
    ) -> None:
        self.task_set = get_task_set(task_set) if isinstance(task_set, str) else task_set
        self.seed = seed
        self.obs_dim = self.task_set.max_obs_dim if obs_dim is None else obs_dim
        self.action_dim = self.task_set.max_action_dim if action_dim is None else action_dim
        if (
            self.obs_dim < self.task_set.max_obs_dim
            or self.action_dim < self.task_set.max_action_dim
        ):
            raise ValueError(
                f"Padding ({self.obs_dim}, {self.action_dim}) is smaller than task set "
                f"{self.task_set.name!r} needs ({self.task_set.max_obs_dim}, {self.task_set.max_action_dim})."
            )
        self.max_episode_steps = max(self.task_set.episode_lengths)
        self.current_task: int | None = None
        self._envs: dict[int, DMControlEnv] = {}

    def env(self, task_idx: int) -> DMControlEnv:
        """The sub-environment of task `task_idx` (built on first use)."""
        if task_idx not in self._envs:
            self._envs[task_idx] = DMControlEnv(self.task_set[task_idx], self.seed)
        return self._envs[task_idx]

    @property
    def current_env(self) -> DMControlEnv:
        if self.current_task is None:
            raise RuntimeError("call reset(task_idx) first.")
        return self.env(self.current_task)

    @property
    def physics(self):
        """The dm_control physics of the current task."""
        return self.current_env.physics

    def _pad(self, obs: np.ndarray) -> np.ndarray:
        padded = np.zeros(self.obs_dim, dtype=np.float32)
        padded[: obs.shape[0]] = obs
        return padded

    def reset(self, task_idx: int) -> np.ndarray:
        """Starts an episode of task `task_idx`; returns the padded float32 [obs_dim] obs."""
        obs = self.env(task_idx).reset()
        self.current_task = task_idx
        return self._pad(obs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict]:
        """Steps the current task with the first `action_dims[task]` entries of `action`.

        Args:
            action: [action_dim] in [-1, 1]; entries past the task's action dim are ignored.

        Returns:
            (padded obs float32 [obs_dim], reward, done, info) as `DMControlEnv.step`.
        """
        action = np.asarray(action)
        if action.shape != (self.action_dim,):
            raise ValueError(f"action shape {action.shape}, expected ({self.action_dim},).")
        env = self.current_env
        obs, reward, done, info = env.step(action[: env.action_dim])
        return self._pad(obs), reward, done, info

    def render(self, height: int = 240, width: int = 320, camera_id: int = 0) -> np.ndarray:
        """An RGB frame of the current task, uint8 [height, width, 3]."""
        return self.current_env.render(height=height, width=width, camera_id=camera_id)

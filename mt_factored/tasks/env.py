"""Single-task dm_control environment with TD-MPC2's wrapper stack (numpy in, numpy out).

The stack, innermost first (spec section 3): dm_control env (stock time limit, never
terminates early) -> action rescale from [-1, 1] to the native bounds (the identity for
every mt30 task, whose bounds are [-1, 1]; quadruped's are not) -> flatten observation to
float32 + action repeat 2, reward = sum of both steps -> timeout after `episode_length`
agent steps.
"""

from __future__ import annotations

import numpy as np
from dm_control import suite

from mt_factored.tasks.custom import register_custom_tasks
from mt_factored.tasks.sets import get_task
from mt_factored.tasks.spec import TaskSpec

register_custom_tasks()

INFO = {"success": 0.0, "terminated": 0.0}


class DMControlEnv:
    """One dm_control task behind the TD-MPC2 interface.

    Args:
        spec: the task to build.
        seed: seed of the task's `numpy.random.RandomState` (initial states); the same
            seed gives the same sequence of episodes.

    Attributes:
        spec, obs_dim, action_dim, max_episode_steps, physics (the dm_control physics),
        task (the dm_control task).
    """

    def __init__(self, spec: TaskSpec, seed: int) -> None:
        self.spec = spec
        self.obs_dim = spec.obs_dim
        self.action_dim = spec.action_dim
        self.max_episode_steps = spec.episode_length
        self._env = suite.load(
            spec.domain, spec.task, task_kwargs={"random": seed}, visualize_reward=False
        )
        self._rescale = self._check_specs()
        self._t: int | None = None  # agent steps in the current episode; None: reset needed

    def _check_specs(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Fails loudly if dm_control's observation/action layout differs from the spec.

        Returns:
            (offset, scale) mapping [-1, 1] onto the native action bounds, or None when the
            bounds are [-1, 1] (no arithmetic, so those actions reach MuJoCo unchanged).
        """
        obs_spec = self._env.observation_spec()
        keys = tuple((key, int(np.prod(s.shape))) for key, s in obs_spec.items())
        if keys != self.spec.obs_keys:
            raise RuntimeError(
                f"{self.spec.name}: dm_control observations {keys} != spec {self.spec.obs_keys}."
            )
        act = self._env.action_spec()
        low, high = np.broadcast_to(act.minimum, act.shape), np.broadcast_to(act.maximum, act.shape)
        if act.shape != (self.action_dim,) or not np.all(
            np.isfinite(low) & np.isfinite(high) & (low < high)
        ):
            raise RuntimeError(
                f"{self.spec.name}: dm_control action spec {act} is not {self.action_dim} finite bounded dims."
            )
        if np.all(low == -1) and np.all(high == 1):
            return None
        scale = (high - low) / 2  # as dm_control's action_scale wrapper (TD-MPC2's rescale)
        return low + scale, scale

    @property
    def physics(self):
        """The dm_control `Physics` (state, model, rendering)."""
        return self._env.physics

    @property
    def task(self):
        """The dm_control `Task` (`get_reward(physics)`, `get_observation(physics)`)."""
        return self._env.task

    def _flatten(self, observation) -> np.ndarray:
        return np.concatenate(
            [
                np.asarray(observation[key], dtype=np.float32).ravel()
                for key, _ in self.spec.obs_keys
            ]
        )

    def reset(self) -> np.ndarray:
        """Starts an episode; returns the first observation, float32 [obs_dim]."""
        self._t = 0
        return self._flatten(self._env.reset().observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict]:
        """Applies `action` for `action_repeat` dm_control steps.

        Args:
            action: [action_dim] in [-1, 1]. Values outside are clipped (MuJoCo clamps
                controls to the actuator range anyway), then rescaled to the native bounds.

        Returns:
            (obs float32 [obs_dim], reward summed over the repeats, done, info). `done` is
            True after `max_episode_steps` agent steps; info holds success and terminated
            (both 0.0: no mt30 task terminates early).
        """
        if self._t is None:
            raise RuntimeError(f"{self.spec.name}: call reset() before step() (and after done).")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.action_dim,):
            raise ValueError(
                f"{self.spec.name}: action shape {action.shape}, expected ({self.action_dim},)."
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(f"{self.spec.name}: action has non-finite entries: {action}.")
        action = np.clip(action, -1.0, 1.0)
        if self._rescale is not None:
            offset, scale = self._rescale
            action = offset + scale * action
        reward = 0.0
        for _ in range(self.spec.action_repeat):
            time_step = self._env.step(action)
            reward += time_step.reward
            if time_step.last():
                break
        self._t += 1
        done = self._t >= self.max_episode_steps
        if time_step.last() and not done:
            raise RuntimeError(
                f"{self.spec.name}: the dm_control time limit ended the episode before "
                f"episode_length x action_repeat ({self.max_episode_steps} x "
                f"{self.spec.action_repeat}) steps."
            )
        if done:
            self._t = None
        return self._flatten(time_step.observation), float(reward), done, dict(INFO)

    def render(self, height: int = 240, width: int = 320, camera_id: int = 0) -> np.ndarray:
        """An RGB frame, uint8 [height, width, 3]; headless needs MUJOCO_GL=egl (or osmesa)."""
        return self.physics.render(height=height, width=width, camera_id=camera_id)


def make_env(name: str | TaskSpec, seed: int) -> DMControlEnv:
    """Builds the single-task environment `name` (e.g. "walker-walk") with `seed`."""
    spec = name if isinstance(name, TaskSpec) else get_task(name)
    return DMControlEnv(spec, seed)

"""Replay buffer of whole episodes for online TD-MPC2 training.

Episodes are stored back to back in the layout of the public TD-MPC2 chunks: an
episode of T steps takes T + 1 rows, row 0 holding the reset observation with a NaN
action and reward, and row t the action that led to `obs[t]` and the reward received
with it. A training window of horizon H starting at row s is
`obs[s..s+H]`, `action[s+1..s+H]`, `reward[s+1..s+H]`, and every window that fits
inside one episode is equally likely (TD-MPC2's uniform sub-trajectory sampling).

Batches are time-major like TD-MPC2's: `obs [H+1, B, obs_dim]`,
`action [H, B, action_dim]`, `reward [H, B]`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mt_factored.constants import ACTION, OBS, REWARD
from mt_factored.errors import InputError


class EpisodeReplay:
    """Whole episodes with uniform sampling of H-step windows.

    Args:
        obs_dim, action_dim: sizes of the stored observations and actions.
        capacity: most transitions kept; the oldest whole episodes are dropped
            beyond it (TD-MPC2 keeps 1M, more than any run here takes).
        horizon: H, the steps of a sampled window.
        batch_size: windows per batch.
        seed: seed of the sampler's own `numpy.random.Generator` (saved in
            `state_dict`, so a resumed run draws the same batches).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        capacity: int,
        horizon: int,
        batch_size: int,
        seed: int = 0,
    ) -> None:
        if capacity < 1 or horizon < 1 or batch_size < 1:
            raise InputError(
                f"capacity ({capacity}), horizon ({horizon}) and batch_size ({batch_size}) "
                "must be >= 1"
            )
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.capacity, self.horizon, self.batch_size = capacity, horizon, batch_size
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._rows = 0  # rows in use
        self._obs = np.zeros((0, obs_dim), np.float32)
        self._action = np.zeros((0, action_dim), np.float32)
        self._reward = np.zeros((0,), np.float32)
        self._lengths: list[int] = []  # steps (rows - 1) per stored episode
        self._starts = np.zeros((0,), np.int64)  # first rows of every valid window

    # ------------------------------------------------------------------ facts
    @property
    def num_episodes(self) -> int:
        return len(self._lengths)

    @property
    def num_transitions(self) -> int:
        """Stored steps (rows minus the reset rows)."""
        return int(sum(self._lengths))

    @property
    def num_windows(self) -> int:
        return len(self._starts)

    def __len__(self) -> int:
        return self.num_transitions

    # ------------------------------------------------------------------ writing
    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray) -> None:
        """Appends one episode: `obs [T+1, obs_dim]`, `action [T, A]`, `reward [T]`.

        `action[t]` and `reward[t]` belong to the step from `obs[t]` to `obs[t+1]`.
        """
        obs = np.asarray(obs, np.float32)
        action = np.asarray(action, np.float32)
        reward = np.asarray(reward, np.float32).reshape(-1)
        steps = len(action)
        if obs.shape != (steps + 1, self.obs_dim) or action.shape != (steps, self.action_dim):
            raise InputError(
                f"episode shapes obs {obs.shape}, action {action.shape}; expected "
                f"obs [T+1, {self.obs_dim}], action [T, {self.action_dim}]"
            )
        if reward.shape != (steps,):
            raise InputError(f"reward has {reward.shape[0]} entries for {steps} steps")
        if steps < self.horizon:
            raise InputError(f"an episode of {steps} steps is shorter than horizon {self.horizon}")
        self._grow(self._rows + steps + 1)
        rows = slice(self._rows, self._rows + steps + 1)
        self._obs[rows] = obs
        self._action[rows] = np.concatenate(
            [np.full((1, self.action_dim), np.nan, np.float32), action]
        )
        self._reward[rows] = np.concatenate([np.full(1, np.nan, np.float32), reward])
        starts = self._rows + np.arange(steps - self.horizon + 1, dtype=np.int64)
        self._starts = np.concatenate([self._starts, starts])
        self._rows += steps + 1
        self._lengths.append(steps)
        while self.num_transitions > self.capacity and self.num_episodes > 1:
            self._drop_oldest()

    def _grow(self, rows: int) -> None:
        if rows <= len(self._obs):
            return
        size = max(rows, 2 * len(self._obs), 1024)
        for name in ("_obs", "_action", "_reward"):
            old = getattr(self, name)
            new = np.zeros((size, *old.shape[1:]), np.float32)
            new[: self._rows] = old[: self._rows]
            setattr(self, name, new)

    def _drop_oldest(self) -> None:
        gone = self._lengths.pop(0) + 1
        keep = slice(gone, self._rows)
        for name in ("_obs", "_action", "_reward"):
            arr = getattr(self, name)
            arr[: self._rows - gone] = arr[keep].copy()
        self._rows -= gone
        self._starts = self._starts[self._starts >= gone] - gone

    # ------------------------------------------------------------------ reading
    def sample(
        self,
        device: torch.device | str = "cpu",
        batch_size: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """A batch of uniform windows, time-major, as float32 tensors.

        Args:
            batch_size: windows to draw (default: the buffer's ``batch_size``).
            rng: draw from this generator instead of the buffer's own sampler stream (a
                second learner, e.g. the online-distilled student, then leaves the expert's
                batches untouched).
        """
        if not len(self._starts):
            raise RuntimeError("the replay buffer holds no complete episode yet")
        rng = self._rng if rng is None else rng
        size = self.batch_size if batch_size is None else batch_size
        first = self._starts[rng.integers(len(self._starts), size=size)]
        rows = first[None, :] + np.arange(self.horizon + 1)[:, None]  # [H+1, B]
        out = {
            OBS: self._obs[rows],
            ACTION: self._action[rows[1:]],
            REWARD: self._reward[rows[1:]],
        }
        return {k: torch.from_numpy(v).to(device) for k, v in out.items()}

    def episodes(self) -> list[dict[str, np.ndarray]]:
        """The stored episodes in chunk layout (`obs [T+1]`, NaN `action[0]`/`reward[0]`)."""
        out, row = [], 0
        for steps in self._lengths:
            rows = slice(row, row + steps + 1)
            out.append(
                {
                    OBS: self._obs[rows].copy(),
                    ACTION: self._action[rows].copy(),
                    REWARD: self._reward[rows].copy(),
                }
            )
            row += steps + 1
        return out

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: the stored rows and the sampler state."""
        return {
            "obs": self._obs[: self._rows].copy(),
            "action": self._action[: self._rows].copy(),
            "reward": self._reward[: self._rows].copy(),
            "lengths": list(self._lengths),
            "starts": self._starts.copy(),
            "rng": self._rng.bit_generator.state,
            "sizes": (self.obs_dim, self.action_dim, self.horizon),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sizes = tuple(state["sizes"])
        if sizes != (self.obs_dim, self.action_dim, self.horizon):
            raise InputError(
                f"replay state holds (obs_dim, action_dim, horizon) = {sizes}, this buffer "
                f"has {(self.obs_dim, self.action_dim, self.horizon)}"
            )
        self._rows = len(state["obs"])
        self._obs = np.array(state["obs"], np.float32)
        self._action = np.array(state["action"], np.float32)
        self._reward = np.array(state["reward"], np.float32)
        self._lengths = list(state["lengths"])
        self._starts = np.array(state["starts"], np.int64)
        self._rng.bit_generator.state = state["rng"]

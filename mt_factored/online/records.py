"""What the online trainer writes besides weights: dataset chunks and CSV logs."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mt_factored.artifacts.atomic import atomic_write
from mt_factored.constants import ACTION, OBS, REWARD, TASK
from mt_factored.data.chunks import write_chunk
from mt_factored.errors import InputError

TRAIN_CSV, EVAL_CSV = "train.csv", "eval.csv"
"""The run folder's logs: one row per training episode, one per evaluation."""
TRAIN_FIELDS = (
    "step",
    "episode",
    "return",
    "wall_s",
    "updates",
    "consistency_loss",
    "reward_loss",
    "value_loss",
    "pi_loss",
    "pi_scale",
    "entropy",
    "grad_norm",
)
"""train.csv's columns (the online student's follow, `mt_factored.online.distill.train_fields`)."""
EVAL_FIELDS = ("step", "episode", "return", "return_std", "episodes", "wall_s")
"""eval.csv's columns."""


class CsvLog:
    """Append-only CSV with an `episode` column, cut back to a resumed state's rows."""

    def __init__(self, path: Path, fields: tuple[str, ...]) -> None:
        self.path, self.fields = path, fields

    def truncate(self, max_episode: int) -> None:
        """Keeps the rows with `episode <= max_episode` (drops rows written after the
        training state the run resumes from)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["episode"]) <= max_episode]

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, self.fields)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.path, write)

    def write(self, row: Mapping[str, Any]) -> None:
        """Appends one row (missing fields empty, floats with 6 significant digits)."""
        new = not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k, "")) for k in self.fields})


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


class ChunkRecorder:
    """Collects finished episodes and writes them as public TD-MPC2 chunks.

    Observations are zero-padded to the task set's observation size, actions to its
    action size; `action[0]` and `reward[0]` are NaN; `task` is the task's id in the
    task set (int32, as in the public mt30 chunks). Chunk k is `chunk_<k>.pt`.

    Args:
        folder: where the chunks go.
        task_id: the task's id in the task set whose padding applies.
        obs_dim, action_dim: padded sizes (24 and 6 for mt30).
        episodes_per_chunk: a chunk is written whenever this many episodes are pending.
    """

    def __init__(
        self, folder: Path, task_id: int, obs_dim: int, action_dim: int, episodes_per_chunk: int
    ) -> None:
        if episodes_per_chunk < 1:
            raise InputError(f"episodes_per_chunk must be >= 1, got {episodes_per_chunk}")
        self.folder, self.task_id = folder, task_id
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.episodes_per_chunk = episodes_per_chunk
        self.pending: list[dict[str, np.ndarray]] = []
        self.chunks_written = 0

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray) -> Path | None:
        """Adds an episode (`obs [T+1, o]`, `action [T, a]`, `reward [T]`, native sizes).

        Returns:
            The chunk written when this episode completes one, else None.
        """
        if obs.shape[1] > self.obs_dim or action.shape[1] > self.action_dim:
            raise InputError(
                f"episode obs/action sizes {obs.shape[1]}/{action.shape[1]} exceed the chunk "
                f"padding {self.obs_dim}/{self.action_dim}"
            )
        frames = len(obs)
        padded_obs = np.zeros((frames, self.obs_dim), np.float32)
        padded_obs[:, : obs.shape[1]] = obs
        padded_action = np.zeros((frames, self.action_dim), np.float32)
        padded_action[0] = np.nan
        padded_action[1:, : action.shape[1]] = action
        padded_reward = np.concatenate([[np.nan], reward]).astype(np.float32)
        self.pending.append({OBS: padded_obs, ACTION: padded_action, REWARD: padded_reward})
        if len(self.pending) >= self.episodes_per_chunk:
            return self.flush()
        return None

    def flush(self) -> Path | None:
        """Writes the pending episodes (if any) as the next chunk; returns its path."""
        if not self.pending:
            return None
        data = {
            k: torch.from_numpy(np.stack([e[k] for e in self.pending]))
            for k in (OBS, ACTION, REWARD)
        }
        data[TASK] = torch.full(data[REWARD].shape, self.task_id, dtype=torch.int32)
        path = write_chunk(self.folder / f"chunk_{self.chunks_written}.pt", data)
        self.chunks_written += 1
        self.pending = []
        return path

    def state_dict(self) -> dict[str, Any]:
        return {"pending": list(self.pending), "chunks_written": self.chunks_written}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pending = list(state["pending"])
        self.chunks_written = int(state["chunks_written"])

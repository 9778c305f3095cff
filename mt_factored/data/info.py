"""`dataset_summary`: tasks, episodes, transitions and reward statistics of a dataset."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from mt_factored.constants import REWARD
from mt_factored.data.chunks import read_chunk
from mt_factored.data.parquet import FRAME, TASK_ID, is_parquet_dataset, read_info
from mt_factored.data.shards import ShardedDataset, read_index
from mt_factored.data.store import chunk_paths
from mt_factored.data.validate import as_float32, to_numpy


def accumulate_reward_stats(
    per_task: dict[int, list[float]], ids: np.ndarray, reward: np.ndarray
) -> None:
    """Adds a block to task -> [episodes, count, sum, sumsq, min, max] of its rewards.

    Args:
        per_task: the running statistics, updated in place.
        ids: task id of each episode of the block, [E].
        reward: the block's rewards without the unused slot, float [E, frames - 1].
    """
    for task in np.unique(ids):
        r = reward[ids == task].astype(np.float64)
        s = per_task.setdefault(int(task), [0, 0, 0.0, 0.0, math.inf, -math.inf])
        s[0] += int((ids == task).sum())
        s[1:4] = [s[1] + r.size, s[2] + float(r.sum()), s[3] + float((r * r).sum())]
        s[4], s[5] = min(s[4], float(r.min())), max(s[5], float(r.max()))


def _per_task_from_index(index: dict[str, Any]) -> dict[int, list[float]]:
    """task -> [episodes, count, sum, sumsq, min, max] summed over shards."""
    out: dict[int, list[float]] = {}
    for shard in index["shards"]:
        for task, (count, total, sq, lo, hi) in shard["reward_stats"].items():
            s = out.setdefault(int(task), [0, 0, 0.0, 0.0, math.inf, -math.inf])
            s[0] += shard["episodes_per_task"][task]
            s[1:4] = [s[1] + count, s[2] + total, s[3] + sq]
            s[4], s[5] = min(s[4], lo), max(s[5], hi)
    return out


def _per_task_from_chunks(source: Any) -> tuple[dict[int, list[float]], dict[str, Any]]:
    out: dict[int, list[float]] = {}
    meta: dict[str, Any] = {"shards": 0}
    for path in chunk_paths(source):
        data = read_chunk(path)
        ids = data["task"][:, 0].numpy().astype(np.int64)
        array, dtype = to_numpy(data[REWARD])
        accumulate_reward_stats(out, ids, as_float32(array, dtype)[:, 1:])
        meta.update(
            frames=int(data["obs"].shape[1]),
            obs_dim=int(data["obs"].shape[2]),
            action_dim=int(data["action"].shape[2]),
            shards=meta["shards"] + 1,
            bytes=meta.get("bytes", 0) + path.stat().st_size,
        )
    return out, meta


def _per_task_from_parquet(folder: Path) -> tuple[dict[int, list[float]], dict[str, Any]]:
    """Reward statistics read from the Parquet files' columns (frame 0 left out)."""
    import pyarrow.parquet as pq  # lazy: pyarrow loads only for the Parquet format

    info = read_info(folder)
    out: dict[int, list[float]] = {}
    for name in sorted(info["files"]):
        source = pq.ParquetFile(folder / name)
        for batch in source.iter_batches(columns=[TASK_ID, FRAME, REWARD], batch_size=1 << 16):
            frame = batch.column(FRAME).to_numpy()
            ids = batch.column(TASK_ID).to_numpy().astype(np.int64)[frame > 0]
            reward = batch.column(REWARD).to_numpy(zero_copy_only=False)[frame > 0]
            for task in np.unique(ids):  # episodes are counted from the task table below
                r = reward[ids == task].astype(np.float64)
                s = out.setdefault(int(task), [0, 0, 0.0, 0.0, math.inf, -math.inf])
                s[1:4] = [s[1] + r.size, s[2] + float(r.sum()), s[3] + float((r * r).sum())]
                s[4], s[5] = min(s[4], float(r.min())), max(s[5], float(r.max()))
    for task in info["tasks"]:
        out[task["id"]][0] = task["episodes"]
    meta = {
        "kind": "parquet",
        "task_set": info.get("task_set"),
        "frames": info["frames"],
        "obs_dim": info["obs_dim"],
        "action_dim": info["action_dim"],
        "shards": len(info["files"]),
        "complete": True,
        "bytes": sum(f["bytes"] for f in info["files"].values()),
    }
    names = {t["id"]: t["name"] for t in info["tasks"]}
    return out, {**meta, "names": names}


def dataset_summary(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a prepared folder (from its index), a Parquet dataset folder (its columns)
    or of official chunks (read now).

    Returns:
        dict with `path`, `kind` ("shards", "parquet" or "chunks"), `task_set`, `frames`, `obs_dim`,
        `action_dim`, `episodes`, `transitions` (episodes x (frames - 1)), `shards`,
        `bytes`, and `tasks`: one dict per task with `id`, `name`, `episodes`,
        `transitions`, `reward_mean`, `reward_std`, `reward_min`, `reward_max`.
    """
    path = Path(path)
    names: list[str] | None = None
    if ShardedDataset.is_prepared(path):
        index = read_index(path)
        per_task = _per_task_from_index(index)
        names = index.get("task_names")
        meta = {
            "kind": "shards",
            "task_set": index.get("task_set"),
            "frames": index["frames"],
            "obs_dim": index["obs_dim"],
            "action_dim": index["action_dim"],
            "shards": len(index["shards"]),
            "complete": bool(index.get("complete")),
            "bytes": sum(f["bytes"] for s in index["shards"] for f in s["files"].values()),
        }
    elif is_parquet_dataset(path):
        per_task, meta = _per_task_from_parquet(path)
        by_id = meta.pop("names")
        names = [by_id.get(i, str(i)) for i in range(max(by_id, default=-1) + 1)]
    else:
        per_task, meta = _per_task_from_chunks(path)
        meta = {"kind": "chunks", "task_set": None, "complete": True, **meta}
    steps = meta["frames"] - 1
    tasks = []
    for task, (episodes, count, total, sq, lo, hi) in sorted(per_task.items()):
        mean = total / count
        tasks.append(
            {
                "id": task,
                "name": names[task] if names and task < len(names) else str(task),
                "episodes": int(episodes),
                "transitions": int(episodes) * steps,
                "reward_mean": mean,
                "reward_std": math.sqrt(max(sq / count - mean * mean, 0.0)),
                "reward_min": lo,
                "reward_max": hi,
            }
        )
    episodes = sum(t["episodes"] for t in tasks)
    return {
        "path": str(path),
        **meta,
        "episodes": episodes,
        "transitions": episodes * steps,
        "tasks": tasks,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table of `dataset_summary`."""
    head = (
        f"{'id':>3}  {'task':<26} {'episodes':>9} {'transitions':>12} {'r mean':>8} "
        f"{'r std':>8} {'r min':>8} {'r max':>8}"
    )
    files = {"shards": "shards", "parquet": "Parquet files"}.get(summary["kind"], "chunk files")
    lines = [
        f"{summary['path']} ({summary['kind']}, task set {summary['task_set']}, "
        f"{summary['frames']} frames/episode, obs {summary['obs_dim']}, action "
        f"{summary['action_dim']}, {summary['shards']} {files}, {summary['bytes'] / 1e9:.2f} GB"
        f"{'' if summary.get('complete', True) else ', INCOMPLETE: re-run prepare'})",
        head,
        "-" * len(head),
    ]
    for t in summary["tasks"]:
        lines.append(
            f"{t['id']:>3}  {t['name']:<26} {t['episodes']:>9,} {t['transitions']:>12,} "
            f"{t['reward_mean']:>8.3f} {t['reward_std']:>8.3f} {t['reward_min']:>8.3f} "
            f"{t['reward_max']:>8.3f}"
        )
    lines.append("-" * len(head))
    lines.append(f"{'':>3}  {'total':<26} {summary['episodes']:>9,} {summary['transitions']:>12,}")
    return "\n".join(lines)

"""Expert evaluation results kept across runs: the experts are fixed, so their dm_control
returns need not be recomputed every time a student is trained against them.

An entry holds one evaluation of the expert on a list of tasks. It is keyed by everything its returns depend on: each task's checkpoint
SHA-256, the tasks in order, the episode settings (episodes, env seeds, eval mode, episode length), the MPPI settings,
torch's thread count and the versions of torch, MuJoCo and dm_control (float reductions and
physics differ between them). Any change is a miss, and the expert is evaluated again.
Only returns are cached: latency is measured in every run, beside the student's.

The cache is one JSON file, written atomically; a run that misses adds its entries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from mt_factored.artifacts.atomic import write_json
from mt_factored.artifacts.checksums import sha256_file
from mt_factored.errors import InputError
from mt_factored.planning.base import MPPIConfig
from mt_factored.planning.episodes import EpisodeConfig, EpisodeStats

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CACHED = "cached"
"""``EpisodeStats.extra[CACHED]`` is True on results read from the cache."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


_ADDED_OFF = {"prior_weight": 0.0}
"""MPPI settings added after cache entries were written, at the value that turns them off: left
out of the key so the entries they cannot have changed stay valid; any other value is hashed."""


def _planning_facts(planning: MPPIConfig) -> dict[str, Any]:
    facts = dataclasses.asdict(planning)
    return {k: v for k, v in facts.items() if not (k in _ADDED_OFF and v == _ADDED_OFF[k])}


def cache_key(
    checkpoints: dict[str, str | Path], episodes: EpisodeConfig, planning: MPPIConfig
) -> tuple[str, dict[str, Any]]:
    """(hex key, the facts it hashes) of an expert's evaluation on the tasks of
    ``checkpoints`` ({task: checkpoint file}, in evaluation order)."""
    facts = {
        "tasks": list(checkpoints),
        "checkpoint_sha256": {task: sha256_file(path) for task, path in checkpoints.items()},
        "episodes": {
            k: v for k, v in dataclasses.asdict(episodes).items() if k != "latency_repeats"
        },
        "planning": _planning_facts(planning),
        "threads": torch.get_num_threads(),
        "versions": {p: _version(p) for p in ("torch", "mujoco", "dm_control")},
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return digest, facts


class ExpertResultCache:
    """One cache file (created on the first write).

    Args:
        path: the JSON file.
        refresh: ignore what is stored (every lookup misses; new results still overwrite).
    """

    def __init__(self, path: str | Path, refresh: bool = False) -> None:
        self.path, self.refresh = Path(path), refresh
        self._entries: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(
                f"expert result cache {self.path} is unreadable ({err})",
                "delete it (it is rebuilt) or set eval.expert_cache=null",
            ) from None
        if data.get("format_version") != FORMAT_VERSION:
            log.warning("%s has another format version; starting it afresh", self.path)
            return {}
        return dict(data.get("entries", {}))

    def get(self, key: str) -> dict[str, EpisodeStats] | None:
        """The stored evaluation ``{task: EpisodeStats}`` (marked ``extra["cached"]``), or None."""
        entry = None if self.refresh else self._entries.get(key)
        if entry is None:
            return None
        return {task: _stats_from(task, row) for task, row in entry["results"].items()}

    def put(self, key: str, results: dict[str, EpisodeStats], facts: dict[str, Any]) -> None:
        """Store an evaluation (and write the file)."""
        self._entries[key] = {
            "results": {task: _stats_row(stats) for task, stats in results.items()},
            "key": facts,
        }
        on_disk = self._read()  # keep entries another run added meanwhile
        on_disk.update(self._entries)
        self._entries = on_disk
        write_json(self.path, {"format_version": FORMAT_VERSION, "entries": self._entries})


def _stats_row(stats: EpisodeStats) -> dict[str, Any]:
    budget = stats.extra.get("budget")
    return {
        "returns": list(stats.returns),
        "plan_ms_per_call": stats.plan_ms_per_call,
        "envs_per_call": stats.envs_per_call,
        "plan_ms_single_env": stats.plan_ms_single_env,
        "budget": list(budget) if budget is not None else None,
    }


def _stats_from(task: str, row: dict[str, Any]) -> EpisodeStats:
    extra: dict[str, Any] = {CACHED: True}
    if row.get("budget") is not None:
        extra["budget"] = tuple(row["budget"])
    return EpisodeStats(
        task=task,
        returns=[float(r) for r in row["returns"]],
        plan_ms_per_call=float(row["plan_ms_per_call"]),
        envs_per_call=int(row["envs_per_call"]),
        plan_ms_single_env=row.get("plan_ms_single_env"),
        extra=extra,
    )

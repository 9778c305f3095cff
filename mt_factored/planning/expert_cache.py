"""Expert evaluation results kept across runs: the experts are fixed, so their dm_control
returns need not be recomputed every time a student is trained against them.

An entry is keyed by everything its returns depend on: the checkpoint's SHA-256, the task,
the episode settings (episodes, env seeds, eval mode, episode length), the MPPI settings,
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


def cache_key(
    checkpoint: str | Path, task: str, episodes: EpisodeConfig, planning: MPPIConfig
) -> tuple[str, dict[str, Any]]:
    """(hex key, the facts it hashes) of one expert's results on one task."""
    facts = {
        "checkpoint_sha256": sha256_file(checkpoint),
        "task": task,
        "episodes": {
            k: v for k, v in dataclasses.asdict(episodes).items() if k != "latency_repeats"
        },
        "planning": dataclasses.asdict(planning),
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

    def get(self, key: str) -> EpisodeStats | None:
        entry = None if self.refresh else self._entries.get(key)
        if entry is None:
            return None
        stats = EpisodeStats(
            task=entry["task"],
            returns=[float(r) for r in entry["returns"]],
            plan_ms_per_call=float(entry["plan_ms_per_call"]),
            envs_per_call=int(entry["envs_per_call"]),
            extra=dict(entry.get("extra", {})),
        )
        if "budget" in stats.extra:
            stats.extra["budget"] = tuple(stats.extra["budget"])
        stats.extra[CACHED] = True
        return stats

    def put(self, key: str, stats: EpisodeStats, facts: dict[str, Any]) -> None:
        extra = {k: v for k, v in stats.extra.items() if k in ("budget",)}
        self._entries[key] = {
            "task": stats.task,
            "returns": list(stats.returns),
            "plan_ms_per_call": stats.plan_ms_per_call,
            "envs_per_call": stats.envs_per_call,
            "extra": {k: list(v) if isinstance(v, tuple) else v for k, v in extra.items()},
            "key": facts,
        }
        on_disk = self._read()  # keep entries another run added meanwhile
        on_disk.update(self._entries)
        self._entries = on_disk
        write_json(self.path, {"format_version": FORMAT_VERSION, "entries": self._entries})

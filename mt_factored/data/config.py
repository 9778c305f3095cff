"""The schema of ``python -m mt_factored.data prepare | info | verify``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING


@dataclass
class PrepareConfig:
    """``python -m mt_factored.data prepare``: official chunks -> verified, checksummed shards
    (resumable: re-run the same command after an interruption)."""

    source: Any = "hub"
    """hub (download ``<task_set>/chunk_*.pt`` of nicklashansen/tdmpc2 into the HF cache), a
    folder of chunk files, one file, or a list of files."""
    out: str = "data/mt30"
    """Output folder (index.json + .npy shards)."""
    task_set: str | None = "mt30"
    """Task set of the data: checks task ids, dims and action padding, and names the tasks
    (null: structural checks only)."""
    shard_episodes: int = 50_000
    """Episodes per shard (the unit of resume and rebuild)."""
    block_episodes: int = 512
    """Episodes copied at a time (bounds memory)."""
    verify: bool = True
    """Re-check recorded shards' checksums (reads them) before skipping them."""
    revision: str | None = None
    """Hub revision of source=hub (branch, tag or commit; null: main)."""
    cache_dir: str | None = None
    """HF cache folder of source=hub (null: HF_HOME / HF_HUB_CACHE)."""
    progress: bool = True
    """Progress bars (bytes, speed, ETA)."""


@dataclass
class DatasetPathConfig:
    """``python -m mt_factored.data info | verify PATH``: a prepared folder or chunk files."""

    path: Any = MISSING
    """The dataset: a prepared shard folder, or official chunk file(s) / a folder of them
    (``info`` reads both; ``verify`` a prepared folder). A bare PATH argument sets it."""

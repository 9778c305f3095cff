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


@dataclass
class ExportConfig:
    """``python -m mt_factored.data export``: a dataset as a Hub dataset folder (Parquet files
    by task, a dataset card, meta/info.json), or such a folder back as official chunks
    (resumable: re-run the same command after an interruption; finished files are kept)."""

    source: Any = MISSING
    """What to export: a prepared shard folder, official chunk file(s) or a folder of them
    (format=parquet); a dataset folder or hf:ORG/NAME[@revision] (format=chunks)."""
    out: str = MISSING
    """The folder written."""
    format: str = "parquet"
    """parquet (a Hub dataset folder) or chunks (official chunk files, lossless)."""
    task_set: str | None = "auto"
    """Task set of the data's task ids: names the tasks and gives the valid-action masks
    (auto: the one prepared shards record, else mt30; null: the source's names, every action
    entry valid)."""
    file_episodes: int = 10_000
    """Episodes per Parquet file at most (a task with more gets numbered files)."""
    row_group_episodes: int = 16
    """Episodes per Parquet row group."""
    compression: str = "zstd"
    """Parquet compression codec (zstd, snappy, gzip, none)."""
    license: str = "mit"
    """Licence in the dataset card (the public TD-MPC2 data is MIT)."""
    progress: bool = True
    """Progress bar (episodes, rate, ETA)."""

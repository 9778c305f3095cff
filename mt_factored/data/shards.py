"""Prepared shards on disk: index.json, checksums, and `ShardedDataset` to read them.

A prepared dataset is a folder (written by `prepare`):

    index.json                 format_version, task set, dims, dtypes, shards (see prepare.py)
    <shard>.obs.npy            [E, F, obs_dim]     source dtype (bfloat16 kept as uint16 bits)
    <shard>.action.npy         [E, F, action_dim]  idem
    <shard>.reward.npy         [E, F]              idem
    <shard>.task.npy           [E] int32
    <shard>.terminated.npy     [E, F]              only when the source has it

Plain .npy files: `np.load(path, mmap_mode="r")` opens any of them for inspection; the
training stream reads windows with positional reads (see `store.py`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mt_factored.artifacts.atomic import write_json
from mt_factored.artifacts.checksums import CHECKSUM, sha256_file
from mt_factored.constants import SHARD_FORMAT_VERSION, SHARD_INDEX_NAME, TASK
from mt_factored.data.store import EpisodeStore
from mt_factored.errors import MismatchError, MissingError


class ShardError(MismatchError, RuntimeError):
    """A prepared dataset that cannot be used as it is (incomplete, corrupt, other version)."""


def read_index(root: str | os.PathLike) -> dict[str, Any] | None:
    """The index of a prepared dataset, or None when there is none."""
    path = Path(root) / SHARD_INDEX_NAME
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ShardError(
            f"{path} is truncated or corrupt ({err})",
            "re-run the same `python -m mt_factored.data prepare ...` command into a new out= "
            "folder (or restore the file)",
        ) from err
    version = index.get("format_version")
    if version != SHARD_FORMAT_VERSION:
        raise ShardError(
            f"{path}: shard format_version {version}, this code reads "
            f"{SHARD_FORMAT_VERSION}; re-run prepare into a new folder"
        )
    return index


def write_index(root: str | os.PathLike, index: dict[str, Any]) -> None:
    """Writes index.json atomically."""
    write_json(Path(root) / SHARD_INDEX_NAME, index, indent=1)


def verify_shard(root: str | os.PathLike, shard: dict[str, Any]) -> list[str]:
    """Names of the shard's files that are missing or whose size or checksum differ."""
    bad = []
    for entry in shard["files"].values():
        path = Path(root) / entry["file"]
        if (
            not path.is_file()
            or path.stat().st_size != entry["bytes"]
            or sha256_file(path) != entry[CHECKSUM]
        ):
            bad.append(entry["file"])
    return bad


def npy_data_offset(path: Path) -> tuple[int, np.dtype, tuple[int, ...]]:
    """(byte offset of the data, dtype, shape) of a C-order .npy file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }[version]
        shape, fortran, dtype = read_header(f)
        if fortran:
            raise ShardError(f"{path}: expected a C-order array")
        return f.tell(), dtype, shape


class ShardedDataset(EpisodeStore):
    """A prepared dataset (see `prepare`): an `EpisodeStore` over its .npy shards.

    Args:
        path: the folder holding index.json.
        verify: recompute every file's checksum now (reads the whole dataset); otherwise
            only file sizes and .npy headers are checked.
    """

    def __init__(self, path: str | os.PathLike, verify: bool = False) -> None:
        self.path = Path(path)
        index = read_index(self.path)
        if index is None:
            raise MissingError(
                f"{self.path} holds no {SHARD_INDEX_NAME}; run "
                f"`python -m mt_factored.data prepare source=... out={self.path}`"
            )
        if not index.get("complete"):
            raise ShardError(
                f"{self.path}: prepare has not finished; re-run the same prepare "
                "command to resume it"
            )
        self.index = index
        regions, tasks = [], []
        for shard in index["shards"]:
            if verify and (bad := verify_shard(self.path, shard)):
                raise ShardError(
                    f"{self.path}: checksum mismatch in {bad}; re-run prepare to rebuild"
                )
            region = {}
            for key, entry in shard["files"].items():
                file = self.path / entry["file"]
                if not file.is_file() or file.stat().st_size != entry["bytes"]:
                    raise ShardError(
                        f"{file}: missing or of the wrong size; re-run prepare to rebuild it"
                    )
                offset, _, shape = npy_data_offset(file)
                if shape[0] != shard["episodes"]:
                    raise ShardError(f"{file}: {shape[0]} episodes, index says {shard['episodes']}")
                region[key] = (str(file), offset)
            tasks.append(np.load(region.pop(TASK)[0]))
            regions.append(region)
        super().__init__(
            regions=regions,
            episodes=[s["episodes"] for s in index["shards"]],
            dtypes=index["dtypes"],
            frames=index["frames"],
            obs_dim=index["obs_dim"],
            action_dim=index["action_dim"],
            episode_tasks=np.concatenate(tasks) if tasks else np.zeros(0, np.int64),
            task_names=index.get("task_names"),
        )

    @staticmethod
    def is_prepared(path: str | os.PathLike) -> bool:
        """True when `path` is a folder with an index.json."""
        return (Path(path) / SHARD_INDEX_NAME).is_file()

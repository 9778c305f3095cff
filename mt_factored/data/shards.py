"""Prepared shards on disk, and the episode store the window sampler reads from.

A prepared dataset is a directory:

    index.json                 format_version, task set, dims, dtypes, shards (see prepare.py)
    <shard>.obs.npy            [E, F, obs_dim]     source dtype (bfloat16 kept as uint16 bits)
    <shard>.action.npy         [E, F, action_dim]  idem
    <shard>.reward.npy         [E, F]              idem
    <shard>.task.npy           [E] int32
    <shard>.terminated.npy     [E, F]              only when the source has it

`EpisodeStore` holds episodes as numpy arrays (memory-mapped shards, or official chunks
read whole) and gathers batches of windows with vectorised fancy indexing. Memory maps
are opened lazily in each process, advised MADV_RANDOM (no read-ahead or fault-around on
random windows) and dropped from the process with MADV_DONTNEED by `release()`: the
pages stay in the page cache, but resident memory does not grow with the dataset.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mt_factored.constants import (
    ACTION,
    OBS,
    REWARD,
    SHARD_FORMAT_VERSION,
    SHARD_INDEX_NAME,
    TASK,
    TERMINATED,
)
from mt_factored.data.validate import NUMPY_DTYPES, TORCH_DTYPES, ChunkFormatError, as_float32

FRAME_KEYS = (OBS, ACTION, REWARD, TERMINATED)  # per-frame arrays; TASK is per episode
CHECKSUM = "sha256"
_READ_BLOCK = 16 << 20


class ShardError(RuntimeError):
    """A prepared dataset that cannot be used as it is (incomplete, corrupt, other version)."""


def file_checksum(path: Path) -> str:
    """Streaming sha256 of a file."""
    digest = hashlib.new(CHECKSUM)
    with open(path, "rb") as f:
        while block := f.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def read_index(root: Path) -> dict[str, Any] | None:
    """The index of a prepared dataset, or None when there is none."""
    path = Path(root) / SHARD_INDEX_NAME
    if not path.is_file():
        return None
    index = json.loads(path.read_text())
    version = index.get("format_version")
    if version != SHARD_FORMAT_VERSION:
        raise ShardError(f"{path}: shard format_version {version}, this code reads "
                         f"{SHARD_FORMAT_VERSION}; re-run prepare into a new folder")
    return index


def write_index(root: Path, index: dict[str, Any]) -> None:
    """Writes index.json atomically (temp file + fsync + rename)."""
    path = Path(root) / SHARD_INDEX_NAME
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(index, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def verify_shard(root: Path, shard: dict[str, Any]) -> list[str]:
    """Names of the shard's files that are missing or whose size or checksum differ."""
    bad = []
    for entry in shard["files"].values():
        path = Path(root) / entry["file"]
        if (not path.is_file() or path.stat().st_size != entry["bytes"]
                or file_checksum(path) != entry[CHECKSUM]):
            bad.append(entry["file"])
    return bad


class EpisodeStore:
    """Episodes in shards of numpy arrays, and the gather of window batches.

    Args:
        shards: one mapping per shard: key -> array (`obs` [E,F,obs], `action` [E,F,act],
            `reward` [E,F], `task` [E], optional `terminated` [E,F]), or a zero-argument
            callable returning that mapping (opened lazily, once per process).
        episodes: episodes per shard.
        dtypes: logical dtype name of each frame key per shard (e.g. "bfloat16").
        frames, obs_dim, action_dim: sizes shared by all shards.
        episode_tasks: task id of every episode, [sum(episodes)].
        task_names: names by task id, if known.
    """

    def __init__(
        self,
        shards: Sequence[Any],
        episodes: Sequence[int],
        dtypes: Sequence[dict[str, str]],
        frames: int,
        obs_dim: int,
        action_dim: int,
        episode_tasks: np.ndarray,
        task_names: Sequence[str] | None = None,
    ) -> None:
        self._openers = list(shards)
        self._arrays: list[dict[str, np.ndarray] | None] = [None] * len(self._openers)
        self.dtypes = list(dtypes)
        self.frames, self.obs_dim, self.action_dim = int(frames), int(obs_dim), int(action_dim)
        self.offsets = np.concatenate([[0], np.cumsum(episodes)]).astype(np.int64)
        self.episode_tasks = np.asarray(episode_tasks, dtype=np.int64)
        self.task_names = list(task_names) if task_names is not None else None
        self.has_terminated = bool(self.dtypes) and all(TERMINATED in d for d in self.dtypes)

    @property
    def num_episodes(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_shards(self) -> int:
        return len(self._openers)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # arrays are reopened in the receiving process
        state["_arrays"] = [None] * len(self._openers)
        return state

    def arrays(self, shard: int) -> dict[str, np.ndarray]:
        """The arrays of one shard (opened on first use in this process)."""
        arrays = self._arrays[shard]
        if arrays is None:
            opener = self._openers[shard]
            arrays = dict(opener() if callable(opener) else opener)
            for value in arrays.values():
                _madvise(value, mmap.MADV_RANDOM)
            self._arrays[shard] = arrays
        return arrays

    def release(self) -> None:
        """Drops this process's mapped pages of every open shard (they stay in page cache)."""
        for arrays in self._arrays:
            for value in (arrays or {}).values():
                _madvise(value, mmap.MADV_DONTNEED)

    def gather(self, episodes: np.ndarray, starts: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
        """Windows `obs[t..t+H]`, `action[t+1..t+H]`, `reward[t+1..t+H]`, `task` as float32/int64.

        Args:
            episodes: global episode index of each window, [B].
            starts: start frame t of each window, [B], with t + horizon < frames.
            horizon: H.

        Returns:
            `obs` [B, H+1, obs_dim], `action` [B, H, action_dim], `reward` [B, H] float32,
            `task` [B] int64 (and `terminated` [B, H] float32 when every shard has it).
        """
        batch = len(episodes)
        out = {
            OBS: np.empty((batch, horizon + 1, self.obs_dim), np.float32),
            ACTION: np.empty((batch, horizon, self.action_dim), np.float32),
            REWARD: np.empty((batch, horizon), np.float32),
            TASK: self.episode_tasks[episodes],
        }
        if self.has_terminated:
            out[TERMINATED] = np.empty((batch, horizon), np.float32)
        shard_of = np.searchsorted(self.offsets, episodes, side="right") - 1
        steps = np.arange(horizon + 1, dtype=np.int64)
        for shard in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == shard) if self.num_shards > 1 else slice(None)
            arrays, dtypes = self.arrays(int(shard)), self.dtypes[int(shard)]
            local = episodes[sel] - self.offsets[shard]
            rows = (local * self.frames + starts[sel])[:, None] + steps  # [n, H+1] flat frames
            for key in out:
                if key == TASK:
                    continue
                array = arrays[key]
                flat = array.reshape(array.shape[0] * array.shape[1], -1)
                idx = rows if key == OBS else rows[:, 1:]
                values = as_float32(np.take(flat, idx.ravel(), axis=0), dtypes[key])
                out[key][sel] = values.reshape(out[key][sel].shape)
        return out


def _madvise(array: np.ndarray, advice: int) -> None:
    mm = getattr(array, "_mmap", None)
    base = array
    while mm is None and getattr(base, "base", None) is not None:
        base = base.base
        mm = base if isinstance(base, mmap.mmap) else getattr(base, "_mmap", None)
    if isinstance(mm, mmap.mmap) and not mm.closed:
        mm.madvise(advice)


def _shard_opener(root: Path, files: dict[str, dict[str, Any]]):
    def open_shard() -> dict[str, np.ndarray]:
        return {key: np.load(root / entry["file"], mmap_mode="r") for key, entry in files.items()}

    return open_shard


class ShardedDataset(EpisodeStore):
    """A prepared dataset (see `prepare`), memory-mapped.

    Args:
        path: the folder holding index.json.
        verify: recompute every file's checksum now (reads the whole dataset).
    """

    def __init__(self, path: str | os.PathLike, verify: bool = False) -> None:
        self.path = Path(path)
        index = read_index(self.path)
        if index is None:
            raise FileNotFoundError(f"{self.path} holds no {SHARD_INDEX_NAME}; run "
                                    f"`python -m mt_factored.data prepare source=... out={self.path}`")
        if not index.get("complete"):
            raise ShardError(f"{self.path}: prepare has not finished; re-run the same prepare "
                             "command to resume it")
        self.index = index
        shards = index["shards"]
        for shard in shards:
            for entry in shard["files"].values():
                file = self.path / entry["file"]
                if not file.is_file() or file.stat().st_size != entry["bytes"]:
                    raise ShardError(f"{file}: missing or of the wrong size; re-run prepare to rebuild it")
            if verify and (bad := verify_shard(self.path, shard)):
                raise ShardError(f"{self.path}: checksum mismatch in {bad}; re-run prepare to rebuild")
        tasks = [np.load(self.path / s["files"][TASK]["file"]) for s in shards]
        super().__init__(
            shards=[_shard_opener(self.path, s["files"]) for s in shards],
            episodes=[s["episodes"] for s in shards],
            dtypes=[s["dtypes"] for s in shards],
            frames=index["frames"],
            obs_dim=index["obs_dim"],
            action_dim=index["action_dim"],
            episode_tasks=np.concatenate(tasks) if tasks else np.zeros(0, np.int64),
            task_names=index.get("task_names"),
        )

    @classmethod
    def is_prepared(cls, path: str | os.PathLike) -> bool:
        return (Path(path) / SHARD_INDEX_NAME).is_file()


def chunk_paths(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Chunk files of a source: a file, a folder of `chunk_*.pt` / `*.pt`, or a list."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            files = sorted(path.glob("*.pt"), key=_chunk_sort_key)
            if not files:
                raise FileNotFoundError(f"{path} holds no *.pt chunk files")
            return files
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        return [path]
    files = [Path(p) for p in source]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"chunk file {file} does not exist")
    return files


def _chunk_sort_key(path: Path) -> tuple:
    stem = path.stem
    digits = stem.rsplit("_", 1)[-1]
    return (stem.rsplit("_", 1)[0], int(digits)) if digits.isdigit() else (stem, -1)


def store_from_chunks(
    source: str | os.PathLike | Sequence[str | os.PathLike], task_names: Sequence[str] | None = None
) -> EpisodeStore:
    """An `EpisodeStore` straight over official chunks (no conversion; small local sets).

    Each chunk is read with `read_chunk` (file-backed tensors where the file allows it).
    """
    from mt_factored.data.chunks import read_chunk

    shards, episodes, dtypes, tasks, dims = [], [], [], [], None
    for path in chunk_paths(source):
        data = read_chunk(path)
        arrays, names = {}, {}
        for key in FRAME_KEYS:
            if key in data:
                tensor = data[key]
                names[key] = str(tensor.dtype).removeprefix("torch.")
                if names[key] == "bfloat16":
                    tensor = tensor.view(TORCH_DTYPES["int16"])
                arrays[key] = tensor.numpy()
        frames = tuple(data[OBS].shape[1:2]) + (data[OBS].shape[2], data[ACTION].shape[2])
        if dims is not None and frames != dims:
            raise ChunkFormatError(path, OBS, f"(frames, obs_dim, action_dim) = {dims} as the "
                                   "first chunk", frames)
        dims = frames
        arrays[TASK] = data[TASK][:, 0].numpy().astype(np.int32)
        shards.append(arrays)
        episodes.append(len(arrays[TASK]))
        dtypes.append(names)
        tasks.append(arrays[TASK])
    return EpisodeStore(shards, episodes, dtypes, *dims, np.concatenate(tasks), task_names)


assert set(NUMPY_DTYPES) >= {TORCH_DTYPES["bfloat16"]}  # bf16 bits are held as uint16

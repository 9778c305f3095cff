"""`EpisodeStore`: episodes in files, and the gather of window batches with positional reads.

Every array of every shard is a region of a file (a .npy after its header, or a tensor
record inside an official chunk): `(path, byte offset)` plus a dataset-wide dtype and
row shape. A window's frames are contiguous in each array, so a batch is one `os.pread`
per window and key, joined and viewed as one numpy array.

Why positional reads rather than memory maps: a mapped page counts as resident memory
of the reading process, and the kernel maps whole page-cache folios (up to 2 MB here)
around each random touch, so a process sampling random windows from a memory map ends
up "resident" in most of the dataset. `pread` copies just the window's bytes out of the
page cache: resident memory stays flat whatever the dataset size, and the page cache
still serves repeated reads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from mt_factored.constants import ACTION, OBS, REWARD, TASK, TERMINATED
from mt_factored.data.chunks import ChunkFile
from mt_factored.data.validate import (
    DTYPE_NAMES,
    NUMPY_DTYPES,
    TORCH_DTYPES,
    ChunkFormatError,
    as_float32,
    validate_block,
    validate_header,
)
from mt_factored.errors import InputError, MissingError, NonFiniteError

FRAME_KEYS = (OBS, ACTION, REWARD, TERMINATED)  # per-frame arrays; TASK is per episode


class EpisodeStore:
    """Episodes stored in file regions, read window by window.

    Args:
        regions: per shard, key -> (file path, byte offset of element [0, 0, ...]) for
            every key of `dtypes`; arrays are C-contiguous [episodes, frames, ...].
        episodes: episodes per shard.
        dtypes: dataset-wide logical dtype name of each frame key ("float32", "bfloat16", ...).
        frames, obs_dim, action_dim: sizes shared by all shards.
        episode_tasks: task id of every episode, [sum(episodes)], in the store's order.
        task_names: names by task id, if known.
        order: where episode i of the store lies among the shards' episodes (concatenated
            in shard order), [sum(episodes)]; None: in that order. A store over files that
            group episodes differently from their source (Parquet files per task) keeps the
            source's episode order, and with it the sampler's windows.
    """

    def __init__(
        self,
        regions: Sequence[dict[str, tuple[str, int]]],
        episodes: Sequence[int],
        dtypes: dict[str, str],
        frames: int,
        obs_dim: int,
        action_dim: int,
        episode_tasks: np.ndarray,
        task_names: Sequence[str] | None = None,
        order: np.ndarray | None = None,
    ) -> None:
        self.dtypes = dict(dtypes)
        self.frames, self.obs_dim, self.action_dim = int(frames), int(obs_dim), int(action_dim)
        self.offsets = np.concatenate([[0], np.cumsum(episodes)]).astype(np.int64)
        self.episode_tasks = np.asarray(episode_tasks, dtype=np.int64)
        if len(self.episode_tasks) != self.offsets[-1]:
            raise InputError("episode_tasks must hold one task id per episode")
        self.task_names = list(task_names) if task_names is not None else None
        self.order = None if order is None else np.asarray(order, dtype=np.int64)
        if self.order is not None and len(self.order) != self.offsets[-1]:
            raise InputError("order must hold one position per episode")
        self.keys = [k for k in FRAME_KEYS if k in self.dtypes]
        self._paths = {k: [r[k][0] for r in regions] for k in self.keys}
        self._starts = {k: np.array([r[k][1] for r in regions], dtype=np.int64) for k in self.keys}
        width = {OBS: self.obs_dim, ACTION: self.action_dim, REWARD: 1, TERMINATED: 1}
        self._shape = {k: (width[k],) if k in (OBS, ACTION) else () for k in self.keys}
        self._row_bytes = {
            k: width[k] * NUMPY_DTYPES[TORCH_DTYPES[self.dtypes[k]]].itemsize for k in self.keys
        }
        self._fds: dict[str, np.ndarray] | None = None
        self._pid = -1

    @property
    def num_episodes(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_shards(self) -> int:
        return len(self.offsets) - 1

    @property
    def has_terminated(self) -> bool:
        return TERMINATED in self.dtypes

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # file descriptors are reopened in the receiving process
        state["_fds"], state["_pid"] = None, -1
        return state

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Closes this process's file descriptors (reopened on the next gather)."""
        if getattr(self, "_fds", None) is not None and self._pid == os.getpid():
            for fd in {int(fd) for fds in self._fds.values() for fd in fds}:
                os.close(fd)
        self._fds = None

    def _descriptors(self) -> dict[str, np.ndarray]:
        if self._fds is None or self._pid != os.getpid():  # first use, or a forked worker
            opened: dict[str, int] = {}  # one descriptor per file (chunks hold every key)
            for path in {p for k in self.keys for p in self._paths[k]}:
                opened[path] = os.open(path, os.O_RDONLY)
            self._fds = {k: np.array([opened[p] for p in self._paths[k]]) for k in self.keys}
            self._pid = os.getpid()
        return self._fds

    def window_shapes(self, batch: int, horizon: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the float32 arrays `gather` returns for `batch` windows."""
        lengths = {OBS: horizon + 1, ACTION: horizon, REWARD: horizon, TERMINATED: horizon}
        return {k: (batch, lengths[k], *self._shape[k]) for k in self.keys}

    def gather(
        self,
        episodes: np.ndarray,
        starts: np.ndarray,
        horizon: int,
        out: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Windows `obs[t..t+H]`, `action[t+1..t+H]`, `reward[t+1..t+H]`, `task`.

        Args:
            episodes: global episode index of each window, [B].
            starts: start frame t of each window, [B], with t + horizon < frames.
            horizon: H.
            out: float32 arrays of `window_shapes(B, H)` to fill (e.g. views of one buffer).

        Returns:
            `obs` [B, H+1, obs_dim], `action` [B, H, action_dim], `reward` [B, H] float32,
            `task` [B] int64 (and `terminated` [B, H] float32 when the data has it).
        """
        episodes, starts = np.asarray(episodes, np.int64), np.asarray(starts, np.int64)
        shapes = self.window_shapes(len(episodes), horizon)
        out = (
            dict(out)
            if out is not None
            else {k: np.empty(v, np.float32) for k, v in shapes.items()}
        )
        fds = self._descriptors()
        episode_ids, episodes = episodes, self.physical(episodes)
        shard = self.shard_of(episodes)
        frame = (episodes - self.offsets[shard]) * self.frames + starts  # within its shard
        for key in self.keys:
            first, length = (0, horizon + 1) if key == OBS else (1, horizon)
            size = self._row_bytes[key] * length
            where = (self._starts[key][shard] + (frame + first) * self._row_bytes[key]).tolist()
            data = b"".join(map(os.pread, fds[key][shard].tolist(), repeat(size), where))
            if len(data) != size * len(episodes):
                raise OSError(f"short read from {key} files (truncated shard?); re-run prepare")
            dtype = self.dtypes[key]
            array = np.frombuffer(data, NUMPY_DTYPES[TORCH_DTYPES[dtype]])
            out[key][...] = as_float32(array, dtype).reshape(shapes[key])
            if not np.isfinite(out[key]).all():
                self._refuse_non_finite(key, out[key], episodes, starts, shard, first)
        out[TASK] = self.episode_tasks[episode_ids]
        return out

    def physical(self, episodes: np.ndarray) -> np.ndarray:
        """Positions of the store's episodes `episodes` among the shards' episodes."""
        return episodes if self.order is None else self.order[episodes]

    def read_episodes(self, episodes: Sequence[int]) -> dict[str, np.ndarray]:
        """Whole episodes, every frame (the unused slot of frame 0 included), as stored.

        Args:
            episodes: the store's episode indices.

        Returns:
            key -> [len(episodes), frames, ...] arrays in the stored dtype (bfloat16 as
            uint16 bits), for every key of `dtypes`.
        """
        episodes = self.physical(np.asarray(episodes, np.int64))
        fds = self._descriptors()
        shard = np.searchsorted(self.offsets, episodes, side="right") - 1
        local = episodes - self.offsets[shard]
        out = {}
        for key in self.keys:
            size = self._row_bytes[key] * self.frames
            where = (self._starts[key][shard] + local * size).tolist()
            data = b"".join(map(os.pread, fds[key][shard].tolist(), repeat(size), where))
            if len(data) != size * len(episodes):
                raise OSError(f"short read from {key} files (truncated shard?); re-run prepare")
            dtype = NUMPY_DTYPES[TORCH_DTYPES[self.dtypes[key]]]
            shape = (len(episodes), self.frames, *self._shape[key])
            out[key] = np.frombuffer(data, dtype).reshape(shape)
        return out

    def shard_of(self, episodes: np.ndarray) -> np.ndarray:
        """Shard index of each physical episode position (see :meth:`physical`)."""
        return np.searchsorted(self.offsets, np.asarray(episodes, np.int64), side="right") - 1

    def describe(self, episodes: np.ndarray) -> str:
        """Where the store's episodes ``episodes`` live: ``<shard file>: episodes [...]`` per
        shard (each named by its observation file; episodes counted within the shard)."""
        episodes = self.physical(np.asarray(episodes, np.int64))
        shard = self.shard_of(episodes)
        parts = []
        for s in np.unique(shard).tolist():
            local = sorted(set((episodes[shard == s] - self.offsets[s]).tolist()))
            listed = ", ".join(map(str, local[:8])) + (" ..." if len(local) > 8 else "")
            parts.append(f"{self._paths[OBS][s]}: episodes [{listed}]")
        return "; ".join(parts)

    def _refuse_non_finite(
        self,
        key: str,
        values: np.ndarray,
        episodes: np.ndarray,
        starts: np.ndarray,
        shard: np.ndarray,
        first: int,
    ) -> None:
        """Raise :class:`NonFiniteError` naming the shard, episode and frame of the first
        NaN/Inf in a gathered window (the unused slot ``action/reward[:, 0]`` is never read,
        so any non-finite value read here is bad data)."""
        bad = ~np.isfinite(values.reshape(len(values), values.shape[1], -1)).all(axis=2)
        window, step = (int(v[0]) for v in np.nonzero(bad))
        s = int(shard[window])
        episode = int(episodes[window] - self.offsets[s])
        frame = int(starts[window]) + first + step
        raise NonFiniteError(
            f"non-finite {key} in {self._paths[key][s]} (episode {episode} of that shard, "
            f"frame {frame}): the data is corrupt",
            "check it with `python -m mt_factored.data verify <folder>` and re-run "
            "prepare (or restore the file); windows holding NaN/Inf are never trained on",
        )


def chunk_paths(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Chunk files of a source: a file, a folder of `*.pt` (numeric order), or a list."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            files = sorted(path.glob("*.pt"), key=_chunk_sort_key)
            if not files:
                raise MissingError(f"{path} holds no *.pt chunk files")
            return files
        if not path.is_file():
            raise MissingError(f"{path} does not exist")
        return [path]
    files = [Path(p) for p in source]
    for file in files:
        if not file.is_file():
            raise MissingError(f"chunk file {file} does not exist")
    return files


def _chunk_sort_key(path: Path) -> tuple[str, int]:
    head, _, digits = path.stem.rpartition("_")
    return (head, int(digits)) if digits.isdigit() else (path.stem, -1)


def store_from_chunks(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    task_names: Sequence[str] | None = None,
    block_episodes: int = 512,
    **expect: Any,
) -> EpisodeStore:
    """An `EpisodeStore` straight over official chunk files (no conversion).

    Each chunk is opened lazily (`ChunkFile`) and validated block by block; windows are
    then read from the tensor records inside the chunk files.

    Args:
        source: chunk file(s) or a folder of them.
        task_names: names by task id, if known.
        block_episodes: episodes validated at a time.
        **expect: expectations for `validate_block` (num_tasks, action_dims).
    """
    regions, episodes, tasks, dtypes, sizes = [], [], [], None, None
    for path in chunk_paths(source):
        chunk = ChunkFile(path)
        count, frames = validate_header(path, chunk.shapes, chunk.dtypes)
        names = {k: DTYPE_NAMES[chunk.dtype(k)] for k in FRAME_KEYS if k in chunk.shapes}
        shape = (frames, chunk.shape(OBS)[2], chunk.shape(ACTION)[2])
        if sizes is not None and shape != sizes:
            raise ChunkFormatError(
                path, OBS, f"(frames, obs_dim, action_dim) {sizes} as the first chunk", shape
            )
        if dtypes is not None and names != dtypes:
            raise ChunkFormatError(path, None, f"dtypes {dtypes} as the first chunk", names)
        dtypes, sizes = names, shape
        warned: set = set()
        with open(path, "rb") as fh:
            for start in range(0, count, block_episodes):
                stop = min(start + block_episodes, count)
                block = {k: chunk.read(k, start, stop, fh) for k in (*names, TASK)}
                tasks.append(
                    validate_block(path, block, chunk.dtypes, start, warned=warned, **expect)
                )
        regions.append({k: (str(path), chunk.offset(k)) for k in names})
        episodes.append(count)
    return EpisodeStore(regions, episodes, dtypes, *sizes, np.concatenate(tasks), task_names)

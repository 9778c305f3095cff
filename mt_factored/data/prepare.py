"""Prepare: official chunks -> verified, memory-mappable shards plus index.json.

Each chunk is read lazily (`ChunkFile`: only its pickle on open, then blocks of
`block_episodes` episodes with plain file reads) and cut into shards of at most
`shard_episodes` episodes. Every block is validated, then appended to the shard's
files under temporary names while a sha256 of the bytes is computed; the files are
fsynced and renamed, and only then is index.json rewritten (atomically) with the
shard's entry. So an interrupted run resumes after the last complete shard, and a
re-run checks every recorded shard against its checksum and rebuilds what differs.

Peak memory is about 4x one block (the block, its float32 copies for validation and
the stats): ~130 MB for mt30 at the default 512 episodes, whatever the chunk size.
Chunks that are not torch.save zip files (torch < 1.6) are read whole instead.

index.json:
    format_version, task_set, task_names, num_tasks, frames, obs_dim, action_dim,
    shard_episodes, checksum ("sha256"), sources (chunk names in order),
    chunks {name: {episodes, num_shards, bytes}}, complete,
    shards: [{name, source, chunk, part, range [first, stop) in the chunk, episodes,
              episodes_per_task {id: n}, reward_stats {id: [count, sum, sumsq, min, max]},
              dtypes {key: name}, files {key: {file, bytes, sha256}}}]
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from mt_factored.artifacts.atomic import publish
from mt_factored.constants import ACTION, OBS, REWARD, SHARD_FORMAT_VERSION, TASK
from mt_factored.data.chunks import ChunkFile, read_chunk
from mt_factored.data.download import hub_chunk_file, hub_chunk_names
from mt_factored.data.info import accumulate_reward_stats
from mt_factored.data.shards import CHECKSUM, read_index, verify_shard, write_index
from mt_factored.data.store import FRAME_KEYS, chunk_paths
from mt_factored.data.validate import (
    DTYPE_NAMES,
    NUMPY_DTYPES,
    ChunkFormatError,
    as_float32,
    to_numpy,
    validate_block,
    validate_header,
)
from mt_factored.errors import InputError
from mt_factored.tasks import get_task_set

log = logging.getLogger(__name__)


class _HashingWriter:
    """A binary file that hashes what is written to it."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.digest = hashlib.new(CHECKSUM)
        self.bytes = 0

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        self.bytes += len(data)
        return self.file.write(data)

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


class _InMemoryChunk:
    """`ChunkFile`'s reading interface over a chunk loaded whole (non-zip legacy files)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        loaded = {k: to_numpy(v) for k, v in read_chunk(path, validate=False).items()}
        self._arrays = {k: a for k, (a, _) in loaded.items()}
        self.dtypes = {k: dt for k, (_, dt) in loaded.items()}
        self.shapes = {k: a.shape for k, a in self._arrays.items()}

    def read(self, key: str, start: int, stop: int, fh: Any = None) -> np.ndarray:
        return np.array(self._arrays[key][start:stop])


def _open_chunk(path: Path) -> ChunkFile | _InMemoryChunk:
    try:
        return ChunkFile(path)
    except ChunkFormatError as err:
        log.warning("%s: cannot be read lazily (%s); loading it whole", path, err)
        return _InMemoryChunk(path)


def _npy_header(writer: _HashingWriter, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(writer, header)


def _write_shard(
    out: Path,
    chunk: ChunkFile | _InMemoryChunk,
    shard: dict[str, Any],
    expect: dict[str, Any],
    block_episodes: int,
    advance: Callable[[int], None],
) -> dict[str, Any]:
    """Writes one shard's files (temp names, checksummed, renamed) and returns its entry."""
    first, stop = shard["range"]
    keys = [k for k in FRAME_KEYS if k in chunk.shapes]
    dtypes = {k: chunk.dtypes[k] for k in keys}
    names = {k: f"{shard['name']}.{k}.npy" for k in (*keys, TASK)}
    per_task: dict[int, list[float]] = {}
    with ExitStack() as stack, open(chunk.path, "rb") as fh:
        writers = {k: _HashingWriter(out / (names[k] + ".tmp")) for k in names}
        for w in writers.values():
            stack.callback(w.file.close)
        for key in keys:
            _npy_header(
                writers[key], NUMPY_DTYPES[dtypes[key]], (stop - first, *chunk.shapes[key][1:])
            )
        _npy_header(writers[TASK], np.dtype("<i4"), (stop - first,))
        for start in range(first, stop, block_episodes):
            end = min(start + block_episodes, stop)
            block = {k: chunk.read(k, start, end, fh) for k in (*keys, TASK)}
            ids = validate_block(chunk.path, block, chunk.dtypes, start, **expect)
            for key in keys:
                writers[key].write(memoryview(np.ascontiguousarray(block[key])).cast("B"))
            writers[TASK].write(ids.astype("<i4").tobytes())
            accumulate_reward_stats(per_task, ids, as_float32(block[REWARD], dtypes[REWARD])[:, 1:])
            advance(sum(block[k].nbytes for k in block))
        files = {}
        for key, writer in writers.items():
            writer.close()
            publish(out / (names[key] + ".tmp"), out / names[key])
            files[key] = {
                "file": names[key],
                "bytes": writer.bytes,
                CHECKSUM: writer.digest.hexdigest(),
            }
    return {
        **shard,
        "episodes": stop - first,
        "episodes_per_task": {str(t): int(s[0]) for t, s in sorted(per_task.items())},
        "reward_stats": {str(t): [int(s[1]), *s[2:]] for t, s in sorted(per_task.items())},
        "dtypes": {k: DTYPE_NAMES[dtypes[k]] for k in keys},
        "files": files,
    }


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )


def _new_index(task_set: str | None, names: list[str], shard_episodes: int) -> dict[str, Any]:
    spec = None
    if task_set is not None:
        spec = get_task_set(task_set)
    return {
        "format_version": SHARD_FORMAT_VERSION,
        "task_set": task_set,
        "task_names": list(spec.names) if spec else None,
        "num_tasks": len(spec) if spec else None,
        "action_dims": list(spec.action_dims) if spec else None,
        "frames": None,
        "dtypes": None,
        "obs_dim": spec.max_obs_dim if spec else None,
        "action_dim": spec.max_action_dim if spec else None,
        "shard_episodes": shard_episodes,
        "checksum": CHECKSUM,
        "sources": names,
        "chunks": {},
        "shards": [],
        "complete": False,
    }


def _check_same_run(out: Path, index: dict[str, Any], fresh: dict[str, Any]) -> None:
    for key in ("task_set", "shard_episodes", "sources"):
        if index.get(key) != fresh[key]:
            raise InputError(
                f"{out} already holds a dataset prepared with {key}={index.get(key)!r}, not "
                f"{fresh[key]!r}; prepare into a new folder, or delete {out} to start over"
            )


def _resolve_sources(
    source: Any, task_set: str | None, revision: str | None, cache_dir: str | None
) -> tuple[list[str], Callable[[int], Path]]:
    if source == "hub":
        if task_set is None:
            raise InputError("source=hub needs a task_set (mt30 or mt80)")
        names = hub_chunk_names(task_set)
        return names, lambda i: hub_chunk_file(task_set, names[i], revision, cache_dir)
    paths = chunk_paths(source)
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise InputError(f"chunk file names must be unique, got {names}")
    return names, lambda i: paths[i]


def prepare(
    source: str | os.PathLike | Sequence[str | os.PathLike] = "hub",
    out: str | os.PathLike = "data/mt30",
    task_set: str | None = "mt30",
    *,
    shard_episodes: int = 50_000,
    block_episodes: int = 512,
    verify: bool = True,
    revision: str | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
) -> Path:
    """Converts official chunks into memory-mappable shards; resumable and idempotent.

    Args:
        source: "hub" (download `<task_set>/chunk_*.pt` from nicklashansen/tdmpc2 into the
            HF cache), a folder of chunk files, one file, or a list of files.
        out: output folder (index.json + .npy shards).
        task_set: task set of the data ("mt30"): validates task ids, dims and action
            padding, and names the tasks. None: structural checks only.
        shard_episodes: episodes per shard (the unit of resume and rebuild).
        block_episodes: episodes copied at a time (bounds memory).
        verify: re-check recorded shards' checksums (reads them) before skipping them.
        revision, cache_dir: Hub revision and HF cache folder for source="hub".
        progress: show progress bars (bytes, speed, ETA).

    Returns:
        `out`, ready for `ShardedDataset` / `WindowDataset`.
    """
    if shard_episodes < 1 or block_episodes < 1:
        raise InputError("shard_episodes and block_episodes must be >= 1")
    out = Path(out)
    names, resolve = _resolve_sources(source, task_set, revision, cache_dir)
    fresh = _new_index(task_set, names, shard_episodes)
    out.mkdir(parents=True, exist_ok=True)
    index = read_index(out)
    if index is None:
        index = fresh
    else:
        _check_same_run(out, index, fresh)
    for stale in out.glob("*.tmp"):
        stale.unlink()
    expect = {"num_tasks": index["num_tasks"], "action_dims": index["action_dims"]}
    with _progress(progress) as bars:
        for ci, name in enumerate(names):
            _prepare_chunk(out, index, ci, name, resolve, expect, verify, block_episodes, bars)
    index["complete"] = True
    index["episodes"] = sum(s["episodes"] for s in index["shards"])
    write_index(out, index)
    log.info("%s: %d episodes in %d shards", out, index["episodes"], len(index["shards"]))
    return out


def _prepare_chunk(
    out: Path,
    index: dict[str, Any],
    ci: int,
    name: str,
    resolve: Callable,
    expect: dict[str, Any],
    verify: bool,
    block_episodes: int,
    bars: Any,
) -> None:
    done = {tuple(s["range"]): s for s in index["shards"] if s["source"] == name}
    broken = {rng: bad for rng, s in done.items() if verify and (bad := verify_shard(out, s))}
    info = index["chunks"].get(name)
    if info is not None and len(done) == info["num_shards"] and not broken:
        log.info("%s: %d shards done%s", name, len(done), " and verified" if verify else "")
        return
    path = resolve(ci)
    chunk = _open_chunk(path)
    episodes, frames = validate_header(
        path,
        chunk.shapes,
        chunk.dtypes,
        obs_dim=index["obs_dim"],
        action_dim=index["action_dim"],
        frames=index["frames"],
    )
    dtypes = {k: DTYPE_NAMES[chunk.dtypes[k]] for k in FRAME_KEYS if k in chunk.shapes}
    if index["dtypes"] is not None and dtypes != index["dtypes"]:
        raise ChunkFormatError(
            path,
            None,
            f"dtypes {index['dtypes']} as the chunks before it "
            "(one dtype per key across the dataset)",
            dtypes,
        )
    index["frames"], index["dtypes"] = frames, dtypes
    index["obs_dim"] = int(chunk.shapes[OBS][2])
    index["action_dim"] = int(chunk.shapes[ACTION][2])
    step = index["shard_episodes"]
    plan = [(first, min(first + step, episodes)) for first in range(0, episodes, step)]
    index["chunks"][name] = {
        "episodes": episodes,
        "num_shards": len(plan),
        "bytes": path.stat().st_size,
    }
    todo = []
    for part, rng in enumerate(plan):
        shard = done.get(rng)
        if shard is not None and rng not in broken:
            continue
        if shard is not None:
            log.warning(
                "%s: %s differ from their checksums; rebuilding", shard["name"], broken[rng]
            )
            index["shards"].remove(shard)
        stem = Path(name).stem
        todo.append(
            {
                "name": f"{stem}-{part:03d}",
                "source": name,
                "chunk": ci,
                "part": part,
                "range": list(rng),
            }
        )
    row_bytes = sum(
        np.prod(chunk.shapes[k][1:]) * NUMPY_DTYPES[chunk.dtypes[k]].itemsize
        for k in chunk.shapes
        if k in (*FRAME_KEYS, TASK)
    )
    total = int(sum(s["range"][1] - s["range"][0] for s in todo) * row_bytes)
    bar = bars.add_task(name, total=total) if bars is not None else None
    advance = (lambda n: bars.advance(bar, n)) if bars is not None else (lambda n: None)
    expect = {**expect, "warned": set()}  # one zero-slot warning per chunk
    index["complete"] = False  # on disk before any shard changes (a rebuild included)
    write_index(out, index)
    for shard in todo:
        entry = _write_shard(out, chunk, shard, expect, block_episodes, advance)
        index["shards"].append(entry)
        index["shards"].sort(key=lambda s: (s["chunk"], s["part"]))
        write_index(out, index)
    write_index(out, index)

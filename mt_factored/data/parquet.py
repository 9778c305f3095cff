"""The Hub dataset format: Parquet files by task, one row per frame, `meta/info.json`, a card.

A dataset folder (`export_parquet` writes it; `datasets.load_dataset(folder, name=task,
streaming=True)` reads it without a loading script, through the card's ``configs:``):

    README.md                                        dataset card (YAML metadata + configs)
    meta/info.json                                   dims, dtypes, task table, files + sha256
    data/<task>/train-<i>-of-<n>.parquet             one row per frame, episodes in order

Columns (`COLUMNS`), as the official chunks hold them (see
/work/shared/specs/tdmpc2-formats.md): row (episode e, frame t) has `observation` = obs[e, t],
`action` = action[e, t] (the action that led to obs[t]) and `reward` = reward[e, t]; frame 0
keeps the unused slot (NaN in the public data). `episode_index` is the episode's position in
the source, so files by task still give back the source's order (`parquet_chunks.to_chunks`, and the
training stream, see `parquet_store.py`). Fixed-size list columns, the source's dtypes
(bfloat16, which Arrow lacks, is stored as float32, exactly, and restored by `to_chunks`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mt_factored import __version__
from mt_factored.artifacts.atomic import atomic_write, write_json, write_text
from mt_factored.artifacts.checksums import CHECKSUM, sha256_file
from mt_factored.artifacts.progress import progress_bars
from mt_factored.constants import ACTION, OBS, REWARD, TASK, TERMINATED
from mt_factored.data.dataset_card import dataset_card
from mt_factored.data.shards import ShardedDataset, read_index
from mt_factored.data.store import EpisodeStore, chunk_paths
from mt_factored.data.validate import as_float32
from mt_factored.errors import InputError, MismatchError, MissingError
from mt_factored.tasks import get_task_set

log = logging.getLogger(__name__)

PARQUET_FORMAT_VERSION = 1
INFO_PATH = "meta/info.json"
CARD_NAME = "README.md"
DATA_DIR = "data"
SPLIT = "train"
FILE_METADATA_KEY = b"mt_factored"
"""Parquet key-value metadata of every file: what it holds (the re-run check reads it)."""

EPISODE, FRAME, TASK_ID, TASK_NAME = "episode_index", "frame_index", "task_id", "task"
OBSERVATION, ACTION_MASK = "observation", "action_mask"
COLUMNS = {  # Parquet column -> the chunk key it holds (None: derived)
    EPISODE: None,
    FRAME: None,
    TASK_ID: TASK,
    TASK_NAME: None,
    OBSERVATION: OBS,
    ACTION: ACTION,
    REWARD: REWARD,
    TERMINATED: TERMINATED,
    ACTION_MASK: None,
}
FRAME_COLUMNS = {OBS: OBSERVATION, ACTION: ACTION, REWARD: REWARD, TERMINATED: TERMINATED}
"""Chunk key -> its Parquet column."""


class ParquetFormatError(MismatchError):
    """A dataset folder whose files do not hold what `meta/info.json` says."""


def is_parquet_dataset(path: str | os.PathLike) -> bool:
    """True when `path` is a folder with `meta/info.json` (a dataset folder)."""
    return (Path(path) / INFO_PATH).is_file()


def read_info(folder: str | os.PathLike) -> dict[str, Any]:
    """`meta/info.json` of a complete dataset folder (raises otherwise)."""
    path = Path(folder) / INFO_PATH
    if not path.is_file():
        raise MissingError(
            f"{folder} has no {INFO_PATH}: not a dataset folder",
            "write one with `python -m mt_factored.data export source=... out=...`",
        )
    info = json.loads(path.read_text())
    version = info.get("format_version")
    if not isinstance(version, int) or version // 1 != PARQUET_FORMAT_VERSION:
        raise ParquetFormatError(
            f"{path}: format_version {version}, this code reads {PARQUET_FORMAT_VERSION}",
            "export it again with this version",
        )
    return info


def _arrow_type(pa, dtype: str):
    return {"float32": pa.float32(), "float16": pa.float16(), "bfloat16": pa.float32()}.get(
        dtype, pa.float64() if dtype == "float64" else None
    )


def arrow_schema(obs_dim: int, action_dim: int, dtypes: dict[str, str], metadata=None):
    """The Arrow schema of every file (fixed-size lists, the stored dtypes)."""
    import pyarrow as pa  # lazy: pyarrow loads only for the Parquet format

    floats = {k: _arrow_type(pa, dtypes.get(k, "float32")) for k in (OBS, ACTION, REWARD)}
    for key, typ in floats.items():
        if typ is None:
            raise InputError(f"{key} has dtype {dtypes[key]}; the Parquet export needs floats")
    fields = [
        pa.field(EPISODE, pa.int64(), nullable=False),
        pa.field(FRAME, pa.int32(), nullable=False),
        pa.field(TASK_ID, pa.int32(), nullable=False),
        pa.field(TASK_NAME, pa.string(), nullable=False),
        pa.field(OBSERVATION, pa.list_(floats[OBS], obs_dim), nullable=False),
        pa.field(ACTION, pa.list_(floats[ACTION], action_dim), nullable=False),
        pa.field(REWARD, floats[REWARD], nullable=False),
        pa.field(TERMINATED, pa.bool_(), nullable=False),
        pa.field(ACTION_MASK, pa.list_(pa.bool_(), action_dim), nullable=False),
    ]
    return pa.schema(fields, metadata=metadata)


def _stored(array: np.ndarray, dtype: str) -> np.ndarray:
    """Stored bytes -> the values written to Parquet (bfloat16 widened to float32)."""
    return as_float32(array, dtype) if dtype == "bfloat16" else array


def episodes_table(
    store: EpisodeStore, episodes: Sequence[int], names: Sequence[str], masks: np.ndarray, schema
):
    """The rows of `episodes` (every frame) as an Arrow table of `schema`."""
    import pyarrow as pa

    data = store.read_episodes(episodes)
    n, frames = len(episodes), store.frames
    rows = n * frames
    tasks = store.episode_tasks[np.asarray(episodes)]
    terminated = data.get(TERMINATED)
    terminated = (
        np.zeros(rows, bool)
        if terminated is None
        else as_float32(terminated, store.dtypes[TERMINATED]).ravel() != 0
    )

    def fixed(key: str, width: int, dtype) -> pa.Array:
        values = _stored(data[key], store.dtypes[key]).reshape(-1)
        return pa.FixedSizeListArray.from_arrays(pa.array(values, type=dtype), width)

    columns = {
        EPISODE: pa.array(np.repeat(np.asarray(episodes, np.int64), frames)),
        FRAME: pa.array(np.tile(np.arange(frames, dtype=np.int32), n)),
        TASK_ID: pa.array(np.repeat(tasks, frames).astype(np.int32)),
        TASK_NAME: pa.array(np.repeat(np.asarray(names, dtype=object)[tasks], frames).tolist()),
        OBSERVATION: fixed(OBS, store.obs_dim, schema.field(OBSERVATION).type.value_type),
        ACTION: fixed(ACTION, store.action_dim, schema.field(ACTION).type.value_type),
        REWARD: pa.array(
            _stored(data[REWARD], store.dtypes[REWARD]).reshape(-1),
            type=schema.field(REWARD).type,
        ),
        TERMINATED: pa.array(terminated),
        ACTION_MASK: pa.FixedSizeListArray.from_arrays(
            pa.array(np.repeat(masks[tasks], frames, axis=0).reshape(-1)), store.action_dim
        ),
    }
    return pa.table(columns, schema=schema)


def _task_table(store: EpisodeStore, task_set: str | None) -> tuple[list[str], np.ndarray]:
    """Names and valid-action masks by task id."""
    present = int(store.episode_tasks.max()) + 1 if store.num_episodes else 0
    if task_set is not None:
        spec = get_task_set(task_set)
        if present > len(spec):
            raise InputError(f"the data has task id {present - 1}; {task_set} has {len(spec)}")
        names, dims = list(spec.names), list(spec.action_dims)
    else:
        names = list(store.task_names or [f"task-{i}" for i in range(present)])
        dims = [store.action_dim] * len(names)
    masks = np.arange(store.action_dim)[None, :] < np.asarray(dims)[:, None]
    return names, masks


def _plan(store: EpisodeStore, names: list[str], file_episodes: int) -> list[dict[str, Any]]:
    """Files to write: per task (in id order), its episodes in source order, split."""
    plan = []
    for task in np.unique(store.episode_tasks).tolist():
        episodes = np.flatnonzero(store.episode_tasks == task)
        parts = max(1, -(-len(episodes) // file_episodes))
        for i in range(parts):
            chunk = episodes[i * file_episodes : (i + 1) * file_episodes]
            name = f"{DATA_DIR}/{names[task]}/{SPLIT}-{i:05d}-of-{parts:05d}.parquet"
            plan.append({"file": name, "task": task, "episodes": chunk})
    return plan


def _file_identity(entry: dict[str, Any], store: EpisodeStore, settings: dict) -> dict:
    eps = entry["episodes"]
    return {
        "task": int(entry["task"]),
        "episodes": len(eps),
        "first": int(eps[0]),
        "last": int(eps[-1]),
        "episodes_sum": int(eps.sum()),
        "frames": store.frames,
        "settings": settings,
    }


def _finished(path: Path, identity: dict) -> bool:
    """The file exists whole (written atomically) and holds what this run would write."""
    if not path.is_file():
        return False
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:  # noqa: BLE001 (not a Parquet file: rewrite it)
        return False
    return json.loads(meta.get(FILE_METADATA_KEY, b"null")) == identity


def export_parquet(
    store: EpisodeStore,
    out: str | os.PathLike,
    *,
    task_set: str | None = "mt30",
    source_name: str = "",
    source_chunks: Sequence[dict[str, Any]] | None = None,
    file_episodes: int = 10_000,
    row_group_episodes: int = 16,
    compression: str = "zstd",
    license: str = "mit",
    progress: bool = True,
) -> dict[str, Any]:
    """Write the episodes of `store` as a dataset folder (see the module doc).

    Each file is written atomically and records what it holds; a re-run skips the files
    that are already there whole, and `meta/info.json` (with every file's checksum) and
    the card are written last.

    Args:
        store: the source (prepared shards or official chunks, `open_store`).
        out: the dataset folder.
        task_set: names the tasks and gives their action dims (the valid-action mask); null:
            the store's names, every action entry valid.
        source_name: what the data was exported from (for the card's provenance).
        source_chunks: the source's chunk files in order, ``[{"name", "episodes"}]``
            (`to_chunks` writes the same files back).
        file_episodes: episodes per Parquet file at most (a task's files are numbered).
        row_group_episodes: episodes per Parquet row group (the unit of a read).
        compression: Parquet compression codec.
        license: the dataset's license (card metadata).
        progress: progress bar with rate and ETA.

    Returns:
        The `meta/info.json` written.
    """
    import pyarrow.parquet as pq

    if file_episodes < 1 or row_group_episodes < 1:
        raise InputError("file_episodes and row_group_episodes must be >= 1")
    out = Path(out)
    names, masks = _task_table(store, task_set)
    settings = {"compression": compression, "row_group_episodes": row_group_episodes}
    plan = _plan(store, names, file_episodes)
    written = skipped = 0
    with progress_bars(progress, "episodes") as bars:
        bar = bars.add_task("export", total=store.num_episodes) if bars else None
        for entry in plan:
            path = out / entry["file"]
            identity = _file_identity(entry, store, settings)
            if _finished(path, identity):
                skipped += 1
                if bars:
                    bars.update(bar, advance=len(entry["episodes"]))
                continue
            schema = arrow_schema(
                store.obs_dim,
                store.action_dim,
                store.dtypes,
                {FILE_METADATA_KEY: json.dumps(identity).encode()},
            )

            def write(tmp: Path, entry=entry, schema=schema) -> None:
                with pq.ParquetWriter(tmp, schema, compression=compression) as writer:
                    eps = entry["episodes"]
                    for start in range(0, len(eps), row_group_episodes):
                        part = eps[start : start + row_group_episodes]
                        writer.write_table(
                            episodes_table(store, part, names, masks, schema),
                            row_group_size=len(part) * store.frames,
                        )
                        if bars:
                            bars.update(bar, advance=len(part))

            atomic_write(path, write, keep_suffix=True)
            written += 1
    log.info("%s: %d files written, %d already there", out, written, skipped)
    info = _info(store, out, plan, names, masks, task_set, source_name, source_chunks, settings)
    write_json(out / INFO_PATH, info)
    write_text(out / CARD_NAME, dataset_card(info, license=license))
    return info


def _info(store, out, plan, names, masks, task_set, source_name, source_chunks, settings):
    files = {}
    for entry in plan:
        path = out / entry["file"]
        files[entry["file"]] = {
            "task_id": int(entry["task"]),
            "episodes": len(entry["episodes"]),
            "rows": len(entry["episodes"]) * store.frames,
            "bytes": path.stat().st_size,
            CHECKSUM: sha256_file(path),
        }
    counts = np.bincount(store.episode_tasks, minlength=len(names))
    tasks = [
        {
            "id": i,
            "name": name,
            "action_dim": int(masks[i].sum()),
            "episodes": int(counts[i]),
            "frames": int(counts[i]) * store.frames,
        }
        for i, name in enumerate(names)
        if counts[i] > 0
    ]
    return {
        "format_version": PARQUET_FORMAT_VERSION,
        "codebase_version": __version__,
        "task_set": task_set,
        "frames": store.frames,
        "obs_dim": store.obs_dim,
        "action_dim": store.action_dim,
        "dtypes": {k: store.dtypes[k] for k in store.keys},
        "has_terminated": store.has_terminated,
        "num_episodes": store.num_episodes,
        "num_frames": store.num_episodes * store.frames,
        "num_tasks_total": len(names),
        "tasks": tasks,
        "columns": list(COLUMNS),
        "convention": "row (e, t): observation obs[t], action[t] led to obs[t], reward[t] "
        "came with obs[t]; frame 0's action and reward are the unused slot",
        "source": source_name,
        "source_chunks": list(source_chunks) if source_chunks is not None else None,
        "settings": settings,
        "checksum": CHECKSUM,
        "files": files,
    }


def source_chunks(source: Any, store: EpisodeStore) -> list[dict[str, Any]] | None:
    """The chunk files behind a source, ``[{"name", "episodes"}]`` in order (None: unknown)."""
    if isinstance(store, ShardedDataset):
        index = read_index(store.path)
        names = index.get("sources") or []
        chunks = index.get("chunks") or {}
        if names and all(n in chunks for n in names):
            return [{"name": Path(n).name, "episodes": chunks[n]["episodes"]} for n in names]
        return None
    if isinstance(source, EpisodeStore):
        return None
    paths = chunk_paths(source)
    counts = np.diff(store.offsets).tolist()
    if len(paths) != len(counts):
        return None
    return [{"name": p.name, "episodes": int(c)} for p, c in zip(paths, counts, strict=True)]


def verify_files(folder: str | os.PathLike, info: dict[str, Any] | None = None) -> list[str]:
    """Files of `meta/info.json` that are missing or whose size or checksum differ."""
    folder = Path(folder)
    info = info or read_info(folder)
    bad = []
    for name, entry in info["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            bad.append(name)
        elif sha256_file(path) != entry[CHECKSUM]:
            bad.append(name)
    return bad

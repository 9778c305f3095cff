"""Train from a Parquet dataset folder (`parquet.py`) or a Hub dataset repo holding one.

`store_from_parquet(folder)` gives the same `EpisodeStore` the .npy shards give, so windows
go through the same sampler, resume exactly and split disjointly over workers and ranks:

- Each Parquet file is converted once, row group by row group, into an uncompressed Arrow
  IPC file in a local cache (`cache_dir()`, keyed by the file's SHA-256, written
  atomically): record batches of whole episodes, whose fixed-size list columns are plain
  contiguous arrays `[episodes, frames, dim]`. This is what `datasets` does with Parquet
  too (its memory-mapped Arrow cache).
- Windows are then read from those arrays with positional reads (`store.py`): no memory
  map, so resident memory does not grow with the dataset.
- Episodes keep the source's order (`episode_index`), so a store over the export of
  a dataset draws the very windows the source itself draws.

`resolve_dataset("hf:ORG/NAME@revision")` downloads the repo's data into the HF cache
(`snapshot_download`, honouring ``HF_HUB_OFFLINE``) and returns the local snapshot folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mt_factored.artifacts.atomic import atomic_write
from mt_factored.artifacts.checksums import CHECKSUM
from mt_factored.constants import ACTION, OBS, REWARD, TERMINATED
from mt_factored.data.parquet import (
    EPISODE,
    FRAME,
    FRAME_COLUMNS,
    TASK_ID,
    ParquetFormatError,
    read_info,
)
from mt_factored.data.store import EpisodeStore
from mt_factored.errors import MissingError

HUB_PREFIX = "hf:"
CACHE_ENV = "MT_FACTORED_CACHE"
"""Folder of the converted Arrow files (default ``~/.cache/mt_factored``)."""
CACHE_VERSION = 2
BATCH_EPISODES = 64
"""Episodes per Arrow record batch of the cache (a region of the store)."""


def cache_dir() -> Path:
    """Where converted Arrow files go: ``$MT_FACTORED_CACHE``, else
    ``$XDG_CACHE_HOME/mt_factored``, else ``~/.cache/mt_factored``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mt_factored"


def is_hub_dataset(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(HUB_PREFIX)


def resolve_dataset(source: str, cache: str | None = None) -> Path:
    """The local folder of ``hf:ORG/NAME[@revision]`` (the HF cache's snapshot)."""
    from huggingface_hub import snapshot_download  # lazy: only for Hub datasets
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    repo, _, revision = source[len(HUB_PREFIX) :].partition("@")
    try:
        folder = snapshot_download(
            repo,
            repo_type="dataset",
            revision=revision or None,
            allow_patterns=["README.md", "meta/*", "data/**"],
            cache_dir=cache,
        )
    except HFValidationError as err:
        raise MissingError(
            f"{repo!r} is not a valid Hub dataset id ({err})", "give ORG/NAME"
        ) from err
    except LocalEntryNotFoundError as err:
        raise MissingError(
            f"the Hub dataset {repo}{f'@{revision}' if revision else ''} is not in the Hugging "
            "Face cache and the Hub cannot be reached (HF_HUB_OFFLINE=1 or no network)",
            f"on a machine with network run `hf download {repo} --repo-type dataset`, or unset "
            "HF_HUB_OFFLINE",
        ) from err
    except HfHubHTTPError as err:
        raise MissingError(f"cannot fetch the Hub dataset {repo}: {err}") from err
    return Path(folder)


def _convert(parquet: Path, arrow: Path, frames: int, keys: list[str]) -> None:
    """Parquet -> Arrow IPC file of whole-episode record batches (+ the episodes' order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(parquet)
    columns = [EPISODE, FRAME, TASK_ID, *(FRAME_COLUMNS[k] for k in keys)]
    step = BATCH_EPISODES * frames

    def batches():
        """Tables of `BATCH_EPISODES` whole episodes (the last one shorter)."""
        pending, held = [], 0
        for batch in source.iter_batches(batch_size=step, columns=columns):
            pending.append(batch)
            held += batch.num_rows
            while held >= step:
                table = pa.Table.from_batches(pending).combine_chunks()
                yield table.slice(0, step)
                rest = table.slice(step)
                pending, held = rest.to_batches(), rest.num_rows
        if held:
            yield pa.Table.from_batches(pending).combine_chunks()

    def cast(table):
        out = {EPISODE: table[EPISODE], TASK_ID: table[TASK_ID]}
        for key in keys:
            column = table[FRAME_COLUMNS[key]]
            if key == TERMINATED:  # Arrow keeps bools as bits: one byte each for reads
                column = column.cast(pa.uint8())
            out[FRAME_COLUMNS[key]] = column
        return pa.table(out)

    index = []  # (episode_index, task_id) of every episode, in file order

    def write(tmp: Path) -> None:
        writer = None
        index.clear()
        with pa.OSFile(str(tmp), "wb") as sink:
            for table in batches():
                rows = table.num_rows
                frame = table[FRAME].to_numpy()
                episode = table[EPISODE].to_numpy()
                if rows % frames or not (
                    np.array_equal(frame, np.tile(np.arange(frames), rows // frames))
                    and (episode.reshape(-1, frames) == episode[::frames, None]).all()
                ):
                    raise ParquetFormatError(
                        f"{parquet}: rows are not whole episodes of {frames} frames in order"
                    )
                tasks = table[TASK_ID].to_numpy()
                index.append(np.stack([episode[::frames], tasks[::frames]], axis=1))
                table = cast(table).combine_chunks()
                if writer is None:
                    writer = pa.ipc.new_file(sink, table.schema)
                writer.write_table(table, max_chunksize=rows)
            if writer is not None:
                writer.close()
        episodes = np.concatenate(index) if index else np.zeros((0, 2), np.int64)
        # Beside the Arrow file, before it appears: opening the store reads no column data.
        atomic_write(
            index_path(arrow), lambda t: np.save(t, episodes.astype(np.int64)), keep_suffix=True
        )

    atomic_write(arrow, write)


def index_path(arrow: Path) -> Path:
    """The (episode_index, task_id) table of a converted Arrow file."""
    return arrow.with_suffix(".episodes.npy")


def _regions(arrow: Path, keys: list[str], frames: int):
    """Per record batch: key -> (path, byte offset) of its values, episode ids, task ids
    (read off the Arrow file's metadata and its index, touching no column data)."""
    import pyarrow as pa

    index = np.load(index_path(arrow))

    mapped = pa.memory_map(str(arrow))
    mapped.seek(0)
    base = mapped.read_buffer(1).address
    reader = pa.ipc.open_file(mapped)
    regions, counts = [], []
    for i in range(reader.num_record_batches):
        batch = reader.get_batch(i)
        region = {}
        for key in keys:
            column = batch.column(FRAME_COLUMNS[key])
            if column.null_count:
                raise ParquetFormatError(f"{arrow}: nulls in {FRAME_COLUMNS[key]}")
            values = column.values if pa.types.is_fixed_size_list(column.type) else column
            buffer = values.buffers()[1]
            width = values.type.byte_width
            start = buffer.address - base + (values.offset + column.offset) * width
            region[key] = (str(arrow), int(start))
        regions.append(region)
        counts.append(batch.num_rows // frames)
    del reader, mapped
    if sum(counts) != len(index):
        raise ParquetFormatError(f"{arrow}: {sum(counts)} episodes, its index {len(index)}")
    return regions, counts, index[:, 0], index[:, 1]


def _dtype_name(key: str, stored: dict[str, str]) -> str:
    if key == TERMINATED:
        return "uint8"
    return "float16" if stored.get(key) == "float16" else "float32"


def store_from_parquet(
    folder: str | os.PathLike, *, cache: str | os.PathLike | None = None
) -> EpisodeStore:
    """An `EpisodeStore` over a dataset folder (local, or an HF cache snapshot).

    Args:
        folder: the dataset folder (`meta/info.json` + `data/`).
        cache: where the converted Arrow files go (default `cache_dir()`).
    """
    folder = Path(folder)
    info = read_info(folder)
    frames = int(info["frames"])
    keys = [OBS, ACTION, REWARD] + ([TERMINATED] if info["has_terminated"] else [])
    root = Path(cache) if cache is not None else cache_dir()
    regions, counts, episodes, tasks = [], [], [], []
    for name in sorted(info["files"]):
        entry = info["files"][name]
        parquet = folder / name
        if not parquet.is_file():
            raise MissingError(f"{parquet} (listed in meta/info.json) is missing", "fetch it again")
        arrow = root / f"arrow-v{CACHE_VERSION}" / f"{entry[CHECKSUM]}.arrow"
        if not (arrow.is_file() and index_path(arrow).is_file()):
            _convert(parquet, arrow, frames, keys)
        r, c, e, t = _regions(arrow, keys, frames)
        regions += r
        counts += c
        episodes.append(e)
        tasks.append(t)
    episode_ids = np.concatenate(episodes) if episodes else np.zeros(0, np.int64)
    order = np.argsort(episode_ids, kind="stable")
    if not np.array_equal(episode_ids[order], np.arange(len(episode_ids))):
        raise ParquetFormatError(
            f"{folder}: episode_index is not 0..{len(episode_ids) - 1} exactly once",
            "export it again",
        )
    names = {t["id"]: t["name"] for t in info["tasks"]}
    task_names = [names.get(i, f"task-{i}") for i in range(info.get("num_tasks_total", 0))]
    return EpisodeStore(
        regions=regions,
        episodes=counts,
        dtypes={k: _dtype_name(k, info["dtypes"]) for k in keys},
        frames=frames,
        obs_dim=info["obs_dim"],
        action_dim=info["action_dim"],
        episode_tasks=np.concatenate(tasks)[order].astype(np.int64) if tasks else np.zeros(0),
        task_names=task_names or None,
        order=order,
    )

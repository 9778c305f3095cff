"""A Hub dataset folder (:mod:`.parquet`) back to official chunk files, losslessly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mt_factored.artifacts.progress import progress_bars
from mt_factored.constants import ACTION, OBS, REWARD, TASK, TERMINATED
from mt_factored.data.chunks import write_chunk
from mt_factored.data.parquet import (
    EPISODE,
    FRAME,
    OBSERVATION,
    TASK_ID,
    ParquetFormatError,
    read_info,
    verify_files,
)
from mt_factored.data.validate import NUMPY_DTYPES, TORCH_DTYPES


def read_episode_range(folder: Path, info: dict[str, Any], first: int, stop: int):
    """Rows of episodes [first, stop) from every file, in episode and frame order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filters = [(EPISODE, ">=", first), (EPISODE, "<", stop)]
    tables = [pq.read_table(folder / name, filters=filters) for name in sorted(info["files"])]
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    return table.sort_by([(EPISODE, "ascending"), (FRAME, "ascending")])


def _restored(column, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A Parquet column back to the chunk's dtype (numpy; bfloat16 as uint16 bits)."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(column.type):
        column = column.flatten()
    values = column.to_numpy(zero_copy_only=False).reshape(shape)
    if dtype == "bfloat16":
        return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return values.astype(NUMPY_DTYPES[TORCH_DTYPES[dtype]], copy=False)


def to_chunks(
    folder: str | os.PathLike, out: str | os.PathLike, *, progress: bool = True
) -> list[Path]:
    """Write a dataset folder back as official chunk files, losslessly.

    The chunks are the source's (names and episode counts from `meta/info.json`), or one
    `chunk_0.pt` when the source is not known; each holds its episodes in source order with
    the source's dtypes (a `terminated` key only when the source had one). A re-run skips
    chunks already written.

    Returns:
        The chunk files.
    """
    import torch

    folder, out = Path(folder), Path(out)
    info = read_info(folder)
    if bad := verify_files(folder, info):
        raise ParquetFormatError(f"{folder}: {bad} missing or changed", "export it again")
    chunks = info.get("source_chunks") or [{"name": "chunk_0.pt", "episodes": info["num_episodes"]}]
    frames, dtypes = info["frames"], info["dtypes"]
    paths, first = [], 0
    with progress_bars(progress, "episodes") as bars:
        bar = bars.add_task("to chunks", total=info["num_episodes"]) if bars else None
        for chunk in chunks:
            path, count = out / chunk["name"], int(chunk["episodes"])
            stop = first + count
            if not path.is_file():
                table = read_episode_range(folder, info, first, stop)
                if table.num_rows != count * frames:
                    raise ParquetFormatError(
                        f"{folder}: episodes [{first}, {stop}) have {table.num_rows} rows, "
                        f"expected {count * frames}"
                    )
                data = {
                    OBS: _restored(
                        table[OBSERVATION].combine_chunks(),
                        dtypes[OBS],
                        (count, frames, info["obs_dim"]),
                    ),
                    ACTION: _restored(
                        table[ACTION].combine_chunks(),
                        dtypes[ACTION],
                        (count, frames, info["action_dim"]),
                    ),
                    REWARD: _restored(
                        table[REWARD].combine_chunks(), dtypes[REWARD], (count, frames)
                    ),
                    TASK: table[TASK_ID].to_numpy().reshape(count, frames),
                }
                if info["has_terminated"]:
                    data[TERMINATED] = _restored(
                        table[TERMINATED].combine_chunks(), dtypes[TERMINATED], (count, frames)
                    )
                tensors = {}
                for key, array in data.items():
                    tensor = torch.from_numpy(np.require(array, requirements=["C", "W"]))
                    tensors[key] = (
                        tensor.view(torch.bfloat16) if dtypes.get(key) == "bfloat16" else tensor
                    )
                write_chunk(path, tensors, validate=False)
            paths.append(path)
            first = stop
            if bars:
                bars.update(bar, advance=count)
    return paths

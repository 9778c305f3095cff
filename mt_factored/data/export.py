"""``python -m mt_factored.data export``: shards or chunks -> a Hub dataset folder, and back."""

from __future__ import annotations

import os
from typing import Any

from mt_factored.data.parquet import export_parquet, source_chunks
from mt_factored.data.parquet_chunks import to_chunks
from mt_factored.data.parquet_store import is_hub_dataset, resolve_dataset
from mt_factored.data.shards import ShardedDataset
from mt_factored.data.stream import open_store
from mt_factored.errors import InputError

DEFAULT_TASK_SET = "mt30"
"""The task set of chunks, which do not record one (the public data's)."""


def export(
    source: Any,
    out: str | os.PathLike,
    format: str = "parquet",
    *,
    progress: bool = True,
    **options: Any,
) -> Any:
    """``python -m mt_factored.data export``: a source to a dataset folder, or back.

    Args:
        source: format=parquet: anything `open_store` reads (shards, chunks); format=chunks:
            a dataset folder.
        out: the folder written.
        format: parquet or chunks.
        options: `export_parquet`'s keywords.
    """
    if format == "chunks":
        folder = resolve_dataset(source) if is_hub_dataset(source) else source
        return to_chunks(folder, out, progress=progress)
    if format != "parquet":
        raise InputError(f"format must be parquet or chunks, got {format!r}")
    store = open_store(source)
    if options.get("task_set", "auto") == "auto":
        recorded = store.index.get("task_set") if isinstance(store, ShardedDataset) else None
        options["task_set"] = recorded or DEFAULT_TASK_SET
    return export_parquet(
        store,
        out,
        source_name=str(source),
        source_chunks=source_chunks(source, store),
        progress=progress,
        **options,
    )

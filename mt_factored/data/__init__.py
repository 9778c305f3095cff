"""Public TD-MPC2 data: official chunks, prepared mmap shards, streaming training windows.

- `read_chunk` / `write_chunk` / `validate_chunk` (`chunks.py`, `validate.py`): the
  official chunk format (torch.save of a TensorDict), read by an unpickler that runs nothing.
- `prepare` (`prepare.py`): chunks (local or from the Hub) -> verified .npy shards +
  index.json, resumable; `python -m mt_factored.data prepare source=hub out=data/mt30`.
- `ShardedDataset` (`shards.py`, `store.py`): a prepared folder of .npy shards (each
  opens with `np.load(mmap_mode="r")`); windows are read with positional reads, so
  resident memory stays flat whatever the dataset size.
- `WindowDataset` / `WindowDataModule` (`stream.py`, `sampler.py`, `datamodule.py`):
  whole batches of windows, a pure function of (seed, world size, rank, batch index),
  disjoint across DataLoader workers and DDP ranks.
- `dataset_summary` (`info.py`): `python -m mt_factored.data info data/mt30`.
"""

from mt_factored.data.chunks import ChunkFile, read_chunk, write_chunk
from mt_factored.data.download import DatasetDownloadError
from mt_factored.data.info import dataset_summary, format_summary
from mt_factored.data.prepare import prepare
from mt_factored.data.sampler import WindowSampler
from mt_factored.data.shards import ShardedDataset, ShardError
from mt_factored.data.store import EpisodeStore
from mt_factored.data.stream import WindowDataLoader, WindowDataset
from mt_factored.data.validate import ChunkFormatError, validate_chunk


def __getattr__(name: str):
    """`WindowDataModule` imports lightning: loaded on first access, so data workers and
    the CLI stay light."""
    if name == "WindowDataModule":
        from mt_factored.data.datamodule import WindowDataModule  # lazy: lightning start-up cost

        return WindowDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ChunkFile",
    "ChunkFormatError",
    "DatasetDownloadError",
    "EpisodeStore",
    "ShardError",
    "ShardedDataset",
    "WindowDataLoader",
    "WindowDataModule",
    "WindowDataset",
    "WindowSampler",
    "dataset_summary",
    "format_summary",
    "prepare",
    "read_chunk",
    "validate_chunk",
    "write_chunk",
]

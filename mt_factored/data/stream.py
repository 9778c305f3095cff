"""`WindowDataset`: an IterableDataset of whole batches of training windows.

Batch k of rank r (of W) is a pure function of (seed, W, r, k) (see `sampler.py`): it
does not depend on the number of DataLoader workers. Worker w of n produces batches
k = start_batch + w, start_batch + w + n, ..., and the DataLoader's round-robin hands
them out in order k = start_batch, start_batch + 1, ...; so resuming at
`start_batch` continues the stream exactly.

Iterate it through `WindowDataLoader`: each new iteration (a Lightning epoch) continues
where the last one stopped instead of starting again at `start_batch`, and its
`state_dict` / `load_state_dict` carry the position through a checkpoint.

The stream is infinite unless `num_batches` is given (then batches k < num_batches).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mt_factored.constants import TASK
from mt_factored.data.parquet import is_parquet_dataset
from mt_factored.data.parquet_store import is_hub_dataset, resolve_dataset, store_from_parquet
from mt_factored.data.sampler import WindowSampler
from mt_factored.data.shards import ShardedDataset
from mt_factored.data.store import EpisodeStore, store_from_chunks
from mt_factored.errors import MismatchError

Source = str | os.PathLike | Sequence[str | os.PathLike] | EpisodeStore


def open_store(source: Source) -> EpisodeStore:
    """A prepared shard folder, official chunk file(s) / a folder of them, a Parquet dataset
    folder (`parquet.py`), ``hf:ORG/NAME[@revision]`` (a Hub dataset repo holding one), or a
    store."""
    if isinstance(source, EpisodeStore):
        return source
    if is_hub_dataset(source):
        return store_from_parquet(resolve_dataset(source))
    if isinstance(source, str | os.PathLike) and ShardedDataset.is_prepared(source):
        return ShardedDataset(source)
    if isinstance(source, str | os.PathLike) and is_parquet_dataset(source):
        return store_from_parquet(source)
    return store_from_chunks(source)


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world size): given values, else torch.distributed's when initialised, else (0, 1)."""
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return (
            dist.get_rank() if rank is None else int(rank),
            dist.get_world_size() if world_size is None else int(world_size),
        )
    return (0 if rank is None else int(rank)), (1 if world_size is None else int(world_size))


class WindowDataset(IterableDataset):
    """Batches of windows `obs[t..t+H]`, `action[t+1..t+H]`, `reward[t+1..t+H]`, `task`.

    Args:
        source: prepared shard folder, chunk file(s) or folder of `chunk_*.pt`, or a store.
        batch_size: windows per batch (per rank).
        horizon: H (3 in TD-MPC2).
        seed: seed of the stream.
        start_batch: first batch index to produce (resume).
        task_weights: {task id: weight} or a per-task sequence; None: uniform over windows.
        rank, world_size: this process's place in DDP; None: from torch.distributed at
            iteration time when initialised, else 0 / 1.
        task_ids: restrict to these tasks.
        num_batches: stop before batch `num_batches` (None: infinite).
        return_index: also return `episode` and `start` of every window (tests, debugging).

    Yields:
        dict: `obs` [B, H+1, obs_dim], `action` [B, H, action_dim], `reward` [B, H] float32,
        `task` [B] int64 (+ `terminated` [B, H] when the data has it).
    """

    def __init__(
        self,
        source: Source,
        batch_size: int = 256,
        horizon: int = 3,
        seed: int = 0,
        start_batch: int = 0,
        task_weights: Mapping[int, float] | Sequence[float] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        task_ids: Sequence[int] | None = None,
        num_batches: int | None = None,
        return_index: bool = False,
    ) -> None:
        super().__init__()
        self.store = open_store(source)
        self.sampler = WindowSampler(
            self.store.episode_tasks,
            self.store.frames,
            horizon,
            batch_size,
            seed,
            task_ids,
            task_weights,
        )
        self.batch_size, self.horizon = batch_size, horizon
        self.start_batch, self.num_batches = int(start_batch), num_batches
        self.rank, self.world_size = rank, world_size
        self.return_index = return_index

    def stream_identity(self, world_size: int | None = None) -> dict[str, object]:
        """What decides which windows batch k holds (apart from the rank): a resumed run
        must see the same values, or its batch indices would name other windows."""
        _, world = resolve_rank(self.rank, self.world_size)
        return {
            "seed_key": self.sampler.seed_key,
            "batch_size": self.batch_size,
            "horizon": self.horizon,
            "world_size": world if world_size is None else int(world_size),
            "num_windows": self.sampler.num_windows,
        }

    @property
    def windows_per_epoch(self) -> int:
        """Number of windows the sampler draws from (one epoch of the permutation)."""
        return self.sampler.num_windows

    def batch(self, k: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        """Batch `k` of `rank` among `world_size`, as torch tensors.

        The float arrays are views of one buffer: a DataLoader worker hands the batch to
        the main process as one shared-memory block (plus the task ids) instead of four.
        """
        episodes, starts = self.sampler.batch(k, rank, world_size)
        shapes = self.store.window_shapes(len(episodes), self.horizon)
        sizes = [math.prod(shape) for shape in shapes.values()]
        buffer = torch.empty(sum(sizes), dtype=torch.float32)
        views = dict(zip(shapes, buffer.split(sizes), strict=True))
        out = {key: views[key].view(shape) for key, shape in shapes.items()}
        self.store.gather(episodes, starts, self.horizon, {k: v.numpy() for k, v in out.items()})
        out[TASK] = torch.from_numpy(self.store.episode_tasks[episodes])
        if self.return_index:
            out["episode"], out["start"] = torch.from_numpy(episodes), torch.from_numpy(starts)
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, world = resolve_rank(self.rank, self.world_size)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        k = self.start_batch + worker
        while self.num_batches is None or k < self.num_batches:
            yield self.batch(k, rank, world)
            k += workers

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an infinite WindowDataset has no length (set num_batches)")
        return max(0, self.num_batches - self.start_batch)


class WindowDataLoader(DataLoader):
    """A DataLoader over a :class:`WindowDataset` whose stream only moves forward.

    Each ``iter()`` (Lightning starts one per epoch) begins at the next batch index not
    yet handed out, so a run longer than one epoch walks through the permutation instead
    of replaying its first batches. The position is Lightning's resumable-loader state:
    :meth:`state_dict` saves it with the stream's identity in every checkpoint and
    :meth:`load_state_dict` restores it, refusing a checkpoint of another stream (seed,
    batch size, horizon, world size or dataset changed).

    Args:
        dataset: the window stream; its ``start_batch`` is where the first iteration begins.
        num_workers, pin_memory, prefetch_factor: as for ``torch.utils.data.DataLoader``.
            Workers are never persistent: each iteration hands them the new start.
        position: where the next iteration begins, when something else knows it exactly
            (the data module passes the trainer's optimizer steps x gradient accumulation:
            Lightning prefetches a batch ahead of the step when an epoch has no length, so
            counting handed-out batches would be one ahead in a mid-epoch checkpoint).
            None: the count of batches handed out.
    """

    def __init__(
        self,
        dataset: WindowDataset,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        position=None,
    ) -> None:
        if not isinstance(dataset, WindowDataset):
            raise TypeError(f"WindowDataLoader needs a WindowDataset, got {type(dataset).__name__}")
        super().__init__(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            pin_memory=pin_memory,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            persistent_workers=False,
        )
        self._handed_out = dataset.start_batch
        self._position = position

    @property
    def next_batch(self) -> int:
        """Index of the batch the next consumer step receives."""
        return int(self._position()) if self._position is not None else self._handed_out

    def __iter__(self):
        # Workers receive a copy of the dataset when the iterator is made, so setting the
        # start here moves every worker's share of the stream on together.
        self._handed_out = self.next_batch
        self.dataset.start_batch = self._handed_out
        iterator = super().__iter__()
        # The live workers' process ids, for memory reports (mt_factored.training.profile).
        self.worker_pids = [w.pid for w in getattr(iterator, "_workers", [])]
        for batch in iterator:
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, object]:
        return {"next_batch": self.next_batch, "stream": self.dataset.stream_identity()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        saved, current = state.get("stream"), self.dataset.stream_identity()
        if saved != current:
            diff = {
                k: (saved.get(k) if isinstance(saved, dict) else None, current[k])
                for k in current
                if not isinstance(saved, dict) or saved.get(k) != current[k]
            }
            raise MismatchError(
                "the checkpoint was written by another window stream (checkpoint -> now: "
                f"{diff}); resume with the data, seed, batch size, horizon and number of "
                "processes it was trained with, or start a new run_dir"
            )
        self._handed_out = int(state["next_batch"])
        if self._position is not None and self.next_batch != self._handed_out:
            raise MismatchError(
                f"the checkpoint's stream position ({self._handed_out}) disagrees with the "
                f"trainer's ({self.next_batch}): the checkpoint is inconsistent"
            )

"""`WindowDataModule`: the Lightning wrapper around `WindowDataset`."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch

from mt_factored.data.store import EpisodeStore
from mt_factored.data.stream import (
    Source,
    WindowDataLoader,
    WindowDataset,
    open_store,
    resolve_rank,
)

#: The `WindowDataset` arguments the module passes through (all but its placement).
_STREAM_ARGUMENTS = set(inspect.signature(WindowDataset).parameters) - {
    "source",
    "start_batch",
    "rank",
    "world_size",
    "return_index",
}


class WindowDataModule(L.LightningDataModule):
    """Streams window batches for training; resumes the stream exactly with the trainer.

    When attached to a trainer, the loader's position is always
    `trainer.global_step * trainer.accumulate_grad_batches`: every epoch continues the
    stream where the last step left it, and a resumed run restores the position from the
    checkpoint (`WindowDataLoader.state_dict`). Rank and world size come from the trainer,
    so DDP ranks draw disjoint windows. The store is opened once (in `setup`) and shared by
    every dataloader this module builds.

    Args:
        source: as for `WindowDataset`.
        start_batch, rank, world_size: as for `WindowDataset`; used only when no trainer
            is attached, or when given explicitly.
        num_workers: DataLoader worker processes (each its own disjoint part of the stream).
        pin_memory: pin batches in page-locked memory; None: when the trainer runs on GPU
            (without a trainer: when CUDA is available).
        prefetch_factor: batches each worker prepares ahead.
        **stream: the rest of `WindowDataset`'s arguments (batch_size, horizon, seed,
            task_weights, task_ids, num_batches), passed to it unchanged.
    """

    def __init__(
        self,
        source: Source,
        *,
        start_batch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool | None = None,
        prefetch_factor: int = 4,
        **stream: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(stream) - _STREAM_ARGUMENTS)
        if unknown:
            raise TypeError(f"WindowDataModule got unexpected arguments {unknown}")
        self.source, self.stream = source, stream
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.prefetch_factor = prefetch_factor
        self._store: EpisodeStore | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._store is None:
            self._store = open_store(self.source)

    @property
    def store(self) -> EpisodeStore:
        """The episodes the windows are cut from (opened on first use)."""
        self.setup()
        return self._store

    def _trainer_position(self) -> int:
        return self.trainer.global_step * self.trainer.accumulate_grad_batches

    def _placement(self) -> tuple[int, int | None, int | None, bool, object]:
        trainer = self.trainer
        if trainer is None:
            pin = torch.cuda.is_available() if self.pin_memory is None else self.pin_memory
            return self.start_batch, self.rank, self.world_size, pin, None
        rank = trainer.global_rank if self.rank is None else self.rank
        world = trainer.world_size if self.world_size is None else self.world_size
        on_gpu = trainer.strategy.root_device.type == "cuda"
        pin = on_gpu if self.pin_memory is None else self.pin_memory
        return self._trainer_position(), rank, world, pin, self._trainer_position

    def describe_batch(self, batch: int) -> str:
        """Where the windows of stream batch ``batch`` of this process come from (the shard
        files and episodes; see :meth:`EpisodeStore.describe`), for error messages."""
        self.setup()
        _, rank, world, _, _ = self._placement()
        dataset = WindowDataset(self._store, rank=rank, world_size=world, **self.stream)
        resolved_rank, resolved_world = resolve_rank(rank, world)
        episodes, _ = dataset.sampler.batch(batch, resolved_rank, resolved_world)
        return self._store.describe(episodes)

    def train_dataloader(self) -> WindowDataLoader:
        self.setup()
        start, rank, world, pin, position = self._placement()
        dataset = WindowDataset(
            self._store, start_batch=start, rank=rank, world_size=world, **self.stream
        )
        return WindowDataLoader(
            dataset,
            num_workers=int(self.num_workers),
            pin_memory=pin,
            prefetch_factor=self.prefetch_factor,
            position=position,
        )

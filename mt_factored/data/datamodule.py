"""`WindowDataModule`: the Lightning wrapper around `WindowDataset`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning as L
import torch

from mt_factored.data.store import EpisodeStore
from mt_factored.data.stream import Source, WindowDataLoader, WindowDataset, open_store


class WindowDataModule(L.LightningDataModule):
    """Streams window batches for training; resumes the stream exactly with the trainer.

    When attached to a trainer, the loader's position is always
    `trainer.global_step * trainer.accumulate_grad_batches`: every epoch continues the
    stream where the last step left it, and a resumed run restores the position from the
    checkpoint (`WindowDataLoader.state_dict`). Rank and world size come from the trainer,
    so DDP ranks draw disjoint windows. The store is opened once (in `setup`) and shared by
    every dataloader this module builds.

    Args:
        source, batch_size, horizon, seed, start_batch, task_weights, rank, world_size,
        task_ids, num_batches: as for `WindowDataset` (start_batch / rank / world_size are
            used only when no trainer is attached, or when given explicitly).
        num_workers: DataLoader worker processes (each its own disjoint part of the stream).
        pin_memory: pin batches in page-locked memory; None: when the trainer runs on GPU
            (without a trainer: when CUDA is available).
        prefetch_factor: batches each worker prepares ahead.
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
        num_workers: int = 2,
        pin_memory: bool | None = None,
        num_batches: int | None = None,
        prefetch_factor: int = 4,
    ) -> None:
        super().__init__()
        self.source = source
        self.batch_size, self.horizon, self.seed = batch_size, horizon, seed
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size
        self.task_weights, self.task_ids, self.num_batches = task_weights, task_ids, num_batches
        self.num_workers, self.pin_memory, self.prefetch_factor = (
            num_workers,
            pin_memory,
            prefetch_factor,
        )
        self._store: EpisodeStore | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._store is None:
            self._store = open_store(self.source)

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

    def train_dataloader(self) -> WindowDataLoader:
        self.setup()
        start, rank, world, pin, position = self._placement()
        dataset = WindowDataset(
            self._store,
            batch_size=self.batch_size,
            horizon=self.horizon,
            seed=self.seed,
            start_batch=start,
            task_weights=self.task_weights,
            rank=rank,
            world_size=world,
            task_ids=self.task_ids,
            num_batches=self.num_batches,
        )
        return WindowDataLoader(
            dataset,
            num_workers=int(self.num_workers),
            pin_memory=pin,
            prefetch_factor=self.prefetch_factor,
            position=position,
        )

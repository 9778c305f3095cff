"""Window streaming: alignment with the source, NaN-free batches, disjoint and exact streams."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from test_data_chunks import episodes
from torch.utils.data import DataLoader

from mt_factored.constants import ACTION, OBS, REWARD, TASK, TERMINATED
from mt_factored.data import (
    WindowDataLoader,
    WindowDataModule,
    WindowDataset,
    prepare,
    read_chunk,
    write_chunk,
)
from mt_factored.data.sampler import SCHEDULE_SLOTS, WindowSampler, permute

H, B = 3, 64
CHUNK_TASKS = [(0, 4, 8, 4), (8, 0, 29)]
EPISODES = sum(len(t) for t in CHUNK_TASKS)
WINDOWS = EPISODES * (501 - H)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("stream")
    for i, tasks in enumerate(CHUNK_TASKS):
        write_chunk(root / "chunks" / f"chunk_{i}.pt", episodes(tasks, seed=10 + i))
    prepare(root / "chunks", root / "shards", task_set="mt30", shard_episodes=2, progress=False)
    chunks = [read_chunk(root / "chunks" / f"chunk_{i}.pt") for i in range(len(CHUNK_TASKS))]
    source = {k: torch.cat([c[k] for c in chunks]) for k in (OBS, ACTION, REWARD, TASK)}
    return {"shards": root / "shards", "chunks": root / "chunks", "source": source}


def windows_of(batches) -> list[tuple[int, int]]:
    return [
        (int(e), int(t)) for b in batches for e, t in zip(b["episode"], b["start"], strict=True)
    ]


@pytest.mark.parametrize("kind", ["shards", "chunks"])
def test_every_window_matches_its_source_episode(data: dict, kind: str) -> None:
    dataset = WindowDataset(data[kind], batch_size=B, horizon=H, return_index=True)
    src = data["source"]
    batches = [dataset.batch(k) for k in range(WINDOWS // B + 2)]  # a full epoch and a bit
    for batch in batches:
        assert batch[OBS].shape == (B, H + 1, 24) and batch[OBS].dtype == torch.float32
        assert batch[ACTION].shape == (B, H, 6) and batch[ACTION].dtype == torch.float32
        assert batch[REWARD].shape == (B, H) and batch[REWARD].dtype == torch.float32
        assert batch[TASK].shape == (B,) and batch[TASK].dtype == torch.int64
        for key in (OBS, ACTION, REWARD):
            assert torch.isfinite(batch[key]).all(), f"NaN slot reached the batch ({key})"
        for i, (e, t) in enumerate(
            zip(batch["episode"].tolist(), batch["start"].tolist(), strict=True)
        ):
            assert 0 <= t <= 500 - H
            assert torch.equal(batch[OBS][i], src[OBS][e, t : t + H + 1])
            assert torch.equal(batch[ACTION][i], src[ACTION][e, t + 1 : t + H + 1])
            assert torch.equal(batch[REWARD][i], src[REWARD][e, t + 1 : t + H + 1])
            assert batch[TASK][i] == src[TASK][e, 0]


def test_shards_and_chunks_give_the_same_stream(data: dict) -> None:
    a = WindowDataset(data["shards"], batch_size=B, seed=5)
    b = WindowDataset(data["chunks"], batch_size=B, seed=5)
    for k in (0, 7, 123):
        for key, value in a.batch(k).items():
            assert torch.equal(value, b.batch(k)[key])


def test_half_precision_is_cast_to_float32(tmp_path: Path) -> None:
    data = episodes((0, 4), dtype=torch.bfloat16)
    write_chunk(tmp_path / "chunk_0.pt", data)
    batch = WindowDataset(tmp_path, batch_size=16, return_index=True).batch(0)
    e, t = int(batch["episode"][0]), int(batch["start"][0])
    assert batch[OBS].dtype == torch.float32
    assert torch.equal(batch[OBS][0], data[OBS][e, t : t + H + 1].float())


def test_terminated_is_streamed_when_present(tmp_path: Path) -> None:
    data = episodes((0, 4), terminated=True)
    data["terminated"][0, 200] = True
    write_chunk(tmp_path / "chunks" / "chunk_0.pt", data)
    prepare(tmp_path / "chunks", tmp_path / "shards", task_set="mt30", progress=False)
    for kind in ("chunks", "shards"):
        dataset = WindowDataset(tmp_path / kind, batch_size=256, return_index=True)
        batch = dataset.batch(0)
        for i, (e, t) in enumerate(zip(batch["episode"], batch["start"], strict=True)):
            expected = data["terminated"][e, t + 1 : t + H + 1].float()
            assert torch.equal(batch[TERMINATED][i], expected)


def test_an_epoch_draw_is_a_permutation_of_all_windows(data: dict) -> None:
    sampler = WindowSampler(np.zeros(EPISODES, np.int64), 501, H, B, seed=3)
    episode, start = sampler.windows(np.arange(WINDOWS))
    ids = episode * (501 - H) + start
    assert sorted(ids.tolist()) == list(range(WINDOWS))
    nxt = sampler.windows(np.arange(WINDOWS, 2 * WINDOWS))  # the next epoch: a new order
    assert sorted((nxt[0] * (501 - H) + nxt[1]).tolist()) == list(range(WINDOWS))
    assert not np.array_equal(nxt[0], episode)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 1000, 4097])
def test_permutation_is_a_bijection(n: int) -> None:
    for key in (0, 1, 2**63 + 5):
        assert sorted(permute(np.arange(n), n, key).tolist()) == list(range(n))


def test_ranks_draw_disjoint_windows(data: dict) -> None:
    per_rank = WINDOWS // (2 * B)  # batches per rank in one epoch
    seen = []
    for rank in (0, 1):
        dataset = WindowDataset(
            data["shards"], batch_size=B, rank=rank, world_size=2, return_index=True
        )
        seen += windows_of(dataset.batch(k, rank, 2) for k in range(per_rank))
    assert len(seen) == len(set(seen)) == 2 * per_rank * B


def test_rank_defaults_to_torch_distributed_at_iteration(data: dict, monkeypatch) -> None:
    dataset = WindowDataset(data["shards"], batch_size=B, num_batches=2)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    batches = list(dataset)
    for k, batch in enumerate(batches):
        assert torch.equal(batch[OBS], dataset.batch(k, rank=1, world_size=2)[OBS])
    assert not torch.equal(batches[0][OBS], dataset.batch(0)[OBS])


def loader_batches(source, workers: int, **kw) -> list[dict]:
    dataset = WindowDataset(source, batch_size=B, return_index=True, **kw)
    return list(DataLoader(dataset, batch_size=None, num_workers=workers))


def test_workers_split_the_stream_without_changing_it(data: dict) -> None:
    streams = {w: loader_batches(data["shards"], w, num_batches=6) for w in (0, 1, 2)}
    reference = WindowDataset(data["shards"], batch_size=B, return_index=True)
    for workers, batches in streams.items():
        assert len(batches) == 6
        for k, batch in enumerate(batches):
            for key, value in reference.batch(k).items():
                assert torch.equal(batch[key], value), (workers, k, key)
    windows = windows_of(streams[2])
    assert len(windows) == len(set(windows))  # the two workers drew disjoint windows


def test_start_batch_continues_the_stream(data: dict) -> None:
    full = loader_batches(data["shards"], 0, num_batches=7, rank=1, world_size=2)
    resumed = loader_batches(data["shards"], 2, num_batches=7, start_batch=4, rank=1, world_size=2)
    assert len(resumed) == 3
    for a, b in zip(full[4:], resumed, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_seed_decides_the_stream(data: dict) -> None:
    a, b, c = (WindowDataset(data["shards"], batch_size=B, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.batch(3)[OBS], b.batch(3)[OBS])
    assert not torch.equal(a.batch(3)[OBS], c.batch(3)[OBS])


def test_task_ids_restrict_the_windows(data: dict) -> None:
    dataset = WindowDataset(data["shards"], batch_size=B, task_ids=[4, 29], return_index=True)
    assert dataset.windows_per_epoch == 3 * (501 - H)
    tasks = torch.cat([dataset.batch(k)[TASK] for k in range(20)])
    assert set(tasks.tolist()) == {4, 29}
    with pytest.raises(ValueError, match=r"task_ids \[7\] have no episodes"):
        WindowDataset(data["shards"], task_ids=[7])


def test_task_weights_follow_the_schedule_without_repeats(data: dict) -> None:
    tasks = np.array([t for chunk in CHUNK_TASKS for t in chunk])
    sampler = WindowSampler(tasks, 501, H, B, seed=0, task_weights={0: 1.0, 8: 3.0})
    episode, start = sampler.windows(np.arange(SCHEDULE_SLOTS))
    counts = np.bincount(tasks[episode], minlength=30)
    assert counts[0] == SCHEDULE_SLOTS // 4 and counts[8] == 3 * SCHEDULE_SLOTS // 4
    assert counts.sum() == counts[0] + counts[8]  # unweighted tasks never drawn
    for task in (0, 8):  # within a task's epoch no window repeats
        mine = tasks[episode] == task
        ids = list(zip(episode[mine], start[mine], strict=True))
        epoch = int((tasks == task).sum()) * (501 - H)
        assert len(set(ids[:epoch])) == min(epoch, len(ids))
    again = WindowSampler(tasks, 501, H, B, seed=0, task_weights=[1.0, 0, 0, 0, 0, 0, 0, 0, 3.0])
    np.testing.assert_array_equal(again.batch(5)[0], sampler.batch(5)[0])  # list form == dict form


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task_weights": {7: 1.0}}, r"tasks \[7\] that have no episodes"),
        ({"task_weights": {0: -1.0}}, "finite and >= 0"),
        ({"task_weights": {0: 0.0}}, "no selected task a positive weight"),
        ({"horizon": 501}, "horizon must be in"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_bad_sampling_arguments(data: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WindowDataset(data["shards"], **kwargs)


def test_datamodule_without_trainer(data: dict) -> None:
    module = WindowDataModule(
        data["shards"], batch_size=B, num_workers=0, start_batch=2, num_batches=4
    )
    loader = module.train_dataloader()
    assert loader.pin_memory == torch.cuda.is_available()
    batches = list(loader)
    reference = WindowDataset(data["shards"], batch_size=B)
    assert len(batches) == 2 and torch.equal(batches[0][OBS], reference.batch(2)[OBS])
    assert (
        WindowDataModule(data["shards"], pin_memory=True, num_workers=0)
        .train_dataloader()
        .pin_memory
    )


def test_datamodule_resumes_the_stream_with_the_trainer(data: dict, tmp_path: Path) -> None:
    import lightning as L

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: list[float] = []

        def training_step(self, batch, batch_idx):
            self.seen.append(float(batch[OBS].sum()))
            return (self.w * batch[REWARD].mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(max_steps: int, ckpt: str | None = None, accumulate: int = 1) -> Recorder:
        model = Recorder()
        trainer = L.Trainer(
            max_steps=max_steps,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
            accumulate_grad_batches=accumulate,
        )
        trainer.fit(
            model, WindowDataModule(data["shards"], batch_size=B, num_workers=0), ckpt_path=ckpt
        )
        if ckpt is None:
            trainer.save_checkpoint(tmp_path / f"step{max_steps}.ckpt")
        return model

    straight = fit(6, accumulate=2)
    fit(3, accumulate=2)
    resumed = fit(6, ckpt=str(tmp_path / "step3.ckpt"), accumulate=2)
    assert len(straight.seen) == 12 and len(resumed.seen) == 6
    assert resumed.seen == straight.seen[6:]


class WindowRecorder(L.LightningModule):
    """Records the (episode, start) of every window it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.windows: list[list[tuple[int, int]]] = []

    def training_step(self, batch, batch_idx):
        self.windows.append(windows_of([batch]))
        return (self.w * batch[REWARD].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class IndexedDataModule(WindowDataModule):
    """The data module with the windows' (episode, start) in every batch."""

    def train_dataloader(self) -> WindowDataLoader:
        loader = super().train_dataloader()
        loader.dataset.return_index = True
        return loader


def fit_recording(source, tmp_path: Path, max_steps: int, epoch: int, workers: int, ckpt=None):
    model = WindowRecorder()
    trainer = L.Trainer(
        max_steps=max_steps,
        limit_train_batches=epoch,
        max_epochs=-1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    module = IndexedDataModule(source, batch_size=B, num_workers=workers, prefetch_factor=2)
    trainer.fit(model, module, ckpt_path=ckpt)
    return model, trainer


@pytest.mark.parametrize("workers", [0, 2])
def test_epochs_walk_the_stream_forward_and_resume_exactly(
    data: dict, tmp_path: Path, workers: int
) -> None:
    """7 steps in epochs of 2 batches: 3 epoch boundaries, no batch replayed; killed after
    step 3 (mid-epoch) and resumed, the run sees exactly the same windows."""
    straight, _ = fit_recording(data["shards"], tmp_path, 7, epoch=2, workers=workers)
    reference = WindowDataset(data["shards"], batch_size=B, return_index=True)
    expected = [windows_of([reference.batch(k)]) for k in range(7)]
    assert straight.windows == expected

    _, trainer = fit_recording(data["shards"], tmp_path, 3, epoch=2, workers=workers)
    trainer.save_checkpoint(tmp_path / "step3.ckpt")
    state = torch.load(tmp_path / "step3.ckpt", weights_only=False)
    (loader_state,) = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["next_batch"] == 3
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        resumed, _ = fit_recording(
            data["shards"], tmp_path, 7, epoch=2, workers=workers, ckpt=str(tmp_path / "step3.ckpt")
        )
    assert not [w for w in record if "not resumable" in str(w.message)]
    assert resumed.windows == expected[3:]


def test_a_long_run_repeats_no_window_before_the_permutation_ends(data: dict, tmp_path) -> None:
    steps = WINDOWS // B  # every full batch of the first pass through the permutation
    model, _ = fit_recording(data["shards"], tmp_path, steps, epoch=3, workers=0)
    seen = [w for batch in model.windows for w in batch]
    assert len(seen) == steps * B and len(set(seen)) == len(seen)


def test_resuming_another_stream_is_refused(data: dict) -> None:
    loader = WindowDataLoader(WindowDataset(data["shards"], batch_size=B, seed=1))
    state = loader.state_dict()
    other = WindowDataLoader(WindowDataset(data["shards"], batch_size=B, seed=2))
    with pytest.raises(ValueError, match="another window stream.*seed_key"):
        other.load_state_dict(state)
    again = WindowDataLoader(WindowDataset(data["shards"], batch_size=B, seed=1))
    again.load_state_dict({**state, "next_batch": 5})
    first = next(iter(again))
    torch.testing.assert_close(
        first[OBS], WindowDataset(data["shards"], batch_size=B, seed=1).batch(5)[OBS]
    )


def test_the_loader_continues_across_iterations_without_a_trainer(data: dict) -> None:
    loader = WindowDataLoader(WindowDataset(data["shards"], batch_size=B, num_batches=None))
    reference = WindowDataset(data["shards"], batch_size=B)
    it = iter(loader)
    for k in range(2):
        torch.testing.assert_close(next(it)[OBS], reference.batch(k)[OBS])
    torch.testing.assert_close(next(iter(loader))[OBS], reference.batch(2)[OBS])

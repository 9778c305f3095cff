"""The Hub dataset format: export to Parquet, read by `datasets`, trained from, and back."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_data_chunks import assert_identical, episodes
from torch.utils.data import DataLoader

from mt_factored.constants import ACTION, OBS, REWARD, TASK, TERMINATED
from mt_factored.data import WindowDataset, prepare, read_chunk, write_chunk
from mt_factored.data.export import export
from mt_factored.data.parquet import INFO_PATH, ParquetFormatError, read_info
from mt_factored.data.parquet_store import store_from_parquet
from mt_factored.data.stream import open_store
from mt_factored.data_commands import main as data_main

H, B = 3, 64
CHUNK_TASKS = [(0, 4, 8, 4), (8, 0, 29)]
SHA = "0123456789abcdef0123456789abcdef01234567"


def datasets_offline(monkeypatch, tmp_path: Path):
    """`datasets` with its caches in tmp_path and no network."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    import datasets

    return datasets


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("parquet")
    for i, tasks in enumerate(CHUNK_TASKS):
        write_chunk(root / "chunks" / f"chunk_{i}.pt", episodes(tasks, seed=20 + i))
    prepare(root / "chunks", root / "shards", task_set="mt30", shard_episodes=2, progress=False)
    export(root / "shards", root / "parquet", row_group_episodes=2, progress=False)
    chunks = [read_chunk(root / "chunks" / f"chunk_{i}.pt") for i in range(len(CHUNK_TASKS))]
    source = {k: torch.cat([c[k] for c in chunks]) for k in (OBS, ACTION, REWARD, TASK)}
    return {"root": root, "parquet": root / "parquet", "source": source}


def test_the_folder_is_in_the_hub_layout(data: dict) -> None:
    folder = data["parquet"]
    info = read_info(folder)
    files = sorted(info["files"])
    assert files == sorted(f"data/{t['name']}/train-00000-of-00001.parquet" for t in info["tasks"])
    assert {t["id"]: t["episodes"] for t in info["tasks"]} == {0: 2, 4: 2, 8: 2, 29: 1}
    assert (info["frames"], info["obs_dim"], info["action_dim"]) == (501, 24, 6)
    assert info["source_chunks"] == [
        {"name": "chunk_0.pt", "episodes": 4},
        {"name": "chunk_1.pt", "episodes": 3},
    ]
    for name, entry in info["files"].items():  # checksums of what is there
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
    schema = pq.read_schema(folder / files[0])
    assert str(schema.field("observation").type) == "fixed_size_list<element: float>[24]"
    assert str(schema.field("action_mask").type) == "fixed_size_list<element: bool>[6]"
    assert (
        str(schema.field("reward").type) == "float" and str(schema.field("task_id").type) == "int32"
    )
    card = (folder / "README.md").read_text()
    meta = card.split("---")[1]
    assert "config_name: default" in meta and "config_name: reacher-easy" in meta
    assert "license: mit" in meta and "| 4 | reacher-easy | 2 | 2 | 1,002 |" in card


def test_rows_hold_every_frame_with_the_unused_slot(data: dict) -> None:
    table = pq.read_table(data["parquet"] / "data/reacher-easy/train-00000-of-00001.parquet")
    src = data["source"]
    episode = table["episode_index"].to_numpy()
    assert sorted(set(episode.tolist())) == [1, 3]  # source positions of the reacher episodes
    rows = table.slice(501, 501)  # the second reacher episode, every frame in order
    assert rows["frame_index"].to_numpy().tolist() == list(range(501))
    obs = np.stack(rows["observation"].to_numpy(zero_copy_only=False))
    action = np.stack(rows["action"].to_numpy(zero_copy_only=False))
    assert np.array_equal(obs, src[OBS][3].numpy())
    assert np.array_equal(action, src[ACTION][3].numpy(), equal_nan=True)
    assert np.isnan(action[0]).all() and np.isnan(rows["reward"].to_numpy()[0])
    mask = np.stack(rows["action_mask"].to_numpy(zero_copy_only=False))
    assert mask[0].tolist() == [True, True, False, False, False, False]
    assert set(rows["task"].to_pylist()) == {"reacher-easy"}
    assert not rows["terminated"].to_numpy().any()


def test_windows_from_parquet_equal_windows_from_shards(data: dict) -> None:
    shards = WindowDataset(data["root"] / "shards", batch_size=B, seed=3, return_index=True)
    parquet = WindowDataset(data["parquet"], batch_size=B, seed=3, return_index=True)
    assert parquet.stream_identity() == shards.stream_identity()
    epoch = parquet.windows_per_epoch // B + 2
    for k in (0, 1, 17, epoch):
        for key, value in shards.batch(k, rank=1, world_size=2).items():
            assert torch.equal(parquet.batch(k, rank=1, world_size=2)[key], value), (k, key)


def test_workers_and_resume_read_parquet_like_shards(data: dict) -> None:
    reference = WindowDataset(data["root"] / "shards", batch_size=B, return_index=True)
    dataset = WindowDataset(data["parquet"], batch_size=B, return_index=True, num_batches=5)
    dataset.start_batch = 1  # a resumed stream, split over two worker processes
    got = list(DataLoader(dataset, batch_size=None, num_workers=2))
    assert len(got) == 4
    for k, batch in enumerate(got, start=1):
        for key, value in reference.batch(k).items():
            assert torch.equal(batch[key], value), (k, key)
    seen = [(int(e), int(t)) for b in got for e, t in zip(b["episode"], b["start"], strict=True)]
    assert len(seen) == len(set(seen))


def test_datasets_streams_the_same_transitions(data: dict, tmp_path, monkeypatch) -> None:
    datasets = datasets_offline(monkeypatch, tmp_path)
    src = data["source"]
    ds = datasets.load_dataset(str(data["parquet"]), name="cartpole-balance", streaming=True)
    rows = list(ds["train"])
    assert len(rows) == 2 * 501
    for row in rows:
        e, t = row["episode_index"], row["frame_index"]
        assert src[TASK][e, t] == row["task_id"] == 8 and row["task"] == "cartpole-balance"
        expected = src[OBS][e, t].numpy()
        assert np.array_equal(np.asarray(row["observation"], np.float32), expected)
        got = np.asarray(row["action"], np.float32)
        assert np.array_equal(got, src[ACTION][e, t].numpy(), equal_nan=True)
    everything = datasets.load_dataset(str(data["parquet"]), split="train", streaming=True)
    assert sum(1 for _ in everything) == 7 * 501  # default: every task


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_chunks_to_parquet_to_chunks_is_lossless(tmp_path: Path, dtype) -> None:
    parts = [episodes((8, 4), dtype=dtype, seed=1), episodes((4, 0, 8), dtype=dtype, seed=2)]
    if dtype == torch.float16:  # a terminated key survives too
        for part in parts:
            part[TERMINATED] = torch.zeros(part[OBS].shape[:2], dtype=torch.bool)
            part[TERMINATED][:, 300] = True
    for i, part in enumerate(parts):
        write_chunk(tmp_path / "src" / f"chunk_{i}.pt", part)
    export(tmp_path / "src", tmp_path / "pq", progress=False)
    assert read_info(tmp_path / "pq")["dtypes"][OBS] == str(dtype).removeprefix("torch.")
    assert data_main(["export", f"source={tmp_path / 'pq'}", f"out={tmp_path / 'back'}",
                      "format=chunks", "progress=false"]) == 0  # fmt: skip
    for i, part in enumerate(parts):
        assert_identical(read_chunk(tmp_path / "back" / f"chunk_{i}.pt"), part)
    stream = WindowDataset(tmp_path / "pq", batch_size=32, seed=2)
    for key, value in WindowDataset(tmp_path / "src", batch_size=32, seed=2).batch(0).items():
        assert torch.equal(stream.batch(0)[key], value), key


def test_parquet_to_chunks_to_parquet_is_identical(data: dict, tmp_path: Path) -> None:
    export(data["parquet"], tmp_path / "chunks", format="chunks", progress=False)
    export(tmp_path / "chunks", tmp_path / "again", row_group_episodes=2, progress=False)
    first, again = read_info(data["parquet"]), read_info(tmp_path / "again")
    assert sorted(first["files"]) == sorted(again["files"])
    for name in first["files"]:
        a = pq.read_table(data["parquet"] / name).replace_schema_metadata(None)
        b = pq.read_table(tmp_path / "again" / name).replace_schema_metadata(None)
        assert a.schema == b.schema and a.num_rows == b.num_rows
        for column in a.column_names:
            x, y = a[column].combine_chunks(), b[column].combine_chunks()
            if x.type.num_fields:  # fixed-size lists: compare the values
                x, y = x.flatten(), y.flatten()
            if pa.types.is_floating(x.type):  # as bytes: NaN == NaN
                x, y = x.to_numpy().tobytes(), y.to_numpy().tobytes()
            assert x == y, (name, column)


def test_rerun_skips_finished_files_and_rewrites_others(data: dict, tmp_path: Path) -> None:
    out = tmp_path / "pq"
    export(data["root"] / "shards", out, row_group_episodes=2, progress=False)
    files = sorted((out / "data").rglob("*.parquet"))
    times = {p: p.stat().st_mtime_ns for p in files}
    files[0].write_bytes(b"half a file")  # a file another tool left, or a foreign one
    os.utime(files[1], ns=(1, 1))
    export(data["root"] / "shards", out, row_group_episodes=2, progress=False)
    assert files[1].stat().st_mtime_ns == 1  # finished: kept
    assert files[0].stat().st_mtime_ns != times[files[0]]  # rewritten
    assert read_info(out) == {**read_info(data["parquet"]), "source": str(data["root"] / "shards")}
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp file left


def test_changed_file_is_refused(data: dict, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "pq"
    shutil.copytree(data["parquet"], folder)
    info = json.loads((folder / INFO_PATH).read_text())
    name = sorted(info["files"])[0]
    info["files"][name]["sha256"] = "0" * 64
    (folder / INFO_PATH).write_text(json.dumps(info))
    with pytest.raises(ParquetFormatError, match="missing or changed"):
        export(folder, tmp_path / "chunks", format="chunks", progress=False)


def fake_dataset_cache(cache: Path, repo_id: str, folder: Path, commit: str = SHA) -> Path:
    """A dataset folder in the HF cache layout (blobs, snapshots/<commit>, refs/main)."""
    repo = cache / f"datasets--{repo_id.replace('/', '--')}"
    for src in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / src.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return repo


def test_hf_dataset_streams_from_the_offline_cache(data: dict, tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants as hf_constants

    cache = tmp_path / "hf" / "hub"
    fake_dataset_cache(cache, "me/tiny-data", data["parquet"])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    for spec in ("hf:me/tiny-data", f"hf:me/tiny-data@{SHA}"):
        store = open_store(spec)
        reference = store_from_parquet(data["parquet"])
        assert np.array_equal(store.episode_tasks, reference.episode_tasks)
        a = WindowDataset(store, batch_size=B, seed=1).batch(2)
        for key, value in WindowDataset(reference, batch_size=B, seed=1).batch(2).items():
            assert torch.equal(a[key], value)
    with pytest.raises(Exception, match="not in the Hugging Face cache"):
        open_store("hf:me/other-data")


def test_export_usage_errors(data: dict, tmp_path, capsys) -> None:
    out = f"out={tmp_path / 'x'}"
    assert data_main(["export", f"source={data['parquet']}", out, "format=csv"]) == 2
    assert "format must be parquet or chunks" in capsys.readouterr().err
    assert data_main(["export", f"source={tmp_path / 'missing'}", out]) == 2
    assert "does not exist" in capsys.readouterr().err


def quickstart_batch(data: str | Path, tmp_path: Path) -> dict:
    """The first batch of the quickstart recipe's data module, with data= overridden."""
    from mt_factored import cli
    from mt_factored.artifacts.configs import as_object
    from mt_factored.training import build

    overrides = ["recipe=quickstart", "name=q", f"run_dir={tmp_path / 'run'}", f"data={data}"]
    cfg = as_object(cli.compose("train", overrides))
    task_set, tasks = build.build_task_set(cfg)
    module = build.build_datamodule(cfg, task_set, tasks)
    return next(iter(module.train_dataloader()))


def test_the_quickstart_trains_from_its_parquet_export(tmp_path, monkeypatch) -> None:
    from mt_factored.constants import SHIPPED_DATA_DIR

    shipped = SHIPPED_DATA_DIR / "quickstart"
    folder = tmp_path / "quickstart-parquet"
    assert data_main(["export", f"source={shipped}", f"out={folder}", "progress=false"]) == 0
    datasets = datasets_offline(monkeypatch, tmp_path)
    walker = read_chunk(shipped / "walker-stand.pt")
    ds = datasets.load_dataset(str(folder), name="walker-stand", split="train", streaming=True)
    first = next(iter(ds))  # the first frame of the first walker-stand episode
    assert first["task"] == "walker-stand" and first["frame_index"] == 0
    assert np.array_equal(np.asarray(first["observation"], np.float32), walker[OBS][0, 0].numpy())
    assert np.isnan(first["reward"]) and np.isnan(first["action"]).all()
    assert sum(1 for _ in ds) == walker[OBS].shape[0] * 501

    from_chunks, from_parquet = (
        quickstart_batch(shipped, tmp_path),
        quickstart_batch(folder, tmp_path),
    )
    assert from_chunks[OBS].shape == (256, H + 1, 24)
    for key, value in from_chunks.items():
        assert torch.equal(from_parquet[key], value), key


def test_a_run_resumed_on_parquet_equals_one_trained_on_chunks(tmp_path) -> None:
    """Train 4 steps on chunks; train 2 on their Parquet export and resume to 4: same student."""
    from test_train import CARTPOLE, REACHER, compose_train, smoke_overrides
    from tiny import write_tiny_chunk, write_tiny_expert

    from mt_factored.train import run

    chunks = tmp_path / "chunks"
    write_tiny_chunk(
        chunks / "chunk_0.pt",
        task_ids={CARTPOLE: 3, REACHER: 3},
        action_dims={CARTPOLE: 1, REACHER: 2},
        obs_dims={CARTPOLE: 5, REACHER: 6},
    )
    export(chunks, tmp_path / "pq", progress=False)
    expert = write_tiny_expert(tmp_path / "expert.pt")
    common = ("trainer.limit_train_batches=3", "eval.at_end=false")

    def train(data: Path, run_dir: Path, steps: int) -> dict:
        assets = {"expert": expert, "data": data}
        run(compose_train(smoke_overrides(assets, run_dir, f"trainer.max_steps={steps}", *common)))
        ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("student.")}

    reference = train(chunks, tmp_path / "on-chunks", 4)
    train(tmp_path / "pq", tmp_path / "on-parquet", 2)
    resumed = train(tmp_path / "pq", tmp_path / "on-parquet", 4)
    assert reference.keys() == resumed.keys()
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key


def test_info_and_verify_read_a_parquet_folder(data: dict, tmp_path, capsys) -> None:
    from mt_factored.data import dataset_summary

    parquet, chunks = dataset_summary(data["parquet"]), dataset_summary(data["root"] / "chunks")
    assert parquet["kind"] == "parquet" and parquet["episodes"] == chunks["episodes"] == 7
    for a, b in zip(parquet["tasks"], chunks["tasks"], strict=True):
        assert a["id"] == b["id"] and a["episodes"] == b["episodes"]
        assert a["reward_mean"] == pytest.approx(b["reward_mean"], rel=1e-12)
        assert (a["reward_min"], a["reward_max"]) == (b["reward_min"], b["reward_max"])
    assert parquet["tasks"][1]["name"] == "reacher-easy"
    assert data_main(["verify", str(data["parquet"])]) == 0
    assert "checksums ok" in capsys.readouterr().out
    import shutil

    broken = tmp_path / "pq"
    shutil.copytree(data["parquet"], broken)
    victim = sorted((broken / "data").rglob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    assert data_main(["verify", str(broken)]) == 2
    assert "missing or changed" in capsys.readouterr().err


def test_the_arrow_cache_is_made_once_per_file(data: dict, tmp_path: Path) -> None:
    store_from_parquet(data["parquet"], cache=tmp_path)
    arrows = sorted(tmp_path.rglob("*.arrow"))
    assert len(arrows) == len(read_info(data["parquet"])["files"])
    assert all(p.with_suffix(".episodes.npy").is_file() for p in arrows)
    times = [p.stat().st_mtime_ns for p in arrows]
    again = store_from_parquet(data["parquet"], cache=tmp_path)
    assert [p.stat().st_mtime_ns for p in arrows] == times  # reused, not converted again
    arrows[0].with_suffix(".episodes.npy").unlink()  # an interrupted conversion
    store_from_parquet(data["parquet"], cache=tmp_path)
    assert arrows[0].stat().st_mtime_ns != times[0] and arrows[1].stat().st_mtime_ns == times[1]
    reference = WindowDataset(data["root"] / "shards", batch_size=B, seed=9).batch(0)
    for key, value in WindowDataset(again, batch_size=B, seed=9).batch(0).items():
        assert torch.equal(reference[key], value)


def test_the_task_set_comes_from_prepared_shards(tmp_path: Path) -> None:
    """Shards of another task set (dmc_extra) export with its names and action masks."""
    from mt_factored.constants import SHIPPED_DATA_DIR

    source = SHIPPED_DATA_DIR / "finetune" / "quadruped-walk.pt"
    prepare(source, tmp_path / "shards", task_set="dmc_extra", progress=False)
    info = export(tmp_path / "shards", tmp_path / "pq", progress=False)
    assert info["task_set"] == "dmc_extra"
    assert [(t["name"], t["action_dim"]) for t in info["tasks"]] == [("quadruped-walk", 12)]
    assert (info["obs_dim"], info["action_dim"]) == (78, 12)

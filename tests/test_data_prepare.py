"""Prepare: chunks -> verified shards; resume, corruption, the Hub cache, the command line."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data_chunks import MT30, episodes

from mt_factored.constants import SHARD_FORMAT_VERSION
from mt_factored.data import (
    ChunkFormatError,
    DatasetDownloadError,
    ShardedDataset,
    ShardError,
    dataset_summary,
    prepare,
    read_chunk,
    write_chunk,
)
from mt_factored.data.config import PrepareConfig
from mt_factored.data_commands import main as cli

prepare_module = importlib.import_module("mt_factored.data.prepare")  # `prepare` is the function
CHUNK_TASKS = [(0, 4, 8, 4, 0), (8, 8, 29)]  # 5 + 3 episodes; shard_episodes=2 -> 3 + 2 shards


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("chunks")
    for i, tasks in enumerate(CHUNK_TASKS):
        write_chunk(folder / f"chunk_{i}.pt", episodes(tasks, seed=i))
    return folder


def run(src, out, **kw) -> Path:
    return prepare(
        src, out, task_set="mt30", shard_episodes=2, block_episodes=2, progress=False, **kw
    )


def shard_arrays(out: Path) -> dict[str, np.ndarray]:
    """Every shard's arrays concatenated in index order."""
    index = json.loads((out / "index.json").read_text())
    keys = index["shards"][0]["files"]
    return {
        k: np.concatenate([np.load(out / s["files"][k]["file"]) for s in index["shards"]])
        for k in keys
    }


def count_writes(monkeypatch) -> list:
    calls = []
    real = prepare_module._write_shard

    def counting(*args, **kwargs):
        calls.append(args[2]["name"])
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "_write_shard", counting)
    return calls


def test_prepare_writes_shards_equal_to_the_source(source: Path, tmp_path: Path) -> None:
    out = run(source, tmp_path / "out")
    index = json.loads((out / "index.json").read_text())
    assert index["format_version"] == SHARD_FORMAT_VERSION and index["complete"]
    assert index["episodes"] == 8 and len(index["shards"]) == 5
    assert index["task_names"][8] == "cartpole-balance"
    assert (index["frames"], index["obs_dim"], index["action_dim"]) == (501, 24, 6)
    assert index["dtypes"] == {"obs": "float32", "action": "float32", "reward": "float32"}
    chunks = [read_chunk(source / f"chunk_{i}.pt") for i in range(2)]
    arrays = shard_arrays(out)
    for key in ("obs", "action", "reward"):
        expected = np.concatenate([c[key].numpy() for c in chunks])
        np.testing.assert_array_equal(arrays[key], expected)  # NaN slots kept, bit for bit
    assert arrays["task"].tolist() == [t for tasks in CHUNK_TASKS for t in tasks]
    per_task = {}
    for shard in index["shards"]:
        for task, n in shard["episodes_per_task"].items():
            per_task[task] = per_task.get(task, 0) + n
    assert per_task == {"0": 2, "4": 2, "8": 3, "29": 1}
    assert not list(out.glob("*.tmp"))


def test_rerun_skips_verified_shards(source: Path, tmp_path: Path, monkeypatch) -> None:
    out = run(source, tmp_path / "out")
    before = (out / "index.json").read_text()
    calls = count_writes(monkeypatch)
    run(source, out)
    assert calls == []
    assert (out / "index.json").read_text() == before


def test_interrupted_prepare_resumes(source: Path, tmp_path: Path, monkeypatch) -> None:
    reference = shard_arrays(run(source, tmp_path / "reference"))
    out = tmp_path / "out"
    real = prepare_module._write_shard
    done = []

    def crash_after_two(out_dir, chunk, shard, *args):
        if len(done) == 2:  # the process dies while writing the third shard
            (out_dir / f"{shard['name']}.obs.npy.tmp").write_bytes(b"half a shard")
            raise KeyboardInterrupt
        done.append(shard["name"])
        return real(out_dir, chunk, shard, *args)

    monkeypatch.setattr(prepare_module, "_write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        run(source, out)
    index = json.loads((out / "index.json").read_text())
    assert not index["complete"] and [s["name"] for s in index["shards"]] == done
    with pytest.raises(ShardError, match="re-run the same prepare"):
        ShardedDataset(out)

    monkeypatch.setattr(prepare_module, "_write_shard", real)
    calls = count_writes(monkeypatch)
    run(source, out)
    assert len(calls) == 3 and not set(calls) & set(done)  # only the missing shards
    assert not list(out.glob("*.tmp"))
    for key, value in shard_arrays(out).items():
        np.testing.assert_array_equal(value, reference[key])


def _crash(*args, **kwargs):
    raise KeyboardInterrupt


def test_corrupted_shard_is_detected_and_rebuilt(source: Path, tmp_path: Path, monkeypatch) -> None:
    out = run(source, tmp_path / "out")
    reference = shard_arrays(out)
    victim = out / "chunk_1-000.reward.npy"
    raw = bytearray(victim.read_bytes())
    raw[-7] ^= 0x40  # one flipped bit, same size
    victim.write_bytes(bytes(raw))
    ShardedDataset(out)  # sizes still match: a cheap open does not read the data ...
    with pytest.raises(ShardError, match="checksum mismatch.*chunk_1-000.reward.npy"):
        ShardedDataset(out, verify=True)  # ... the checksum does
    real = prepare_module._write_shard
    monkeypatch.setattr(prepare_module, "_write_shard", _crash)
    with pytest.raises(KeyboardInterrupt):  # a rebuild that dies leaves the index incomplete
        run(source, out)
    with pytest.raises(ShardError, match="not finished"):
        ShardedDataset(out)
    monkeypatch.setattr(prepare_module, "_write_shard", real)
    calls = count_writes(monkeypatch)
    run(source, out)
    assert calls == ["chunk_1-000"]
    ShardedDataset(out, verify=True)
    np.testing.assert_array_equal(shard_arrays(out)["reward"], reference["reward"])


def test_truncated_shard_is_refused_on_open(source: Path, tmp_path: Path) -> None:
    out = run(source, tmp_path / "out")
    with open(out / "chunk_0-001.obs.npy", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ShardError, match="chunk_0-001.obs.npy: missing or of the wrong size"):
        ShardedDataset(out)


def test_prepare_refuses_a_folder_of_another_run(source: Path, tmp_path: Path) -> None:
    out = run(source, tmp_path / "out")
    with pytest.raises(ValueError, match="shard_episodes=2"):
        prepare(source, out, task_set="mt30", shard_episodes=3, progress=False)


def test_prepare_names_the_bad_chunk(tmp_path: Path) -> None:
    data = episodes((0, 4))
    data["task"][1] = 31  # not an mt30 task
    write_chunk(tmp_path / "src" / "chunk_0.pt", data, validate=False)
    with pytest.raises(
        ChunkFormatError, match=r"chunk_0.pt: key 'task': expected task ids in \[0, 30\)"
    ):
        run(tmp_path / "src", tmp_path / "out")


def test_prepare_keeps_half_precision(tmp_path: Path) -> None:
    data = episodes((0, 4, 8), dtype=torch.bfloat16)
    write_chunk(tmp_path / "src" / "chunk_0.pt", data)
    out = run(tmp_path / "src", tmp_path / "out")
    index = json.loads((out / "index.json").read_text())
    assert index["dtypes"]["obs"] == "bfloat16"
    stored = shard_arrays(out)["obs"]
    assert stored.dtype == np.uint16  # bfloat16 bits, as in the source
    np.testing.assert_array_equal(stored, data["obs"].view(torch.int16).numpy().view(np.uint16))


def fake_hub_cache(root: Path, source: Path, chunks: int = 4) -> Path:
    """An HF cache holding `chunks` copies of the source chunks under mt30/."""
    repo = root / "datasets--nicklashansen--tdmpc2"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567" / "mt30"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.parent.name)
    for i in range(chunks):
        os.link(source / f"chunk_{i % 2}.pt", snapshot / f"chunk_{i}.pt")
    return root


def test_hub_source_resolves_from_the_hf_cache_offline(source: Path, tmp_path: Path) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    cache = fake_hub_cache(tmp_path / "hf", source)
    out = prepare(
        "hub",
        tmp_path / "out",
        task_set="mt30",
        shard_episodes=4,
        cache_dir=str(cache),
        progress=False,
    )
    index = json.loads((out / "index.json").read_text())
    assert index["sources"] == [f"chunk_{i}.pt" for i in range(4)]
    assert index["episodes"] == 2 * (5 + 3)


def test_hub_source_missing_offline_says_what_to_download(source: Path, tmp_path: Path) -> None:
    cache = fake_hub_cache(tmp_path / "hf", source, chunks=1)
    with pytest.raises(
        DatasetDownloadError,
        match=r"mt30/chunk_1.pt.*hf download nicklashansen/tdmpc2"
        r" --repo-type dataset --include \"mt30/\*\".*source=/path",
    ):
        prepare("hub", tmp_path / "out", task_set="mt30", cache_dir=str(cache), progress=False)


def test_cli_prepare_info_verify(source: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = [f"source={source}", f"out={out}", "task_set=mt30", "shard_episodes=2", "progress=false"]
    assert cli(["prepare", *args]) == 0
    assert cli(["info", str(out)]) == 0
    table = capsys.readouterr().out
    assert "cartpole-balance" in table and "pendulum-spin" in table
    assert " 8 " in table.splitlines()[-1] and "4,000" in table  # 8 episodes, 8 x 500 steps
    summary = dataset_summary(out)
    assert summary["episodes"] == 8 and summary["transitions"] == 8 * 500
    unnamed = [{k: v for k, v in t.items() if k != "name"} for t in summary["tasks"]]
    assert [
        {k: v for k, v in t.items() if k != "name"} for t in dataset_summary(source)["tasks"]
    ] == unnamed  # chunks read directly agree with the index
    assert cli(["verify", f"path={out}"]) == 0
    assert "checksums ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prepare", "sorce=hub"], "Key 'sorce' not in 'PrepareConfig'"),
        (["info"], "missing mandatory value: path"),
        (["convert", "x"], "unknown command 'convert'"),
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str], message: str, capsys) -> None:
    assert cli(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_runs_as_a_module(source: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mt_factored.data", "info", str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "total" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "mt_factored.data", "info", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_prepared_dataset_has_the_task_ids_and_sizes(source: Path, tmp_path: Path) -> None:
    data = ShardedDataset(run(source, tmp_path / "out"), verify=True)
    assert data.num_episodes == 8 and data.num_shards == 5
    assert data.episode_tasks.tolist() == [t for tasks in CHUNK_TASKS for t in tasks]
    assert data.task_names == list(MT30.names)


def test_prepare_config_is_the_signature_of_prepare() -> None:
    """``data prepare key=value`` passes the whole PrepareConfig to `prepare` by name."""
    params = inspect.signature(prepare_module.prepare).parameters
    fields = {f.name: f.default for f in dataclasses.fields(PrepareConfig)}
    assert fields == {name: p.default for name, p in params.items()}

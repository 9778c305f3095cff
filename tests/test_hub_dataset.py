"""Publishing a dataset folder: one commit to a Hub dataset repo, --dry-run, checks (offline)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi
from huggingface_hub import constants as hf_constants
from test_data_chunks import episodes
from test_hub import SHA, RecordingHub

from mt_factored.data import WindowDataset, write_chunk
from mt_factored.data.export import export
from mt_factored.hub_commands import main as hub_main


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    write_chunk(root / "chunks" / "chunk_0.pt", episodes((8, 4, 8), seed=3))
    export(root / "chunks", root / "pq", progress=False)
    return root / "pq"


FILES = {
    "README.md",
    "meta/info.json",
    "data/cartpole-balance/train-00000-of-00001.parquet",
    "data/reacher-easy/train-00000-of-00001.parquet",
}


@pytest.fixture
def no_upload(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("no Hub call expected")

    for name in ("create_repo", "create_branch", "create_commit"):
        monkeypatch.setattr(HfApi, name, refuse)


def test_dry_run_lists_every_file_and_uploads_nothing(folder, no_upload, capsys) -> None:
    assert hub_main(["push-dataset", f"folder={folder}", "repo_id=me/data", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for name in FILES:
        assert f"| {name} |" in printed
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() in printed
    assert "https://huggingface.co/datasets/me/data" in printed and "nothing uploaded" in printed


def test_push_is_one_commit_to_a_dataset_repo(folder, tmp_path, monkeypatch, capsys) -> None:
    hub = RecordingHub().install(monkeypatch)
    args = ["push-dataset", str(folder), "repo_id=me/data", "private=true", "revision=v1"]
    assert hub_main(args) == 0
    assert [c[0] for c in hub.calls] == ["create_repo", "create_branch", "create_commit"]
    assert all(c[2]["repo_type"] == "dataset" for c in hub.calls)
    assert hub.calls[0][2]["private"] is True and hub.calls[1][2]["branch"] == "v1"
    _, (repo_id, operations), kwargs = hub.calls[2]
    assert repo_id == "me/data" and kwargs["revision"] == "v1"
    assert {op.path_in_repo for op in operations} == FILES
    assert f"commit/{SHA}" in capsys.readouterr().out

    # What was uploaded is the dataset: lay it out as a download would and train from it.
    got = tmp_path / "downloaded"
    for name, data in hub.uploaded.items():
        (got / name).parent.mkdir(parents=True, exist_ok=True)
        (got / name).write_bytes(data)
    a = WindowDataset(got, batch_size=16, seed=4).batch(0)
    for key, value in WindowDataset(folder, batch_size=16, seed=4).batch(0).items():
        assert torch.equal(a[key], value)


def test_push_refuses_offline_and_changed_files(folder, tmp_path, no_upload, capsys) -> None:
    args = ["push-dataset", f"folder={folder}", "repo_id=me/data"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
        assert hub_main(args) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    info = json.loads((changed / "meta/info.json").read_text())
    parquet = changed / sorted(info["files"])[0]
    parquet.write_bytes(parquet.read_bytes()[:-10])
    assert hub_main(["push-dataset", f"folder={changed}", "repo_id=me/data", "--dry-run"]) == 2
    assert "not what meta/info.json records" in capsys.readouterr().err
    assert hub_main(["push-dataset", f"folder={tmp_path}", "repo_id=me/data", "--dry-run"]) == 2
    assert "not a dataset folder" in capsys.readouterr().err
    assert hub_main(["push-dataset", f"folder={folder}", "repo_id=noslash", "--dry-run"]) == 2
    assert "ORG/NAME" in capsys.readouterr().err

"""``train ... publish.dir=``: the final student as a Hub model folder with its results card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from test_train import CARTPOLE, REACHER, compose_train, smoke_overrides
from tiny import write_tiny_chunk, write_tiny_expert

from mt_factored.hub.results import read_results
from mt_factored.student import FactoredStudent, read_lightning_checkpoint
from mt_factored.train import run


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("publish")
    assets = {"expert": write_tiny_expert(root / "expert.pt"), "data": root / "chunks"}
    write_tiny_chunk(
        assets["data"] / "chunk_0.pt",
        task_ids={CARTPOLE: 3, REACHER: 3},
        action_dims={CARTPOLE: 1, REACHER: 2},
        obs_dims={CARTPOLE: 5, REACHER: 6},
    )
    run_dir, folder = root / "run", root / "students" / "smoke"
    extra = [f"publish.dir={folder}", "publish.base_model=[me/teacher]", "trainer.max_steps=4"]
    results = run(compose_train(smoke_overrides(assets, run_dir, *extra)))
    return {"folder": folder, "run_dir": run_dir, "results": results, "assets": assets}


def card_metadata(folder: Path) -> dict:
    return yaml.safe_load((folder / "README.md").read_text().split("---")[1])


def test_the_folder_holds_the_final_student(published: dict) -> None:
    folder = published["folder"]
    assert {p.name for p in folder.iterdir()} == {
        "model.safetensors",
        "config.json",
        "README.md",
        "results.json",
    }
    trained = read_lightning_checkpoint(published["run_dir"] / "checkpoints" / "last.ckpt")
    loaded = FactoredStudent.from_pretrained(folder)
    for key, value in trained.student.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert (folder / "model.safetensors").stat().st_size < 5e6


def test_the_card_has_the_model_index_teacher_data_and_hardware(published: dict) -> None:
    folder, results = published["folder"], published["results"]
    meta = card_metadata(folder)
    assert meta["base_model"] == ["me/teacher"] and meta["library_name"] == "mt_factored"
    assert "datasets" not in meta  # the data were local files (named in the body)
    metrics = {r["dataset"]["name"]: r["metrics"][0] for r in meta["model-index"][0]["results"]}
    assert set(metrics) == {"cartpole-balance", "reacher-easy"}
    for task, stats in results["student"].items():
        assert metrics[task]["type"] == "mean_reward"
        assert metrics[task]["value"] == f"{stats.mean:.2f} +/- {stats.std:.2f}"
    body = (folder / "README.md").read_text()
    assert "| cartpole-balance |" in body and "Hardware" in body and "torch threads" in body
    assert "teacher: `" in body and str(published["assets"]["data"]) in body
    assert "python -m mt_factored.evaluate student=" in body and "planning.num_samples=64" in body
    saved, extra = read_results(folder / "results.json")  # what hub push results= reads
    assert saved["student"]["reacher-easy"].returns == results["student"]["reacher-easy"].returns
    assert extra["_meta"]["evaluation"]["episodes"] == 2
    assert json.loads((folder / "config.json").read_text())["format_version"] >= 1


def test_publishing_again_replaces_the_folder(published: dict) -> None:
    """A re-run (resumed at max_steps) rewrites the folder whole: no stale file survives."""
    folder = published["folder"]
    (folder / "stale.txt").write_text("from an earlier run")
    extra = [f"publish.dir={folder}", "trainer.max_steps=4"]
    run(compose_train(smoke_overrides(published["assets"], published["run_dir"], *extra)))
    assert not (folder / "stale.txt").exists()
    assert (folder / "model.safetensors").is_file()
    assert "base_model" not in card_metadata(folder)  # a local teacher: named in the body only


# ------------------------------------------------------------------ replaying a card's returns
def card_returns(folder: Path) -> dict[str, str]:
    """Task -> the card's model-index value ("mean +/- std")."""
    results = card_metadata(folder)["model-index"][0]["results"]
    return {r["dataset"]["name"]: r["metrics"][0]["value"] for r in results}


def replay(folder: Path, task: str) -> str:
    """Run the card's evaluate command for one task; its "mean +/- std"."""
    from mt_factored import cli
    from mt_factored.evaluate import run as evaluate

    body = (folder / "README.md").read_text()
    lines = [ln for ln in body.splitlines() if ln.startswith("python -m mt_factored.evaluate")]
    line = lines[-1]  # the Training section's (the Use section's is an example)
    args = [a for a in line.split()[3:] if not a.startswith(("tasks=", "student="))]
    args += [f"student={folder}", f"tasks=[{task}]", "out_dir=."]
    threads = torch.get_num_threads()
    try:
        stats = evaluate(cli.compose("evaluate", args))["student"][task]
    finally:
        torch.set_num_threads(threads)
    return f"{stats.mean:.2f} +/- {stats.std:.2f}"


def test_evaluate_replays_the_cards_returns(published: dict, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = published["folder"]
    assert replay(folder, "reacher-easy") == card_returns(folder)["reacher-easy"]


# ------------------------------------------------------------ the student shipped in the repo
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "students" / "quickstart"
shipped = pytest.mark.skipif(
    not (SHIPPED / "config.json").is_file(), reason="no student shipped in checkpoints/students"
)


@shipped
def test_the_shipped_student_loads_from_its_folder_and_an_offline_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants as hf_constants
    from test_hub import assert_same_student, fake_hf_cache

    student = FactoredStudent.from_pretrained(SHIPPED)
    assert set(card_returns(SHIPPED)) <= set(student.config.task_names)
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 5e6
    cache = tmp_path / "hf" / "hub"
    files = {p.name: p for p in SHIPPED.iterdir() if p.is_file()}
    fake_hf_cache(cache, "me/quickstart-student", files)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert_same_student(student, FactoredStudent.from_pretrained("me/quickstart-student"))


@shipped
@pytest.mark.slow
def test_evaluate_replays_the_shipped_students_card(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    task = "cartpole-balance" if "cartpole-balance" in card_returns(SHIPPED) else None
    task = task or sorted(card_returns(SHIPPED))[0]
    assert replay(SHIPPED, task) == card_returns(SHIPPED)[task]

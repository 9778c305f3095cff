"""The Lightning distillation run: recipes compose, smoke run learns, exact resume, clear errors."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import write_tiny_chunk, write_tiny_expert

from mt_factored import cli
from mt_factored.artifacts.configs import as_object
from mt_factored.constants import RECIPES_DIR
from mt_factored.training import build
from mt_factored.training.config import FinetuneConfig, TrainConfig

CARTPOLE, REACHER = 8, 4  # mt30 ids of cartpole-balance and reacher-easy


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    expert = write_tiny_expert(root / "expert.pt")
    data = root / "chunks"
    write_tiny_chunk(
        data / "chunk_0.pt",
        task_ids={CARTPOLE: 3, REACHER: 3},
        action_dims={CARTPOLE: 1, REACHER: 2},
        obs_dims={CARTPOLE: 5, REACHER: 6},
    )
    return {"expert": expert, "data": data}


def smoke_overrides(assets: dict[str, Path], run_dir: Path, *extra: str) -> list[str]:
    return [
        "recipe=smoke",
        "name=test",
        f"expert={assets['expert']}",
        "expert_model_size=auto",
        f"data={assets['data']}",
        "tasks=[cartpole-balance,reacher-easy]",
        f"run_dir={run_dir}",
        "logger=csv_tensorboard",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


def compose_train(overrides: list[str]):
    return cli.compose("train", overrides=overrides)


RECIPES = sorted(p.stem for p in (RECIPES_DIR / "recipe").glob("*.yaml"))


def command_of(recipe: str) -> str:
    """The command a recipe is written for (finetune recipes extend a pretrained student)."""
    return "finetune" if recipe.startswith("finetune") else "train"


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_and_builds(recipe: str, tmp_path) -> None:
    """Every recipe composes against the schema and builds what it describes: the typed
    config (every __post_init__ check), the student, the loss and optimiser, the evaluation
    callback and the Lightning trainer (the expert and data are files: the runs test them)."""
    cfg = cli.compose(command_of(recipe), [f"recipe={recipe}", "name=x", f"run_dir={tmp_path}"])
    assert cfg.trainer.max_steps > 0
    assert cfg.distill.num_noise_samples > 0
    assert cfg.planning.num_samples >= cfg.planning.num_elites
    config = as_object(cfg)
    assert isinstance(config, FinetuneConfig if command_of(recipe) == "finetune" else TrainConfig)
    task_set, tasks = build.build_task_set(config)
    module = build.build_module(config, task_set, expert=None)
    assert module.student.config.num_tasks == len(task_set)
    assert isinstance(module.configure_optimizers(), torch.optim.Adam)
    callback = build.build_eval_callback(config, task_set, tasks)
    assert callback.student_planning.num_samples <= config.planning.num_samples
    trainer = build.build_trainer(config, tmp_path, callbacks=[callback])
    assert trainer.max_steps == config.trainer.max_steps


def student_state(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("student.")}


def test_resume_matches_uninterrupted_run(assets, tmp_path) -> None:
    from mt_factored.train import run

    # Epochs of 3 batches: the 8 steps cross two epoch boundaries, the interruption at
    # step 4 falls inside the second epoch.
    epochs = ("trainer.limit_train_batches=3", "eval.at_end=false")
    straight = tmp_path / "straight"
    run(compose_train(smoke_overrides(assets, straight, "trainer.max_steps=8", *epochs)))
    resumed = tmp_path / "resumed"
    run(compose_train(smoke_overrides(assets, resumed, "trainer.max_steps=4", *epochs)))
    ckpt = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4
    run(compose_train(smoke_overrides(assets, resumed, "trainer.max_steps=8", *epochs)))

    a, b = student_state(straight), student_state(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)

    # Re-running the finished run trains nothing more but still evaluates and reports.
    again = run(
        compose_train(
            smoke_overrides(assets, resumed, "trainer.max_steps=8", "trainer.limit_train_batches=3")
        )
    )
    assert set(again["student"]) == {"cartpole-balance", "reacher-easy"}
    torch.testing.assert_close(student_state(resumed), b, rtol=0, atol=0)


def test_missing_data_and_expert_say_what_to_run(assets, tmp_path) -> None:
    from mt_factored.expert.resolve import ExpertNotFoundError
    from mt_factored.train import run
    from mt_factored.training.build import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match="mt_factored.data prepare source=hub"):
        run(compose_train(smoke_overrides(assets, tmp_path, f"data={tmp_path / 'nope'}")))
    with pytest.raises(ExpertNotFoundError, match="hf download nicklashansen/tdmpc2"):
        run(compose_train(smoke_overrides(assets, tmp_path, f"expert={tmp_path / 'nope.pt'}")))
    hub = "expert=hub:nicklashansen/tdmpc2/multitask/mt30-5M.pt"
    with pytest.raises(ExpertNotFoundError, match="multitask/mt30-5M.pt"):
        run(compose_train(smoke_overrides(assets, tmp_path, hub)))


def read_losses(run_dir: Path) -> list[float]:
    (metrics,) = (run_dir / "logs" / "csv").glob("version_*/metrics.csv")
    with open(metrics) as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_smoke_command_trains_and_prints_table(assets, tmp_path) -> None:
    """The real command in a subprocess: the distillation loss falls, a table is printed."""
    cmd = [
        sys.executable,
        "-m",
        "mt_factored.train",
        *smoke_overrides(
            assets,
            tmp_path,
            "trainer.max_steps=60",
            "trainer.log_every_n_steps=1",
            "optim.lr=3e-3",
            "eval.student_planning={num_samples: 16, num_elites: 4, num_pi_trajs: 2}",
        ),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| cartpole-balance |" in out.stdout and "student return" in out.stdout
    # The student planned with its own budget; its latency at the expert's is shown too.
    assert "student ms/step (16x2)" in out.stdout and "expert ms/step (64x2)" in out.stdout
    assert "student ms/step (64x2) | speedup at equal budget" in out.stdout
    losses = read_losses(tmp_path)
    assert len(losses) >= 50
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()

    # The trained student plans in dm_control through the evaluate entry point.
    cmd = [
        sys.executable,
        "-m",
        "mt_factored.evaluate",
        f"student={last}",
        "tasks=[reacher-easy]",
        "episodes=1",
        "max_steps=5",
        "latency_repeats=1",
        "planning.num_samples=16",
        "planning.num_elites=2",
        "planning.num_pi_trajs=2",
        f"out_dir={tmp_path / 'eval'}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "student: 1 episodes per task" in out.stdout and "| reacher-easy |" in out.stdout


def test_the_smoke_recipe_files_are_what_tiny_writes(tmp_path) -> None:
    """mt_factored/assets/smoke is `write_smoke_assets` output (regenerate: python tests/tiny.py)."""
    from tiny import write_smoke_assets

    from mt_factored.constants import PACKAGE_ASSETS_DIR
    from mt_factored.data import read_chunk
    from mt_factored.expert import read_checkpoint

    fresh = write_smoke_assets(tmp_path)
    shipped = PACKAGE_ASSETS_DIR / "smoke"
    a, b = read_checkpoint(shipped / fresh["expert"].name), read_checkpoint(fresh["expert"])
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    a, b = read_chunk(shipped / "data" / "chunk_0.pt"), read_chunk(fresh["data"])
    for key in ("obs", "action", "reward", "task"):  # actions and rewards hold NaN in row 0
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True)
    total = sum(p.stat().st_size for p in shipped.rglob("*") if p.is_file())
    assert total < 300_000, total  # a few hundred KB at most

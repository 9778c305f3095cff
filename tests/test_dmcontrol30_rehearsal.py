"""The main job's recipe (``recipe=dmcontrol30``) runs as written on all 30 tasks, with only
the files (a tiny expert, one episode per task) and the run's length swapped: the full-shape
rehearsal (benchmarks/rehearse_dmcontrol30.py) in seconds, so the recipe cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import write_tiny_chunk, write_tiny_expert

from mt_factored import cli
from mt_factored.tasks import get_task_set
from mt_factored.training.profile import PHASES, batch_digest


@pytest.fixture(scope="module")
def mt30_assets(tmp_path_factory) -> dict[str, Path]:
    """A tiny random mt30 expert and one official-format episode of each of the 30 tasks."""
    root = tmp_path_factory.mktemp("mt30")
    tasks = get_task_set("mt30")
    ids = range(len(tasks))
    write_tiny_chunk(
        root / "chunks" / "chunk_0.pt",
        task_ids={t: 1 for t in ids},
        action_dims={t: tasks.action_dims[t] for t in ids},
        obs_dims={t: tasks.obs_dims[t] for t in ids},
    )
    return {"expert": write_tiny_expert(root / "expert.pt"), "data": root / "chunks"}


def test_dmcontrol30_recipe_trains_on_30_tasks(mt30_assets, tmp_path) -> None:
    from mt_factored.data import WindowDataset
    from mt_factored.train import run

    profile = tmp_path / "profile.json"
    cfg = cli.compose(
        "train",
        [
            "recipe=dmcontrol30",
            "name=dmcontrol30",  # composed in-process: no Hydra run to name it
            f"expert={mt30_assets['expert']}",
            "expert_model_size=auto",  # the tiny expert's sizes, not the 5M ones
            f"data={mt30_assets['data']}",
            f"run_dir={tmp_path / 'run'}",
            "threads=1",
            "loader.num_workers=0",
            "trainer.max_steps=4",
            "trainer.limit_train_batches=2",  # 2 epochs
            "eval.at_end=false",
            "logger=none",
            "trainer.enable_progress_bar=false",
            f"profile={profile}",
        ],
    )
    # What the recipe itself sets reaches the run.
    assert (cfg.loader.batch_size, cfg.loader.horizon, cfg.optim.lr) == (512, 3, 1e-4)
    assert cfg.trainer.gradient_clip_val == 10.0 and cfg.task_set == "mt30"
    run(cfg)

    out = json.loads(profile.read_text())
    assert out["steps"] == 4 and set(out["seconds"]) == set(PHASES)
    assert all(v >= 0 for row in out["rows"] for v in row.values())
    assert out["seconds"]["expert"] > 0 and out["peak_rss_mb"] > 0
    # Every batch mixes the 30 tasks (1 to 6 joints); 2 epochs train on stream batches 0-3.
    assert min(out["tasks_per_batch"]) == 30 and sum(out["task_windows"]) == 4 * 512
    stream = WindowDataset(str(mt30_assets["data"]), batch_size=512, horizon=3, seed=cfg.seed)
    assert out["batch_digests"] == [batch_digest(stream.batch(k)) for k in range(4)]

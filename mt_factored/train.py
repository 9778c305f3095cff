"""Distill an expert into the factored student.

    python -m mt_factored.train recipe=dmcontrol30 [expert=... data=... trainer.devices=2 ...]

Compose the recipe -> build expert, data, student -> fit with Lightning -> print the
evaluation table (-> with ``publish.dir=``, write the final student as a Hub model folder).
Re-running the same command resumes from ``<run_dir>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.artifacts.configs import as_object, plain
from mt_factored.constants import LAST_CKPT_NAME, REPO_ROOT
from mt_factored.data.parquet_store import HUB_PREFIX as HUB_DATASET
from mt_factored.expert.resolve import HUB_PREFIX as HUB_EXPERT
from mt_factored.hub.publish import publish_student
from mt_factored.planning.base import MPPIConfig
from mt_factored.planning.episodes import EpisodeConfig
from mt_factored.training import build
from mt_factored.training.config import TrainConfig

log = logging.getLogger(__name__)


def evaluation_settings(cfg: TrainConfig) -> dict:
    """The student's final evaluation: episode settings and the MPPI fields that differ from
    the defaults (what ``python -m mt_factored.evaluate`` needs to replay it)."""
    planning = build.student_planning_config(cfg) or cfg.planning
    default = MPPIConfig()
    changed = {
        f.name: getattr(planning, f.name)
        for f in dataclasses.fields(MPPIConfig)
        if getattr(planning, f.name) != getattr(default, f.name)
    }
    episodes = dataclasses.asdict(EpisodeConfig.of(cfg.eval))
    return {**episodes, "threads": torch.get_num_threads(), "planning": changed}


def repo_relative(value):
    """Paths inside the repository checkout as the card shows them (relative to it)."""
    if isinstance(value, dict):
        return {k: repo_relative(v) for k, v in value.items()}
    if isinstance(value, list):
        return [repo_relative(v) for v in value]
    if isinstance(value, str) and Path(value).is_absolute():
        path = Path(value).resolve()
        if path.is_relative_to(REPO_ROOT):
            return path.relative_to(REPO_ROOT).as_posix()
    return value


def publish(cfg: TrainConfig, run_dir: Path, results: dict, wall_s: float) -> Path:
    """``publish.dir``: the final student as a Hub model folder (see hub/publish.py)."""
    data, expert = plain(cfg.data), plain(cfg.expert)
    datasets = cfg.publish.datasets
    if datasets is None:  # only what is known: a Hub dataset the run read, else none
        hub = isinstance(data, str) and data.startswith(HUB_DATASET)
        datasets = [data[len(HUB_DATASET) :].split("@")[0]] if hub else []
    base_model = cfg.publish.base_model
    if base_model is None and isinstance(expert, str) and expert.startswith(HUB_EXPERT):
        base_model = ["/".join(expert[len(HUB_EXPERT) :].split("/")[:2])]
    folder = publish_student(
        run_dir / "checkpoints" / LAST_CKPT_NAME,
        cfg.publish.dir,
        {k: v for k, v in results.items() if v},
        evaluation=evaluation_settings(cfg),
        teacher=repo_relative(expert),
        data=repo_relative(data),
        repo_id=cfg.publish.repo_id,
        datasets=list(datasets),
        base_model=list(base_model) if base_model else None,
        wall_s=wall_s,
        shown_folder=repo_relative(str(Path(cfg.publish.dir).absolute())),
    )
    log.info("published the final student to %s", folder)
    return folder


def run(cfg: DictConfig | TrainConfig) -> dict:
    """Train as ``cfg`` says; returns the last evaluation results (student, expert)."""
    cfg = as_object(cfg)
    start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    task_set, tasks = build.build_task_set(cfg)
    expert = build.build_expert(cfg)
    datamodule = build.build_datamodule(cfg, task_set, tasks)
    module = build.build_module(cfg, task_set, expert)
    evaluator = build.build_eval_callback(cfg, task_set, tasks)
    fidelity = build.build_fidelity_callback(cfg, task_set, tasks)
    extra = [fidelity] if fidelity is not None else []
    results = build.fit_and_report(cfg, run_dir, module, datamodule, evaluator, extra)
    if cfg.publish.dir and rank_zero_only.rank == 0:
        publish(cfg, run_dir, results, time.perf_counter() - start)
    return results


def main() -> int:
    return cli.main("mt_factored.train", "train", run, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())

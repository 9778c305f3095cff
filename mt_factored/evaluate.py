"""Evaluate experts and students in dm_control.

    python -m mt_factored.evaluate "expert={cartpole-balance: checkpoints/quickstart/cartpole-balance.pt}" \
        tasks=[cartpole-balance] episodes=10 video=true

Prints a table per model (mean ± std return, planning ms per step for one env) and,
when both an expert and a student are given, the comparison with the speedup.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mt_factored.constants import RECIPES_DIR
from mt_factored.expert.resolve import load_expert
from mt_factored.planning.base import MPPIConfig, PlanningModel
from mt_factored.planning.episodes import EpisodeStats, evaluate_tasks
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.mppi import MPPIPlanner
from mt_factored.planning.student_adapter import StudentPlanningModel
from mt_factored.report import comparison_table, returns_table
from mt_factored.tasks import get_task_set

log = logging.getLogger(__name__)


def load_student(path: str, device: str):
    """A student from a Lightning checkpoint or a saved student folder."""
    from mt_factored.lit.module import DistillModule

    p = Path(path)
    if p.is_file() and p.suffix == ".ckpt":
        return DistillModule.load_from_checkpoint(p, map_location=device).student
    if p.is_dir() or not p.exists():
        from mt_factored.student import FactoredStudent

        return FactoredStudent.from_pretrained(path)
    raise ValueError(
        f"student={path}: expected a Lightning .ckpt file or a student folder / Hub id"
    )


def evaluate_model(
    name: str,
    model: PlanningModel,
    obs_dim: int,
    task_ids: dict[str, int],
    cfg: DictConfig,
    progress: Progress,
) -> dict[str, EpisodeStats]:
    """Run ``model`` on every task of ``task_ids``; adds single-env latency to each result."""
    planning = MPPIConfig(**OmegaConf.to_container(cfg.planning, resolve=True))
    planner = MPPIPlanner(model, planning, generator=cfg.seed)

    def progress_bar(task: str):
        bar = progress.add_task(f"{name} {task}", total=cfg.max_steps or 500)
        return lambda n: progress.update(bar, completed=n)

    return evaluate_tasks(
        planner,
        task_ids,
        obs_dim,
        latency_repeats=cfg.latency_repeats,
        video_dir=cfg.out_dir if cfg.video else None,
        video_prefix=f"{name}-",
        on_task=progress_bar,
        episodes=cfg.episodes,
        seed=cfg.seed,
        device=cfg.device,
        eval_mode=cfg.eval_mode,
        max_steps=cfg.max_steps,
    )


def run(cfg: DictConfig) -> dict[str, dict[str, EpisodeStats]]:
    if cfg.expert is None and cfg.student is None:
        raise ValueError("nothing to evaluate: pass expert=... and/or student=...")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    task_set = get_task_set(cfg.task_set)
    task_ids = {task: task_set.index(task) for task in cfg.tasks}
    results: dict[str, dict[str, EpisodeStats]] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        if cfg.expert is not None:
            spec = (
                OmegaConf.to_container(cfg.expert)
                if OmegaConf.is_config(cfg.expert)
                else cfg.expert
            )
            expert = load_expert(spec, task_set=cfg.task_set, model_size=cfg.expert_model_size)
            expert = expert.to(cfg.device).eval() if isinstance(expert, torch.nn.Module) else expert
            results["expert"] = evaluate_model(
                "expert", ExpertPlanningModel(expert), expert.obs_dim, task_ids, cfg, progress
            )
        if cfg.student is not None:
            student = load_student(cfg.student, cfg.device).to(cfg.device).eval()
            results["student"] = evaluate_model(
                "student",
                StudentPlanningModel(student),
                student.config.obs_dim,
                task_ids,
                cfg,
                progress,
            )
    for name, res in results.items():
        print(
            f"\n{name}: {cfg.episodes} episodes per task, seed {cfg.seed}, "
            f"{torch.get_num_threads()} threads"
        )
        print(returns_table(res))
    if "expert" in results and "student" in results:
        print("\nstudent vs expert")
        print(comparison_table(results["student"], results["expert"]))
    if cfg.out:
        write_results_json(cfg.out, results)
    return results


def write_results_json(
    path: str | os.PathLike, results: dict[str, dict[str, EpisodeStats]]
) -> None:
    """Results per model and task, plus ``_meta.hardware`` (read by the Hub model card)."""
    from mt_factored.hub.card import hardware_info

    data: dict = {
        model: {
            task: {
                "returns": s.returns,
                "mean": s.mean,
                "std": s.std,
                "plan_ms_single_env": s.plan_ms_single_env,
                "plan_ms_per_call": s.plan_ms_per_call,
                "envs_per_call": s.envs_per_call,
            }
            for task, s in res.items()
        }
        for model, res in results.items()
    }
    data["_meta"] = {"hardware": hardware_info()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


@hydra.main(version_base="1.3", config_path=str(RECIPES_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()

"""Evaluation runs: every model plans every task in dm_control; returns, single-env planning
latency and videos, the tables and the results JSON (read by the Hub model card)."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from mt_factored.analysis.config import EvaluateConfig, ModelRunConfig
from mt_factored.analysis.models import EXPERT, STUDENT, LoadedModel, load_models
from mt_factored.analysis.video import combine_videos
from mt_factored.artifacts.atomic import write_json
from mt_factored.artifacts.progress import progress_bars as command_progress_bars
from mt_factored.errors import InputError
from mt_factored.hub.results import results_json
from mt_factored.planning.base import PlanningModel
from mt_factored.planning.episodes import EpisodeConfig, EpisodeStats, evaluate_tasks
from mt_factored.planning.mppi import MPPIPlanner
from mt_factored.planning.policy_actor import PolicyActor
from mt_factored.planning.report import comparison_table, returns_table

log = logging.getLogger(__name__)


def actor_of(model: PlanningModel, cfg: EvaluateConfig) -> MPPIPlanner | PolicyActor:
    """What acts in the episodes: MPPI with ``cfg.planning`` seeded with ``cfg.seed``, or the
    policy prior alone (``mpc=false``)."""
    if cfg.mpc:
        return MPPIPlanner(model, cfg.planning, generator=cfg.seed)
    return PolicyActor(model)


def evaluate_model(
    name: str,
    model: PlanningModel,
    obs_dim: int,
    task_ids: dict[str, int],
    cfg: EvaluateConfig,
    progress: Any,
) -> dict[str, EpisodeStats]:
    """Run ``model`` on every task of ``task_ids``; adds single-env latency to each result.
    ``progress``: a rich Progress for the step bars, or None."""
    planner = actor_of(model, cfg)

    def progress_bar(task: str):
        if progress is None:
            return None
        bar = progress.add_task(f"{name} {task}", total=cfg.max_steps or 500)
        return lambda n: progress.update(bar, completed=n)

    return evaluate_tasks(
        planner,
        task_ids,
        obs_dim,
        EpisodeConfig.of(cfg),
        cfg.device,
        video_dir=cfg.out_dir if cfg.video else None,
        video_prefix=f"{name}-",
        on_task=progress_bar,
    )


def progress_bars(enabled: bool = True) -> Any:
    """Bars of control steps per model and task, with rate and ETA (None when disabled)."""
    return command_progress_bars(enabled, "steps")


def models_of(cfg: ModelRunConfig) -> dict[str, LoadedModel]:
    """The expert and the student ``cfg`` names (evaluate, robustness, viz)."""
    if cfg.expert is None and cfg.student is None:
        raise InputError("nothing to evaluate: pass expert=... and/or student=...")
    models = load_models(cfg, cfg.student)
    if isinstance(cfg, EvaluateConfig) and not cfg.mpc:  # evaluate and robustness
        lacking = [name for name, m in models.items() if not m.policy_prior]
        if lacking:
            raise InputError(
                f"mpc=false acts with the policy prior, and {lacking} has none "
                "(trained with student.use_policy_prior=false): plan with MPPI (mpc=true)"
            )
    return models


def run_evaluation(cfg: EvaluateConfig) -> dict:
    """Every model on every task; prints the tables, writes ``cfg.out`` when set.

    Returns:
        ``{model: {task: EpisodeStats}}``.
    """
    results: dict[str, dict[str, EpisodeStats]] = {}
    models = models_of(cfg)
    with progress_bars(cfg.progress_bar) as progress:
        for name, m in models.items():
            # generator=None: the policy samples draw their seed from torch's global RNG
            results[name] = evaluate_model(
                name, m.planning_model(), m.obs_dim, m.task_ids, cfg, progress
            )
    for name, res in results.items():
        print(
            f"\n{name}: {cfg.episodes} episodes per task, seed {cfg.seed}, "
            f"{torch.get_num_threads()} threads"
        )
        print(returns_table(res))
    if EXPERT in results and STUDENT in results:
        print("\nstudent vs expert")
        print(comparison_table(results[STUDENT], results[EXPERT]))
    if cfg.video and (cfg.video_layout != "separate" or cfg.filmstrip):
        order = [m for m in (STUDENT, EXPERT) if m in results]  # student on the left
        combine_videos(
            cfg.out_dir,
            order,
            list(cfg.tasks),
            layout=cfg.video_layout,
            filmstrip_frames=cfg.filmstrip,
        )
    if cfg.out:
        write_results_json(cfg.out, results)
    return results


def write_results_json(
    path: str | os.PathLike, results: dict[str, dict[str, EpisodeStats]]
) -> None:
    """Results per model and task, plus ``_meta.hardware`` (read by the Hub model card)."""
    write_json(path, results_json(results))

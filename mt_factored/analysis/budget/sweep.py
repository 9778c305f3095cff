"""The planning-budget sweep (Fac-TDMPC Fig. 7): return and latency over MPPI samples x iterations.

    python -m mt_factored.budget_sweep students=runs/quickstart/checkpoints/last.ckpt \
        "expert={cartpole-balance: checkpoints/quickstart/cartpole-balance.pt}" \
        tasks=[cartpole-balance] episodes=5

Every (model, budget, task) cell runs ``episodes`` episodes with its own freshly
seeded planner and times single-env planning calls. The results JSON is rewritten
after each cell; re-running with the same ``out=`` skips the finished cells. At the
end it prints a table per model and the smallest budget that keeps
``keep_fraction`` of each model's return at the reference budget (512 x 6), and
draws the plots (see :mod:`mt_factored.analysis.budget.plots`).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from rich import box
from rich.console import Console
from rich.table import Table

from mt_factored.analysis.budget.grid import Budget, budget_config, build_grid
from mt_factored.analysis.budget.plots import plot_return_grid, plot_return_vs_latency
from mt_factored.analysis.budget.results import SweepFile
from mt_factored.analysis.budget.selection import selection_summary
from mt_factored.analysis.config import BudgetSweepConfig
from mt_factored.analysis.models import EXPERT, LoadedModel, load_models
from mt_factored.artifacts.progress import progress_bars
from mt_factored.errors import InputError
from mt_factored.planning.base import MPPIConfig
from mt_factored.planning.episodes import EpisodeConfig, evaluate_tasks
from mt_factored.planning.mppi import MPPIPlanner

log = logging.getLogger(__name__)


def sweep_models(cfg: BudgetSweepConfig, tasks: list[str]) -> list[LoadedModel]:
    """The students (``students=``: a path or {label: path}) then the expert (``expert=``)."""
    students = cfg.students
    if not students and cfg.expert is None:
        raise InputError("nothing to sweep: pass students=... and/or expert=...")
    models = load_models(cfg, students, tasks=tasks)
    return [m for label, m in models.items() if label != EXPERT] + (
        [models[EXPERT]] if EXPERT in models else []
    )


def run_cell(
    m: LoadedModel,
    planning: MPPIConfig,
    task: str,
    cfg: BudgetSweepConfig,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """One (model, budget, task): episodes and single-env latency with a fresh planner."""
    # A fresh planner and model view seeded per cell: a cell's result does not depend on
    # the cells run before it, so a resumed sweep matches an uninterrupted one.
    planner = MPPIPlanner(m.planning_model(generator=cfg.seed), planning, generator=cfg.seed)
    start = time.perf_counter()
    stats = evaluate_tasks(
        planner,
        {task: m.task_ids[task]},
        m.obs_dim,
        EpisodeConfig.of(cfg),
        cfg.device,
        on_task=lambda _: on_step,
    )[task]
    return {
        "returns": stats.returns,
        "mean": stats.mean,
        "std": stats.std,
        "plan_ms": stats.plan_ms_single_env,
        "plan_ms_per_call": stats.plan_ms_per_call,
        "envs_per_call": stats.envs_per_call,
        "num_elites": planning.num_elites,
        "num_pi_trajs": planning.num_pi_trajs,
        "wall_s": time.perf_counter() - start,
    }


def run_sweep(cfg: BudgetSweepConfig) -> SweepFile:
    """Run the missing cells of the sweep, then write the selection, tables and plots."""
    # Check everything cheap before loading models or running episodes.
    grid = build_grid(cfg.grid.num_samples, cfg.grid.iterations)
    reference = Budget(int(cfg.reference.num_samples), int(cfg.reference.iterations))
    if reference not in grid:
        raise InputError(
            f"the grid must contain the reference budget {reference.label} (the 95% rule "
            f"compares with it); add it or set reference.num_samples / reference.iterations"
        )
    base, scaling = cfg.planning, cfg.scaling
    for budget in grid:  # a budget too small for the scaling raises here, not mid-sweep
        budget_config(budget, base, scaling)
    tasks = list(cfg.tasks)
    if not tasks or len(set(tasks)) != len(tasks):
        raise InputError(f"tasks must be a non-empty list of distinct task names, got {tasks}")
    if cfg.latency_repeats < 1:
        raise InputError("latency_repeats must be >= 1: the sweep compares single-env latency")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))

    models = sweep_models(cfg, tasks)
    settings = {
        "task_set": cfg.task_set,
        "episodes": cfg.episodes,
        "seed": cfg.seed,
        "max_steps": cfg.max_steps,
        "eval_mode": cfg.eval_mode,
        "device": cfg.device,
        "threads": torch.get_num_threads(),
        "latency_repeats": cfg.latency_repeats,
        "planning": {k: v for k, v in asdict(base).items() if k not in _BUDGET_FIELDS},
        "scaling": asdict(scaling),
    }
    sweep = SweepFile(cfg.out, settings)
    for m in models:
        sweep.add_model(m.label, {"kind": m.kind, "path": m.source, "params": m.num_parameters})
    sweep.write()

    todo = [(m, b, t) for m in models for b in grid for t in tasks if not sweep.has(m.label, b, t)]
    done = len(models) * len(grid) * len(tasks) - len(todo)
    if done:
        log.info("%s: %d cells already done, %d to run", sweep.path, done, len(todo))
    steps = cfg.max_steps or 500
    with progress_bars(cfg.progress_bar, "steps") as progress:
        overall = progress.add_task("cells", total=len(todo)) if progress else None
        for m, budget, task in todo:
            planning = budget_config(budget, base, scaling, policy_prior=m.policy_prior)
            on_step = None
            if progress:
                bar = progress.add_task(f"{m.label} {budget.label} {task}", total=steps)
                on_step = lambda n, bar=bar: progress.update(bar, completed=n)  # noqa: E731
            result = run_cell(m, planning, task, cfg, on_step=on_step)
            sweep.put(m.label, budget, task, result)
            if progress:
                progress.remove_task(bar)
                progress.advance(overall)

    labels = [m.label for m in models]
    sweep.data["selection"] = {
        label: selection_summary(
            _cells(sweep, label, grid), tasks, reference, float(cfg.keep_fraction)
        )
        for label in labels
    }
    sweep.write()
    print_tables(sweep, labels, grid, tasks, reference)
    data = {**sweep.data, "cells": {label: _cells(sweep, label, grid) for label in labels}}
    prefix = f"{cfg.plot_dir}/{cfg.plot_prefix}"
    for path in (
        plot_return_vs_latency(
            data, tasks, reference, f"{prefix}return_vs_ms.png", float(cfg.keep_fraction)
        ),
        plot_return_grid(data, tasks, reference, f"{prefix}grid.png"),
    ):
        print(f"wrote {path}")
    print(f"results: {sweep.path}")
    return sweep


_BUDGET_FIELDS = ("num_samples", "iterations", "num_elites", "num_pi_trajs")


def _cells(sweep: SweepFile, label: str, grid: list[Budget]) -> dict[str, dict[str, Any]]:
    """This run's budgets of one model (the file may hold more from earlier sweeps)."""
    stored = sweep.data["cells"].get(label, {})
    return {b.label: stored[b.label] for b in grid if b.label in stored}


def print_tables(
    sweep: SweepFile, labels: list[str], grid: list[Budget], tasks: list[str], reference: Budget
) -> None:
    """Per model: every budget's returns and ms; then the smallest budget per task."""
    console = Console(width=max(120, 40 + 24 * len(tasks)))
    for label in labels:
        cells = _cells(sweep, label, grid)
        ref_mean = statistics.fmean(cells[reference.label][t]["mean"] for t in tasks)
        table = Table(
            title=f"{label}: return (mean ± std over {sweep.data['settings']['episodes']} "
            "episodes) · planning ms/step (1 env)",
            box=box.MARKDOWN,
        )
        for col in ("budget", "elites", "π trajs", *tasks, "mean return", "% of ref", "mean ms"):
            table.add_column(col, justify="left" if col == "budget" else "right")
        for budget in grid:
            row = cells.get(budget.label, {})
            if not all(t in row for t in tasks):
                continue
            first = row[tasks[0]]
            mean = statistics.fmean(row[t]["mean"] for t in tasks)
            ms = statistics.fmean(row[t]["plan_ms"] for t in tasks)
            name = f"**{budget.label}**" if budget == reference else budget.label
            table.add_row(
                name,
                str(first["num_elites"]),
                str(first["num_pi_trajs"]),
                *(
                    f"{row[t]['mean']:.1f} ± {row[t]['std']:.1f} · {row[t]['plan_ms']:.1f}"
                    for t in tasks
                ),
                f"{mean:.1f}",
                f"{100 * mean / ref_mean:.0f}%" if ref_mean else "-",
                f"{ms:.1f}",
            )
        console.print(table)

    fraction = next(iter(sweep.data["selection"].values()))["fraction"]
    table = Table(
        title=f"smallest budget keeping >= {fraction:.0%} of the return at {reference.label} "
        "(none: no cheaper budget does)",
        box=box.MARKDOWN,
    )
    for col in (
        "model",
        "over",
        "budget",
        "return",
        f"return at {reference.label}",
        "ratio",
        "ms/step",
        f"ms at {reference.label}",
        "speedup",
    ):
        table.add_column(col, justify="left" if col in ("model", "over", "budget") else "right")
    for label in labels:
        for key, r in sweep.data["selection"][label]["rows"].items():
            if len(tasks) == 1 and key not in tasks:
                continue  # the mean and all-tasks rows repeat the one task
            found = r["budget"] is not None
            table.add_row(
                label,
                key.replace("_", " "),
                r["budget"] or f"none (keep {reference.label})",
                f"{r['return']:.1f}" if found else "-",
                f"{r['reference_return']:.1f}",
                f"{r['ratio']:.2f}" if found and r["ratio"] is not None else "-",
                f"{r['plan_ms']:.1f}" if found else "-",
                f"{r['reference_ms']:.1f}",
                f"{r['speedup']:.1f}x" if found and r["speedup"] is not None else "-",
            )
    console.print(table)

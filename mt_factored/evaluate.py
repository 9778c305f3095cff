"""Evaluate experts and students in dm_control.

    python -m mt_factored.evaluate "expert={cartpole-balance: checkpoints/quickstart/cartpole-balance.pt}" \
        tasks=[cartpole-balance] episodes=10 video=true

Prints a table per model (mean ± std return, planning ms per step for one env) and,
when both an expert and a student are given, the comparison with the speedup.

Robustness (Fac-TDMPC Sec. 5.5): ``perturb=dummy:*`` (or ``scale:<joint>:<factor>``, a
list of specs; see :mod:`mt_factored.planning.perturb`) runs every model unperturbed and
with each perturbation, prints a table, and writes ``robustness.json`` and
``robustness.png`` to ``out_dir`` (the plot also to ``perturb_plot``):

    python -m mt_factored.evaluate "expert={walker-stand: checkpoints/quickstart/walker-stand.pt}" \
        student=runs/quickstart/checkpoints/last.ckpt tasks=[walker-stand] episodes=3 \
        "perturb=[dummy:*,scale:*:0.5]" perturb_plot=docs/robustness_walker-stand.png
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mt_factored.constants import RECIPES_DIR
from mt_factored.expert.resolve import load_expert
from mt_factored.planning.base import MPPIConfig, PlanningModel
from mt_factored.planning.episodes import EpisodeStats, evaluate_tasks, run_episodes
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.mppi import MPPIPlanner
from mt_factored.planning.perturb import Perturbation, parse_perturbations
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


PLANNING_MODELS = {"expert": ExpertPlanningModel, "student": StudentPlanningModel}
"""How each kind of world model is seen by the planner."""


def load_models(cfg: DictConfig) -> dict[str, tuple[torch.nn.Module, int]]:
    """``{"expert": (world model, obs_dim), "student": ...}`` for the models ``cfg`` names."""
    models: dict[str, tuple[torch.nn.Module, int]] = {}
    if cfg.expert is not None:
        spec = OmegaConf.to_container(cfg.expert) if OmegaConf.is_config(cfg.expert) else cfg.expert
        expert = load_expert(spec, task_set=cfg.task_set, model_size=cfg.expert_model_size)
        expert = expert.to(cfg.device).eval() if isinstance(expert, torch.nn.Module) else expert
        models["expert"] = (expert, expert.obs_dim)
    if cfg.student is not None:
        student = load_student(cfg.student, cfg.device).to(cfg.device).eval()
        models["student"] = (student, student.config.obs_dim)
    return models


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    )


def run(cfg: DictConfig) -> dict:
    """Evaluate; returns ``{model: {task: EpisodeStats}}``, or with ``perturb`` set
    ``{task: {condition: {model: EpisodeStats}}}`` (see :func:`run_perturbed`)."""
    if cfg.expert is None and cfg.student is None:
        raise ValueError("nothing to evaluate: pass expert=... and/or student=...")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    task_set = get_task_set(cfg.task_set)
    task_ids = {task: task_set.index(task) for task in cfg.tasks}
    if cfg.get("perturb") is not None:
        return run_perturbed(cfg, task_ids)
    results: dict[str, dict[str, EpisodeStats]] = {}
    models = load_models(cfg)
    with _progress() as progress:
        for name, (world_model, obs_dim) in models.items():
            model = PLANNING_MODELS[name](world_model)
            results[name] = evaluate_model(name, model, obs_dim, task_ids, cfg, progress)
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


UNPERTURBED = "none"
"""Condition label of the unperturbed runs in robustness results."""


def run_perturbed(
    cfg: DictConfig, task_ids: dict[str, int]
) -> dict[str, dict[str, dict[str, EpisodeStats]]]:
    """Every model on every task, unperturbed and under each perturbation of ``cfg.perturb``.

    Each condition gets a fresh planner and planning model seeded with ``cfg.seed`` and
    the same env seeds, so conditions differ only by the perturbation (``scale:<j>:1``
    reproduces the unperturbed returns). Latency and video are skipped.

    Returns:
        ``{task: {condition label: {model: EpisodeStats}}}``, :data:`UNPERTURBED` first.
    """
    specs = OmegaConf.to_container(cfg.perturb) if OmegaConf.is_config(cfg.perturb) else cfg.perturb
    # Parsed before any model loads, so a bad spec fails at once.
    perturbations = {task: parse_perturbations(specs, task) for task in task_ids}
    planning = MPPIConfig(**OmegaConf.to_container(cfg.planning, resolve=True))
    results: dict[str, dict[str, dict[str, EpisodeStats]]] = {
        task: {UNPERTURBED: {}} | {p.label: {} for p in perturbations[task]} for task in task_ids
    }
    with _progress() as progress:
        for name, (world_model, obs_dim) in load_models(cfg).items():
            for task, task_id in task_ids.items():
                hooks: list[Perturbation | None] = [None, *perturbations[task]]
                for hook in hooks:
                    label = UNPERTURBED if hook is None else hook.label
                    bar = progress.add_task(f"{name} {task} {label}", total=cfg.max_steps or 500)
                    model = PLANNING_MODELS[name](world_model, generator=cfg.seed)
                    results[task][label][name] = run_episodes(
                        MPPIPlanner(model, planning, generator=cfg.seed),
                        task,
                        task_id,
                        obs_dim,
                        episodes=cfg.episodes,
                        seed=cfg.seed,
                        device=cfg.device,
                        eval_mode=cfg.eval_mode,
                        max_steps=cfg.max_steps,
                        action_hook=hook,
                        on_step=lambda n, bar=bar: progress.update(bar, completed=n),
                    )
    print(
        f"\nrobustness: {cfg.episodes} episodes per condition, seed {cfg.seed}, "
        f"{torch.get_num_threads()} threads"
    )
    for task in task_ids:
        Console().print(robustness_table(task, results[task], perturbations[task]))
    out_dir = Path(cfg.out_dir)
    paths = [out_dir / "robustness.json", *([Path(cfg.out)] if cfg.out else [])]
    for path in paths:
        write_robustness_json(path, results, perturbations, cfg)
    plots = [out_dir / "robustness.png", *([Path(cfg.perturb_plot)] if cfg.perturb_plot else [])]
    plot_robustness(results, perturbations, plots)
    log.info("robustness results: %s", ", ".join(str(p) for p in paths + plots))
    return results


def _stats_json(s: EpisodeStats) -> dict:
    return {"returns": s.returns, "mean": s.mean, "std": s.std}


def robustness_table(
    task: str, results: dict[str, dict[str, EpisodeStats]], perturbations: list[Perturbation]
) -> Table:
    """One task: per condition, each model's return and its share of the unperturbed return."""
    models = list(results[UNPERTURBED])
    table = Table(
        title=f"{task}: return under action perturbations",
        caption="%: share of the model's unperturbed return",
    )
    table.add_column("perturbation")
    table.add_column("joint")
    for name in models:
        table.add_column(name, justify="right")
        table.add_column("%", justify="right")
    joints = {p.label: p.joint_name or str(p.joint) for p in perturbations}
    for label, by_model in results.items():
        row = [label, joints.get(label, "")]
        for name in models:
            s, base = by_model[name], results[UNPERTURBED][name].mean
            share = f"{100 * s.mean / base:.0f}" if abs(base) > 1e-8 else "-"
            row += [f"{s.mean:.1f} ± {s.std:.1f}", share]
        table.add_row(*row)
    return table


def write_robustness_json(
    path: str | os.PathLike,
    results: dict[str, dict[str, dict[str, EpisodeStats]]],
    perturbations: dict[str, list[Perturbation]],
    cfg: DictConfig,
) -> None:
    """``{task: {condition: {"perturbation": {...} | null, model: {returns, mean, std}}}}``
    plus ``_meta`` (episodes, seed, planning settings, hardware)."""
    from mt_factored.hub.card import hardware_info

    data: dict = {}
    for task, by_label in results.items():
        specs = {p.label: dataclasses.asdict(p) for p in perturbations[task]}
        data[task] = {
            label: {"perturbation": specs.get(label)}
            | {name: _stats_json(s) for name, s in by_model.items()}
            for label, by_model in by_label.items()
        }
    data["_meta"] = {
        "episodes": cfg.episodes,
        "seed": cfg.seed,
        "max_steps": cfg.max_steps,
        "planning": OmegaConf.to_container(cfg.planning, resolve=True),
        "hardware": hardware_info(),
    }
    _write_text(path, json.dumps(data, indent=2))


def plot_robustness(
    results: dict[str, dict[str, dict[str, EpisodeStats]]],
    perturbations: dict[str, list[Perturbation]],
    paths: list[Path],
) -> None:
    """Grouped bars, one panel per (task, perturbation family): return per perturbed joint
    for each model (± std over episodes), the unperturbed returns as horizontal lines."""
    import numpy as np
    from matplotlib.figure import Figure

    from mt_factored.viz import save_figure

    panels = [
        (task, family, [p for p in perturbations[task] if p.family == family])
        for task in results
        for family in dict.fromkeys(p.family for p in perturbations[task])
    ]
    models = list(next(iter(results.values()))[UNPERTURBED])
    width = 0.8 / len(models)
    fig = Figure(figsize=(max(6.0, 1.1 * max(len(ps) for *_, ps in panels) + 2), 3.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (task, family, ps) in zip(axes, panels, strict=True):
        x = np.arange(len(ps))
        top = 0.0
        for i, name in enumerate(models):
            colour = f"C{i}"
            stats = [results[task][p.label][name] for p in ps]
            ax.bar(
                x + (i - (len(models) - 1) / 2) * width,
                [s.mean for s in stats],
                width,
                yerr=[s.std for s in stats],
                capsize=3,
                color=colour,
                label=name,
            )
            base = results[task][UNPERTURBED][name].mean
            ax.axhline(base, color=colour, ls="--", lw=1.2, label=f"{name} unperturbed")
            top = max(top, base, *(s.mean + s.std for s in stats))
        pad = max(0.0, (3 - len(ps)) / 2)  # a lone joint gets bars as wide as in a sweep
        ax.set_xlim(-0.5 - pad, len(ps) - 0.5 + pad)
        if top > 0:  # head room for the legend
            ax.set_ylim(top=1.3 * top)
        ax.set_xticks(x, [f"{p.joint}\n{p.joint_name}" for p in ps])
        what = (
            "dummy joint (uniform noise)"
            if family == "dummy"
            else f"joint command x{ps[0].factor:g}"
        )
        ax.set_title(f"{task}: {what}")
        ax.set_xlabel("perturbed joint")
        ax.set_ylabel("episode return")
        ax.legend(fontsize=8, ncol=2 * len(models), loc="upper center")
    fig.tight_layout()
    for path in paths:
        save_figure(fig, path)


def _write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


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
    _write_text(path, json.dumps(data, indent=2))


@hydra.main(version_base="1.3", config_path=str(RECIPES_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()

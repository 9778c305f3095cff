"""Robustness to a broken or weak joint (Fac-TDMPC Sec. 5.5): every model on every task,
unperturbed and under each robustness perturbation of one joint's command; the table, the
JSON and the plot."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mt_factored.analysis.config import EvaluateConfig
from mt_factored.analysis.evaluation import actor_of, models_of, progress_bars
from mt_factored.analysis.figures import save_figure
from mt_factored.analysis.perturbations import Perturbation, parse_perturbations
from mt_factored.artifacts.atomic import write_json
from mt_factored.artifacts.provenance import hardware_info
from mt_factored.planning.episodes import EpisodeConfig, EpisodeStats, run_episodes

log = logging.getLogger(__name__)

UNPERTURBED = "none"
"""Condition label of the unperturbed runs in robustness results."""


def run_robustness(
    cfg: EvaluateConfig,
) -> dict[str, dict[str, dict[str, EpisodeStats]]]:
    """Every model on every task, unperturbed and under each perturbation of ``cfg.perturb``.

    Each condition gets a fresh planner and planning model seeded with ``cfg.seed`` and
    the same env seeds, so conditions differ only by the perturbation (``scale:<j>:1``
    reproduces the unperturbed returns). Latency and video are skipped.

    Returns:
        ``{task: {condition label: {model: EpisodeStats}}}``, :data:`UNPERTURBED` first.
    """
    specs = cfg.perturb
    task_ids = list(cfg.tasks)
    # Parsed before any model loads, so a bad spec fails at once.
    perturbations = {task: parse_perturbations(specs, task) for task in task_ids}
    episodes = EpisodeConfig.of(cfg)
    results: dict[str, dict[str, dict[str, EpisodeStats]]] = {
        task: {UNPERTURBED: {}} | {p.label: {} for p in perturbations[task]} for task in task_ids
    }
    with progress_bars() as progress:
        for name, m in models_of(cfg).items():
            for task, task_id in m.task_ids.items():
                hooks: list[Perturbation | None] = [None, *perturbations[task]]
                for hook in hooks:
                    label = UNPERTURBED if hook is None else hook.label
                    bar = progress.add_task(f"{name} {task} {label}", total=cfg.max_steps or 500)
                    model = m.planning_model(generator=cfg.seed)
                    results[task][label][name] = run_episodes(
                        actor_of(model, cfg),
                        task,
                        task_id,
                        m.obs_dim,
                        episodes,
                        cfg.device,
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
    cfg: EvaluateConfig,
) -> None:
    """``{task: {condition: {"perturbation": {...} | null, model: {returns, mean, std}}}}``
    plus ``_meta`` (episodes, seed, planning settings, hardware)."""
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
        "planning": dataclasses.asdict(cfg.planning),
        "hardware": hardware_info(),
    }
    write_json(path, data)


def plot_robustness(
    results: dict[str, dict[str, dict[str, EpisodeStats]]],
    perturbations: dict[str, list[Perturbation]],
    paths: list[Path],
) -> None:
    """Grouped bars, one panel per (task, perturbation family): return per perturbed joint
    for each model (± std over episodes), the unperturbed returns as horizontal lines."""
    from matplotlib.figure import Figure  # matplotlib loads only when a plot is drawn

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

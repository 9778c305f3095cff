"""Sub-dynamics discovery as a command (``python -m mt_factored.partition``): per task the
evidence (strongest influences, affinity matrix, merges), ``partition.json`` and the recipe.
Settings and their meaning: :class:`~mt_factored.analysis.config.PartitionConfig`; the method:
:mod:`.discover`."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from mt_factored.analysis.config import PartitionConfig
from mt_factored.analysis.partition.discover import Discovery, PartitionResult, discover_partition
from mt_factored.analysis.partition.recipe import train_command, write_recipe
from mt_factored.analysis.partition.transitions import task_transitions
from mt_factored.analysis.perturbations import actuator_names
from mt_factored.artifacts.atomic import write_json
from mt_factored.tasks import TaskSpec, get_task_set

log = logging.getLogger(__name__)

TOP_STATES = 3  # strongest state influences listed per action dim


def action_names(spec: TaskSpec) -> list[str]:
    """MuJoCo actuator names in action order (e.g. walker's right_hip ... left_ankle), ``a<i>``
    for an unnamed one."""
    return [name or f"a{i}" for i, name in enumerate(actuator_names(spec.name))]


def state_names(spec: TaskSpec) -> list[str]:
    """``key[i]`` for every entry of the flattened observation."""
    return [key if size == 1 else f"{key}[{i}]" for key, size in spec.obs_keys for i in range(size)]


def format_result(task: str, result: PartitionResult, actions: list[str], states: list[str]) -> str:
    """Markdown: strongest influences per action dim, the affinity matrix, the groups."""
    lines = [f"## {task}", "", "| action | strongest influence on state change |", "|---|---|"]
    for name, row in zip(actions, result.influence, strict=True):
        top = [j for j in np.argsort(-row)[:TOP_STATES] if row[j] > 0]
        text = ", ".join(f"{states[j]} {row[j]:.2f}" for j in top) or "none significant"
        lines.append(f"| {name} | {text} |")
    lines += ["", "| affinity | " + " | ".join(actions) + " |", "|---" * (len(actions) + 1) + "|"]
    for name, row in zip(actions, result.affinity, strict=True):
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    lines.append("")
    for pair, similarity in result.merges:
        lines.append(f"merged {list(map(list, pair))} (link {similarity:.2f})")
    named = [[actions[j] for j in group] for group in result.partition]
    lines.append(f"partition: {[list(g) for g in result.partition]} = {named}")
    return "\n".join(lines)


def result_json(result: PartitionResult, actions: list[str], states: list[str]) -> dict:
    return {
        "partition": [list(g) for g in result.partition],
        "actions": actions,
        "states": states,
        "influence": result.influence.round(6).tolist(),
        "affinity": result.affinity.round(6).tolist(),
        "merges": [
            {"groups": [list(g) for g in pair], "affinity": round(sim, 6)}
            for pair, sim in result.merges
        ],
    }


def run_partition(cfg: PartitionConfig) -> dict[str, PartitionResult]:
    """Discover a partition per task of ``cfg.task``; write the JSON report and the recipe."""
    tasks = [cfg.task] if isinstance(cfg.task, str) else list(cfg.task)
    task_set = get_task_set(cfg.task_set)
    data = cfg.data
    results, report = {}, {}
    for task in tasks:
        spec = task_set[task]
        obs, next_obs, action = task_transitions(
            data, task, task_set, max_episodes=cfg.max_episodes, seed=cfg.seed
        )
        result = discover_partition(obs, next_obs, action, cfg)
        actions, states = action_names(spec), state_names(spec)
        print(format_result(task, result, actions, states) + "\n")
        results[task] = result
        report[task] = result_json(result, actions, states) | {"transitions": len(obs)}
    settings = [f.name for f in dataclasses.fields(Discovery)] + ["max_episodes", "seed"]
    report["_settings"] = {k: getattr(cfg, k) for k in settings} | {"data": data}
    write_json(Path(cfg.out_dir) / "partition.json", report)
    if cfg.write_recipe:
        name = cfg.name or f"{cfg.base}-{'-'.join(tasks)}-partition"
        command = train_command(name, cfg.recipe_dir)
        comments = [
            f"  {command}",
            f"data: {data}; method={cfg.method} ridge={cfg.ridge} min_t={cfg.min_t} "
            f"linkage={cfg.linkage} "
            + (f"num_groups={cfg.num_groups}" if cfg.num_groups else f"threshold={cfg.threshold}"),
        ]
        path = write_recipe(
            name,
            cfg.base,
            {task: r.partition for task, r in results.items()},
            comments=comments,
            recipe_dir=cfg.recipe_dir,
        )
        print(f"wrote {path}\ntrain with: {command}")
    return results

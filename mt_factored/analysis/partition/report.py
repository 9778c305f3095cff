"""Sub-dynamics discovery as a command (``python -m mt_factored.partition``): per task the
evidence (strongest influences, affinity matrix, merges), ``partition.json`` and the recipe.
Settings and their meaning: :class:`~mt_factored.analysis.config.PartitionConfig`; the method:
:mod:`.discover`."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from mt_factored.analysis.config import PartitionConfig
from mt_factored.analysis.partition.discover import Discovery, PartitionResult, discover_partition
from mt_factored.analysis.partition.interaction import expert_interaction, propose_groups
from mt_factored.analysis.partition.recipe import train_command, write_recipe
from mt_factored.analysis.partition.transitions import task_transitions
from mt_factored.analysis.perturbations import actuator_names
from mt_factored.artifacts.atomic import write_json
from mt_factored.errors import InputError
from mt_factored.expert.resolve import load_expert
from mt_factored.tasks import TaskSet, TaskSpec, get_task_set

log = logging.getLogger(__name__)

TOP_STATES = 3  # strongest state influences listed per action dim


def action_names(spec: TaskSpec) -> list[str]:
    """MuJoCo actuator names in action order (e.g. walker's right_hip ... left_ankle), ``a<i>``
    for an unnamed one."""
    return [name or f"a{i}" for i, name in enumerate(actuator_names(spec.name))]


def state_names(spec: TaskSpec) -> list[str]:
    """``key[i]`` for every entry of the flattened observation."""
    return [key if size == 1 else f"{key}[{i}]" for key, size in spec.obs_keys for i in range(size)]


def format_result(
    task: str,
    result: PartitionResult,
    actions: list[str],
    states: list[str],
    matrix: str = "affinity",
) -> str:
    """Markdown: strongest influences per action dim, the affinity matrix, the groups."""
    lines = [f"## {task}", "", "| action | strongest influence on state change |", "|---|---|"]
    for name, row in zip(actions, result.influence, strict=True):
        top = [j for j in np.argsort(-row)[:TOP_STATES] if row[j] > 0]
        text = ", ".join(f"{states[j]} {row[j]:.2f}" for j in top) or "none significant"
        lines.append(f"| {name} | {text} |")
    lines += ["", f"| {matrix} | " + " | ".join(actions) + " |", "|---" * (len(actions) + 1) + "|"]
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


def interaction_partition(
    cfg: PartitionConfig, expert, task: str, task_set: TaskSet, obs: np.ndarray
) -> PartitionResult:
    """``method=interaction``: agents from the expert's pairwise interaction scores at
    ``cfg.interaction_states`` of the task's data states (:mod:`.interaction`)."""
    spec, task_id = task_set[task], task_set.index(task)
    rng = np.random.default_rng(cfg.seed)
    rows = rng.choice(len(obs), size=min(cfg.interaction_states, len(obs)), replace=False)
    states = torch.zeros(len(rows), expert.obs_dim)
    states[:, : spec.obs_dim] = torch.from_numpy(obs[rows])
    ids = torch.full((len(rows),), task_id, dtype=torch.long)
    score, total = expert_interaction(
        expert,
        states,
        ids,
        spec.action_dim,
        horizon=cfg.interaction_horizon,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    partition = propose_groups(score, cfg.interaction_threshold)
    effect = (total / total.max().clamp_min(1e-12)).numpy()[:, None]
    return PartitionResult(partition, effect, score.numpy(), merges=())


def run_partition(cfg: PartitionConfig) -> dict[str, PartitionResult]:
    """Discover a partition per task of ``cfg.task``; write the JSON report and the recipe."""
    tasks = [cfg.task] if isinstance(cfg.task, str) else list(cfg.task)
    task_set = get_task_set(cfg.task_set)
    data = cfg.data
    interaction = cfg.method == "interaction"
    if interaction and cfg.expert is None:
        raise InputError(
            "method=interaction measures the expert's return: no expert given",
            "pass expert=<checkpoint> or expert={task: checkpoint}",
        )
    expert = None
    if interaction:
        expert = load_expert(cfg.expert, task_set=cfg.task_set, model_size=cfg.expert_model_size)
        expert = expert.eval()
    results, report = {}, {}
    for task in tasks:
        spec = task_set[task]
        obs, next_obs, action = task_transitions(
            data, task, task_set, max_episodes=cfg.max_episodes, seed=cfg.seed
        )
        actions, states = action_names(spec), state_names(spec)
        if interaction:
            result = interaction_partition(cfg, expert, task, task_set, obs)
            states = ["total effect (share of the largest)"]
        else:
            result = discover_partition(obs, next_obs, action, cfg)
        matrix = "interaction" if interaction else "affinity"
        print(format_result(task, result, actions, states, matrix) + "\n")
        results[task] = result
        report[task] = result_json(result, actions, states) | {"transitions": len(obs)}
    settings = [f.name for f in dataclasses.fields(Discovery)] + ["max_episodes", "seed"]
    if interaction:
        settings += ["expert", "interaction_states", "interaction_horizon", "interaction_threshold"]
    report["_settings"] = {k: getattr(cfg, k) for k in settings} | {"data": data}
    write_json(Path(cfg.out_dir) / "partition.json", report)
    if cfg.write_recipe:
        name = cfg.name or f"{cfg.base}-{'-'.join(tasks)}-partition"
        command = train_command(name, cfg.recipe_dir)
        if interaction:
            how = (
                f"method=interaction expert={cfg.expert} horizon={cfg.interaction_horizon} "
                f"states={cfg.interaction_states} threshold={cfg.interaction_threshold}"
            )
        else:
            how = (
                f"method={cfg.method} ridge={cfg.ridge} min_t={cfg.min_t} linkage={cfg.linkage} "
                + (
                    f"num_groups={cfg.num_groups}"
                    if cfg.num_groups
                    else f"threshold={cfg.threshold}"
                )
            )
        comments = [f"  {command}", f"data: {data}; {how}"]
        path = write_recipe(
            name,
            cfg.base,
            {task: r.partition for task, r in results.items()},
            comments=comments,
            recipe_dir=cfg.recipe_dir,
        )
        print(f"wrote {path}\ntrain with: {command}")
    return results

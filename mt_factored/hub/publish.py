"""The final student of a training run as a Hub model folder (``train ... publish.dir=``).

``model.safetensors`` + ``config.json`` + a model card whose ``model-index`` gives the mean
return per task (the Hub's RL convention: ``mean_reward``), whose metadata names the teacher
(``base_model``, when it is on the Hub) and the dataset, and whose body holds the measured
table (student vs expert, planning ms/step), the hardware, the teacher and data files and the
``python -m mt_factored.evaluate`` command that reproduces the returns; plus ``results.json``
(the evaluation in ``mt_factored.evaluate``'s layout, which ``hub push results=`` reads).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mt_factored.artifacts.provenance import hardware_info
from mt_factored.hub.convert import load_for_push
from mt_factored.hub.push import write_fresh
from mt_factored.hub.results import Results, results_json

RESULTS_NAME = "results.json"


def evaluate_command(folder: str, tasks: list[str], evaluation: Mapping[str, Any]) -> str:
    """The ``python -m mt_factored.evaluate`` line that replays the card's student returns."""
    args = [f"student={folder}", f"tasks=[{','.join(tasks)}]"]
    args += [f"{k}={v}" for k, v in evaluation.items() if k != "planning" and v is not None]
    args += [f"planning.{k}={v}" for k, v in (evaluation.get("planning") or {}).items()]
    return "python -m mt_factored.evaluate " + " ".join(args)


def _listing(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: `{v}`" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def about_markdown(
    folder: str,
    results: Results,
    evaluation: Mapping[str, Any],
    teacher: Any,
    data: Any,
    wall_s: float | None,
) -> str:
    """The card's "Training" section: teacher, data, and how to replay the returns."""
    tasks = list(results.get("student", {}))
    lines = [
        f"- teacher: {_listing(teacher)}",
        f"- data: {_listing(data)}",
    ]
    if wall_s is not None:
        lines.append(f"- wall time of the run (training and evaluation): {wall_s / 60:.1f} min")
    lines += [
        "",
        "The student's returns above replay with (same seeds, same MPPI settings; a different "
        "thread count or CPU can change the last digits):",
        "",
        "```bash",
        evaluate_command(folder, tasks, evaluation),
        "```",
    ]
    return "\n".join(lines)


def publish_student(
    checkpoint: str | os.PathLike,
    folder: str | os.PathLike,
    results: Results,
    *,
    evaluation: Mapping[str, Any],
    teacher: Any,
    data: Any,
    repo_id: str | None = None,
    datasets: list[str] | None = None,
    base_model: list[str] | None = None,
    wall_s: float | None = None,
    shown_folder: str | None = None,
) -> Path:
    """Write the student of ``checkpoint`` (a Lightning .ckpt) as a Hub model folder.

    Args:
        results: ``{"student": {task: EpisodeStats}, "expert": {...}}`` of the final evaluation.
        evaluation: the student's evaluation settings (episodes, seed, eval_mode, max_steps,
            and ``planning``: the MPPI fields that differ from the defaults).
        teacher, data: what the run distilled from (shown in the card).
        repo_id, datasets, base_model: card metadata (see `PublishConfig`).
        wall_s: wall time of the run, when known.
        shown_folder: the folder as the card's commands name it (default: ``folder``).
    """
    folder = Path(folder)
    source = load_for_push(checkpoint)
    hardware = hardware_info()
    meta = {"_meta": {"hardware": hardware, "evaluation": dict(evaluation)}}
    shown = shown_folder or str(folder)
    card = {
        "repo_id": repo_id or f"ORG/{folder.name}",
        "results": results,
        "results_meta": meta,
        "datasets": datasets,
        "base_model": base_model,
        "about": about_markdown(shown, results, evaluation, teacher, data, wall_s),
    }
    extra = {RESULTS_NAME: json.dumps(results_json(results, meta["_meta"]), indent=2) + "\n"}
    return write_fresh(source, folder, card, extra)

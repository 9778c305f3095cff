"""Evaluation results as the Hub shows them: reading ``mt_factored.evaluate``'s results JSON, the
results section of a model card and its ``model-index`` entries."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult

from mt_factored.artifacts.folder import ArtifactFormatError
from mt_factored.artifacts.provenance import hardware_info
from mt_factored.planning.episodes import EpisodeStats
from mt_factored.planning.report import comparison_table, returns_table

Results = dict[str, dict[str, EpisodeStats]]
"""``{model: {task: EpisodeStats}}``, as ``mt_factored.evaluate`` returns and writes it."""

NO_RESULTS = (
    "No evaluation was attached when this card was written. Run "
    "`python -m mt_factored.evaluate ... out=results.json` and publish with "
    "`python -m mt_factored.hub push ... results=results.json`."
)


def read_results(path: str | os.PathLike) -> tuple[Results, dict[str, Any]]:
    """Read ``mt_factored.evaluate``'s results JSON.

    Returns:
        (``{model: {task: EpisodeStats}}``, metadata): top-level keys starting with ``_``
        are metadata (e.g. ``_meta: {hardware: {...}}``), not models.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ArtifactFormatError(f"cannot read the results JSON {path}: {err}") from err
    if not isinstance(data, dict):
        raise ArtifactFormatError(f"{path} must hold a JSON object {{model: {{task: ...}}}}")
    meta = {k: v for k, v in data.items() if k.startswith("_")}
    results: Results = {}
    try:
        for model, tasks in data.items():
            if model.startswith("_"):
                continue
            results[model] = {
                task: EpisodeStats(
                    task=task,
                    returns=[float(r) for r in s["returns"]],
                    plan_ms_per_call=float(s["plan_ms_per_call"]),
                    envs_per_call=int(s["envs_per_call"]),
                    plan_ms_single_env=s.get("plan_ms_single_env"),
                )
                for task, s in tasks.items()
            }
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ArtifactFormatError(
            f"{path} is not a results JSON of mt_factored.evaluate "
            f"({{model: {{task: {{returns, plan_ms_per_call, ...}}}}}}): {err!r}"
        ) from err
    if not results:
        raise ArtifactFormatError(f"{path} holds no model results")
    return results, meta


def results_markdown(
    results: Results | None, focus: str, meta: Mapping[str, Any] | None = None
) -> str:
    """The results table (student vs expert when both are there), how it was measured and
    on which hardware (recorded in the results' ``_meta.hardware``, else this machine)."""
    if not results or focus not in results:
        return NO_RESULTS
    if focus == "student" and "expert" in results:
        table = comparison_table(results["student"], results["expert"])
    else:
        table = returns_table(results[focus], title=f"{focus} return")
    episodes = sorted({len(s.returns) for res in results.values() for s in res.values()})
    recorded = (meta or {}).get("_meta", {}).get("hardware")
    where = "recorded with the results" if recorded else "the machine that wrote this card"
    lines = [
        table,
        "",
        f"Returns: mean ± std over {'/'.join(map(str, episodes))} episodes per task "
        "(`python -m mt_factored.evaluate`). ms/step: one planner call for a single "
        "environment at the evaluation's MPPI settings.",
        "",
        f"Hardware ({where}):",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in (recorded or hardware_info()).items()]
    return "\n".join(lines)


def eval_results(results: Results | None, model: str) -> list[EvalResult]:
    """``model-index`` entries: the mean return of ``model`` on every task (Hub RL convention)."""
    if not results or model not in results:
        return []
    return [
        EvalResult(
            task_type="reinforcement-learning",
            dataset_type=task,
            dataset_name=task,
            metric_type="mean_reward",
            metric_value=f"{stats.mean:.2f} +/- {stats.std:.2f}",
        )
        for task, stats in results[model].items()
    ]


def results_json(results: Results, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``results`` in the JSON layout of ``mt_factored.evaluate ... out=`` (what
    :func:`read_results` reads), with ``meta`` under ``_meta`` (default: this hardware)."""
    data: dict[str, Any] = {
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
    data["_meta"] = dict(meta) if meta is not None else {"hardware": hardware_info()}
    return data

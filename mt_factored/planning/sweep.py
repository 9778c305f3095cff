"""Planning-budget sweep: the grid, the MPPI settings per budget, the 95% rule, resume files.

A *budget* is one (samples, iterations) pair of MPPI. The sweep (``python -m
mt_factored.budget_sweep``) evaluates every (model, budget, task) *cell* and keeps
the results in one JSON file, written after each cell, so a stopped sweep resumes
where it stopped. This module holds the logic without models or environments:

- :func:`build_grid` checks a samples x iterations grid;
- :func:`budget_config` turns a budget into :class:`MPPIConfig` (elites and policy
  trajectories scaled with the samples, see :class:`BudgetScaling`);
- :func:`smallest_budget` / :func:`select_budgets` apply "the smallest budget that
  keeps at least 95% of the return at the reference budget";
- :class:`SweepFile` reads, checks and atomically rewrites the results file.

Budgets are ordered by cost (:func:`budget_cost`): model evaluations per step
(samples x iterations) first; at equal evaluations fewer iterations first, as the
iterations run one after the other while the samples of one iteration are one
batched call; then fewer samples.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mt_factored.planning.base import MPPIConfig

SWEEP_FORMAT_VERSION = 1


@dataclass(frozen=True, order=True)
class Budget:
    """One MPPI budget: trajectories sampled per iteration, and iterations per step."""

    num_samples: int
    iterations: int

    def __post_init__(self) -> None:
        for name in ("num_samples", "iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Budget.{name} must be an int >= 1, got {value!r}")

    @property
    def label(self) -> str:
        """``"<samples>x<iterations>"``, e.g. ``"512x6"`` (the JSON key of the budget)."""
        return f"{self.num_samples}x{self.iterations}"

    @classmethod
    def parse(cls, label: str) -> Budget:
        """Inverse of :attr:`label`."""
        samples, sep, iterations = label.partition("x")
        if not sep or not samples.isdigit() or not iterations.isdigit():
            raise ValueError(f"bad budget label {label!r}: expected '<samples>x<iterations>'")
        return cls(int(samples), int(iterations))


def budget_cost(budget: Budget) -> tuple[int, int, int]:
    """Sort key, cheapest first: (samples x iterations, iterations, samples)."""
    return (budget.num_samples * budget.iterations, budget.iterations, budget.num_samples)


def _positive_ints(name: str, values: Any) -> list[int]:
    if isinstance(values, str | int) or not isinstance(values, Iterable):
        raise ValueError(f"grid.{name} must be a list of ints >= 1, e.g. [32, 64], got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"grid.{name} is empty: give at least one value")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ValueError(f"grid.{name} must hold ints >= 1; bad entries: {bad}")
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"grid.{name} repeats {dupes}; list each value once")
    return sorted(values)


def build_grid(num_samples: Sequence[int], iterations: Sequence[int]) -> list[Budget]:
    """Every (samples, iterations) pair, cheapest first (:func:`budget_cost`).

    Raises:
        ValueError: a list is empty, repeats a value, or holds something other than an
            int >= 1.
    """
    samples = _positive_ints("num_samples", num_samples)
    iters = _positive_ints("iterations", iterations)
    return sorted((Budget(s, i) for s in samples for i in iters), key=budget_cost)


@dataclass(frozen=True)
class BudgetScaling:
    """How elites and policy trajectories follow the samples of a budget.

    With the defaults a 512-sample budget gets TD-MPC2's 64 elites and 24 policy
    trajectories (Fac-TDMPC Table 2); smaller budgets keep the same elite fraction
    (1/8, never under ``min_elites``) and as many policy trajectories as elites up
    to 24, so the policy prior never fills more than an eighth of the samples.
    """

    elite_fraction: float = 0.125
    """num_elites = max(min_elites, floor(elite_fraction * samples))."""
    min_elites: int = 2
    """Fewest elites: the softmax over one elite would stop the std from adapting."""
    pi_fraction: float = 0.125
    """num_pi_trajs = min(max_pi_trajs, floor(pi_fraction * samples)) (0 without a prior)."""
    max_pi_trajs: int = 24
    """Most policy trajectories (TD-MPC2's 24)."""

    def __post_init__(self) -> None:
        if not 0 < self.elite_fraction <= 1:
            raise ValueError(f"elite_fraction must be in (0, 1], got {self.elite_fraction}")
        if not 0 <= self.pi_fraction < 1:
            raise ValueError(f"pi_fraction must be in [0, 1), got {self.pi_fraction}")
        if self.min_elites < 1 or self.max_pi_trajs < 0:
            raise ValueError(
                f"need min_elites >= 1 and max_pi_trajs >= 0, got {self.min_elites}, "
                f"{self.max_pi_trajs}"
            )


def budget_config(
    budget: Budget,
    base: MPPIConfig = MPPIConfig(),  # noqa: B008 (frozen dataclass)
    scaling: BudgetScaling = BudgetScaling(),  # noqa: B008 (frozen dataclass)
    policy_prior: bool = True,
) -> MPPIConfig:
    """``base`` with the budget's samples and iterations and the scaled elites / policy trajectories.

    Args:
        budget: the samples and iterations.
        base: horizon, std bounds and temperature (its own samples/elites are replaced).
        scaling: elites and policy trajectories per sample count.
        policy_prior: False for a model without a policy prior (no policy trajectories).
    """
    if budget.num_samples < scaling.min_elites:
        raise ValueError(
            f"budget {budget.label}: {budget.num_samples} samples is fewer than min_elites="
            f"{scaling.min_elites}; use at least {scaling.min_elites} samples"
        )
    elites = max(scaling.min_elites, math.floor(scaling.elite_fraction * budget.num_samples))
    pi = min(scaling.max_pi_trajs, math.floor(scaling.pi_fraction * budget.num_samples))
    return replace(
        base,
        num_samples=budget.num_samples,
        iterations=budget.iterations,
        num_elites=elites,
        num_pi_trajs=pi if policy_prior else 0,
    )


# ----------------------------------------------------------------- the 95% rule
def keeps_return(value: float, reference: float, fraction: float) -> bool:
    """``value`` is at least ``fraction`` of ``reference``.

    Read as "loses at most ``1 - fraction`` of ``|reference|``", which is the same for
    the usual positive returns and stays meaningful for negative ones.
    """
    return value >= reference - (1.0 - fraction) * abs(reference)


def smallest_budget(
    returns: Mapping[Budget, float], reference: Budget, fraction: float = 0.95
) -> Budget | None:
    """The cheapest budget below the reference's cost that keeps ``fraction`` of its return.

    Args:
        returns: mean return per budget; must include ``reference``.
        reference: the budget the others are compared with (the paper's 512 x 6).
        fraction: share of the reference return to keep, in (0, 1].

    Returns:
        The cheapest qualifying budget (:func:`budget_cost`) among those cheaper than
        the reference; None when none of them keeps the return (the reference stays
        the smallest budget that does).

    Raises:
        ValueError: ``reference`` has no return, or ``fraction`` is out of range.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if reference not in returns:
        raise ValueError(
            f"no return at the reference budget {reference.label}; "
            f"budgets given: {[b.label for b in sorted(returns, key=budget_cost)]}"
        )
    kept = _qualifying(returns, reference, fraction)
    return min(kept, key=budget_cost) if kept else None


def _qualifying(returns: Mapping[Budget, float], reference: Budget, fraction: float) -> set[Budget]:
    ref, ref_cost = returns[reference], budget_cost(reference)
    return {
        b
        for b, r in returns.items()
        if budget_cost(b) < ref_cost and keeps_return(r, ref, fraction)
    }


def select_budgets(
    returns: Mapping[str, Mapping[Budget, float]],
    reference: Budget,
    fraction: float = 0.95,
) -> dict[str, Budget | None]:
    """:func:`smallest_budget` per task, for the task mean, and for all tasks at once.

    Args:
        returns: task -> budget -> mean return. Budgets missing for some task take
            part only in that task's choice.
        reference: the reference budget (must have a return for every task).

    Returns:
        ``{task: budget, ..., "mean": budget, "all_tasks": budget}``: ``"mean"``
        applies the rule to the return averaged over the tasks (budgets run on every
        task only); ``"all_tasks"`` is the cheapest budget that keeps the fraction on
        every task. None where no budget cheaper than the reference qualifies.
    """
    if not returns:
        raise ValueError("select_budgets needs the returns of at least one task")
    out: dict[str, Budget | None] = {}
    qualifying: list[set[Budget]] = []
    for task, by_budget in returns.items():
        out[task] = smallest_budget(by_budget, reference, fraction)
        qualifying.append(_qualifying(by_budget, reference, fraction))
    common = set.intersection(*(set(b) for b in returns.values()))
    mean = {b: statistics.fmean(r[b] for r in returns.values()) for b in common}
    out["mean"] = smallest_budget(mean, reference, fraction)
    everywhere = set.intersection(*qualifying)
    out["all_tasks"] = min(everywhere, key=budget_cost) if everywhere else None
    return out


def selection_summary(
    cells: Mapping[str, Mapping[str, Mapping[str, Any]]],
    tasks: Sequence[str],
    reference: Budget,
    fraction: float = 0.95,
) -> dict[str, Any]:
    """:func:`select_budgets` for one model's stored cells, with the numbers behind each choice.

    Args:
        cells: budget label -> task -> cell (``mean`` return and ``plan_ms``), as stored
            by :class:`SweepFile`.
        tasks: the tasks to choose over (each needs its reference cell).

    Returns:
        ``{"reference", "fraction", "budgets": {key: label | None}, "rows": {key: {...}}}``
        with keys the tasks, ``"mean"`` and ``"all_tasks"``. A row gives the chosen
        budget's return and ms per step next to the reference's (task means for
        ``"mean"`` / ``"all_tasks"``), their ratio and the speedup.
    """
    by_task: dict[str, dict[Budget, dict[str, Any]]] = {t: {} for t in tasks}
    for label, results in cells.items():
        for task, cell in results.items():
            if task in by_task:
                by_task[task][Budget.parse(label)] = cell
    missing = [t for t in tasks if reference not in by_task[t]]
    if missing:
        raise ValueError(
            f"no result at the reference budget {reference.label} for {missing}; run those "
            "cells first (the sweep's grid must include the reference budget)"
        )
    returns = {t: {b: float(c["mean"]) for b, c in cs.items()} for t, cs in by_task.items()}
    chosen = select_budgets(returns, reference, fraction)

    def numbers(budget: Budget, over: Sequence[str]) -> tuple[float, float]:
        return (
            statistics.fmean(float(by_task[t][budget]["mean"]) for t in over),
            statistics.fmean(float(by_task[t][budget]["plan_ms"]) for t in over),
        )

    rows: dict[str, dict[str, Any]] = {}
    for key, budget in chosen.items():
        over = [key] if key in by_task else list(tasks)
        ref_ret, ref_ms = numbers(reference, over)
        row: dict[str, Any] = {
            "budget": None if budget is None else budget.label,
            "reference_return": ref_ret,
            "reference_ms": ref_ms,
        }
        if budget is not None:
            ret, ms = numbers(budget, over)
            row.update(
                {
                    "return": ret,
                    "plan_ms": ms,
                    "ratio": ret / ref_ret if ref_ret else None,
                    "speedup": ref_ms / ms if ms > 0 else None,
                }
            )
        rows[key] = row
    return {
        "reference": reference.label,
        "fraction": fraction,
        "budgets": {k: r["budget"] for k, r in rows.items()},
        "rows": rows,
    }


# ------------------------------------------------------------------ results file
class SweepMismatchError(ValueError):
    """The results file was written by a sweep with other settings; resuming would mix them."""


class SweepFile:
    """The sweep's JSON results, rewritten atomically after every cell.

    Layout::

        {"format_version": 1,
         "settings": {...},                  # must match to resume
         "models": {label: {"kind", "path", "params"}},
         "cells": {label: {"512x6": {task: {"mean", "std", "returns", "plan_ms", ...}}}},
         "selection": {...}}                 # written by the entry point at the end

    Args:
        path: the JSON file (created with its folder when missing).
        settings: what makes cells comparable (episodes, seed, threads, MPPI base
            settings, ...). Opening an existing file with different settings raises
            :class:`SweepMismatchError`; budgets, tasks and models may be added.
    """

    def __init__(self, path: str | os.PathLike, settings: Mapping[str, Any]) -> None:
        self.path = Path(path)
        settings = json.loads(json.dumps(settings))  # plain JSON values, as on disk
        if self.path.is_file():
            self.data = json.loads(self.path.read_text())
            if self.data.get("format_version") != SWEEP_FORMAT_VERSION:
                raise SweepMismatchError(
                    f"{self.path} has format_version {self.data.get('format_version')!r}, this "
                    f"code writes {SWEEP_FORMAT_VERSION}; pass another out= path"
                )
            changed = {
                k: (self.data["settings"].get(k), v)
                for k, v in settings.items()
                if self.data["settings"].get(k) != v
            }
            if changed:
                diff = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
                raise SweepMismatchError(
                    f"{self.path} holds a sweep with other settings ({diff}); resuming would "
                    "mix incomparable cells. Pass another out= path, or restore the settings."
                )
        else:
            self.data = {
                "format_version": SWEEP_FORMAT_VERSION,
                "settings": settings,
                "models": {},
                "cells": {},
            }

    def add_model(self, label: str, info: Mapping[str, Any]) -> None:
        """Register a model; a label already in the file must name the same path."""
        info = json.loads(json.dumps(info))
        old = self.data["models"].get(label)
        if old is not None and old.get("path") != info.get("path"):
            raise SweepMismatchError(
                f"{self.path}: model {label!r} was {old.get('path')!r}, now {info.get('path')!r}; "
                "give the new model another label or pass another out= path"
            )
        self.data["models"][label] = info

    def has(self, model: str, budget: Budget, task: str) -> bool:
        """Whether the cell was already evaluated (a resumed sweep skips it)."""
        return task in self.data["cells"].get(model, {}).get(budget.label, {})

    def cell(self, model: str, budget: Budget, task: str) -> dict[str, Any]:
        return self.data["cells"][model][budget.label][task]

    def put(self, model: str, budget: Budget, task: str, result: Mapping[str, Any]) -> None:
        """Store one cell and rewrite the file."""
        by_budget = self.data["cells"].setdefault(model, {})
        by_budget.setdefault(budget.label, {})[task] = dict(result)
        self.write()

    def returns(self, model: str, tasks: Sequence[str]) -> dict[str, dict[Budget, float]]:
        """task -> budget -> mean return of ``model`` over the stored cells of ``tasks``."""
        out: dict[str, dict[Budget, float]] = {task: {} for task in tasks}
        for label, by_task in self.data["cells"].get(model, {}).items():
            for task, cell in by_task.items():
                if task in out:
                    out[task][Budget.parse(label)] = float(cell["mean"])
        return out

    def write(self) -> None:
        """Atomically replace the file (temp file in the same folder, then rename)."""
        write_json_atomic(self.path, self.data)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON through a temp file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

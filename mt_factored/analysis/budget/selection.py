"""The 95% rule of the budget sweep: the smallest MPPI budget that keeps at least a fraction
of the return at the reference budget, per task, for the task mean and for all tasks."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from mt_factored.analysis.budget.grid import Budget, budget_cost
from mt_factored.errors import InputError


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
        raise InputError(f"fraction must be in (0, 1], got {fraction}")
    if reference not in returns:
        raise InputError(
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
        raise InputError("select_budgets needs the returns of at least one task")
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
        raise InputError(
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

"""Planning budgets: the grid, and the MPPI settings of each budget.

A *budget* is one (samples, iterations) pair of MPPI. The sweep (``python -m
mt_factored.budget_sweep``) evaluates every (model, budget, task) *cell* and keeps
the results in one JSON file, written after each cell, so a stopped sweep resumes
where it stopped. This module holds the logic without models or environments:

- :func:`build_grid` checks a samples x iterations grid;
- :func:`budget_config` turns a budget into :class:`MPPIConfig` (elites and policy
  trajectories scaled with the samples, see :class:`BudgetScaling`);
- :mod:`.selection` applies "the smallest budget that keeps at least 95% of the return at
  the reference budget"; :mod:`.results` reads, checks and rewrites the results file.

Budgets are ordered by cost (:func:`budget_cost`): model evaluations per step
(samples x iterations) first; at equal evaluations fewer iterations first, as the
iterations run one after the other while the samples of one iteration are one
batched call; then fewer samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mt_factored.errors import InputError
from mt_factored.planning.base import MPPIConfig


@dataclass(frozen=True, order=True)
class Budget:
    """One MPPI budget: trajectories sampled per iteration, and iterations per step."""

    num_samples: int
    iterations: int

    def __post_init__(self) -> None:
        for name in ("num_samples", "iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"Budget.{name} must be an int >= 1, got {value!r}")

    @property
    def label(self) -> str:
        """``"<samples>x<iterations>"``, e.g. ``"512x6"`` (the JSON key of the budget)."""
        return f"{self.num_samples}x{self.iterations}"

    @classmethod
    def parse(cls, label: str) -> Budget:
        """Inverse of :attr:`label`."""
        samples, sep, iterations = label.partition("x")
        if not sep or not samples.isdigit() or not iterations.isdigit():
            raise InputError(f"bad budget label {label!r}: expected '<samples>x<iterations>'")
        return cls(int(samples), int(iterations))


def budget_cost(budget: Budget) -> tuple[int, int, int]:
    """Sort key, cheapest first: (samples x iterations, iterations, samples)."""
    return (budget.num_samples * budget.iterations, budget.iterations, budget.num_samples)


def _positive_ints(name: str, values: Any) -> list[int]:
    if isinstance(values, str | int) or not isinstance(values, Iterable):
        raise InputError(f"grid.{name} must be a list of ints >= 1, e.g. [32, 64], got {values!r}")
    values = list(values)
    if not values:
        raise InputError(f"grid.{name} is empty: give at least one value")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise InputError(f"grid.{name} must hold ints >= 1; bad entries: {bad}")
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise InputError(f"grid.{name} repeats {dupes}; list each value once")
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


@dataclass
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
            raise InputError(f"elite_fraction must be in (0, 1], got {self.elite_fraction}")
        if not 0 <= self.pi_fraction < 1:
            raise InputError(f"pi_fraction must be in [0, 1), got {self.pi_fraction}")
        if self.min_elites < 1 or self.max_pi_trajs < 0:
            raise InputError(
                f"need min_elites >= 1 and max_pi_trajs >= 0, got {self.min_elites}, "
                f"{self.max_pi_trajs}"
            )


def budget_config(
    budget: Budget,
    base: MPPIConfig | None = None,
    scaling: BudgetScaling | None = None,
    policy_prior: bool = True,
) -> MPPIConfig:
    """``base`` with the budget's samples and iterations and the scaled elites / policy trajectories.

    Args:
        budget: the samples and iterations.
        base: horizon, std bounds and temperature (its own samples/elites are replaced).
        scaling: elites and policy trajectories per sample count.
        policy_prior: False for a model without a policy prior (no policy trajectories).
    """
    base = MPPIConfig() if base is None else base
    scaling = BudgetScaling() if scaling is None else scaling
    if budget.num_samples < scaling.min_elites:
        raise InputError(
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

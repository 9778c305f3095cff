"""The registry of distillation loss terms: what a term is, how it is registered and selected.

The built-in terms are in :mod:`mt_factored.distill.terms` (imported with the package, so
they are registered before any config is checked).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch

from mt_factored.distill.rollout import ExpertRollout, StudentRollout
from mt_factored.errors import InputError


class DistillBatch(NamedTuple):
    """One batch of windows as the terms see it."""

    obs: torch.Tensor
    """``[B, H+1, obs_dim]`` observations of the windows."""
    action: torch.Tensor
    """``[B, H, A]`` the data actions."""
    task: torch.Tensor
    """``[B]`` task ids (long)."""
    action_mask: torch.Tensor
    """``[B, A]`` 1 on each task's real action entries."""
    weights: torch.Tensor
    """``[H]`` the weight of step h, ``rho ** h``."""
    expert_planned: torch.Tensor | None = None
    """``[B]`` bool: windows whose actions are the expert planner's sequence at their first
    observation (closed-loop rows labelled by the expert; None when the batch has none)."""


TermFn = Callable[[StudentRollout, ExpertRollout, DistillBatch, Any], torch.Tensor]
"""``fn(student, expert, batch, cfg) -> scalar``; ``cfg`` is the run's
:class:`~mt_factored.distill.config.DistillConfig` (which checks its term names here)."""


class LossTerm(NamedTuple):
    """A registered term: its name, its function and what it needs from the rollouts."""

    name: str
    fn: TermFn
    expert_policy: bool = False
    """The expert rollout must carry ``pi_mean`` (the expert's policy mean at every step)."""
    data_action: bool = False
    """The student also rolls along the data actions (``StudentRollout.data_latents``)."""
    policy_prior: bool = False
    """The term reads the student's policy prior; left out for a student without one."""


TERMS: dict[str, LossTerm] = {}
"""Every registered term by name, in registration order (the order of the total)."""


def loss_term(
    name: str, *, expert_policy: bool = False, data_action: bool = False, policy_prior: bool = False
) -> Callable[[TermFn], TermFn]:
    """Register ``fn`` as the loss term ``name`` (see the module docstring)."""

    def register(fn: TermFn) -> TermFn:
        if name in TERMS:
            raise ValueError(f"a loss term named {name!r} is registered already")
        TERMS[name] = LossTerm(name, fn, expert_policy, data_action, policy_prior)
        return fn

    return register


def check_terms(terms: Mapping[str, float]) -> None:
    """Refuse term names nobody registered, naming the known ones."""
    unknown = sorted(set(terms) - set(TERMS))
    if unknown:
        raise InputError(
            f"unknown distillation loss terms {unknown}",
            f"use one of {list(TERMS)} (or register one with @mt_factored.distill.loss_term)",
        )


def selected_terms(
    terms: Mapping[str, float], has_policy_prior: bool = True
) -> list[tuple[LossTerm, float]]:
    """(term, coefficient) of every term with a non-zero coefficient, in registration order."""
    check_terms(terms)
    return [
        (term, float(terms[name]))
        for name, term in TERMS.items()
        if terms.get(name, 0) and (has_policy_prior or not term.policy_prior)
    ]

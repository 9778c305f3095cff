"""Ranking distillation of a TD-MPC2 expert into the factored student (Fac-TDMPC Alg. 1).

- `DistillConfig` (`config.py`): every constant (noise, temperatures, which terms and their
  coefficients).
- `terms.py`: the named loss terms (``reward_kl``, ``value_kl``, ``reward_mse``,
  ``value_mse``, ``policy``, ``return_kl``, ``consistency``), one function each; `registry.py`: what a term
  is, ``@loss_term`` (which adds one) and the selection by the config's ``terms``.
- `rollout.py`: noisy (or planner-like, ``noise: planner``) action sequences and both
  models' rollouts under them.
- `distill_losses` (`losses.py`): one batch -> every selected term and their weighted sum.
"""

from mt_factored.distill.config import PAPER_TERMS, Center, DistillConfig, Noise, Normalize
from mt_factored.distill.losses import distill_losses, log_keys, student_losses, terms_of
from mt_factored.distill.registry import TERMS, DistillBatch, LossTerm, loss_term
from mt_factored.distill.rollout import (
    ExpertRollout,
    StudentRollout,
    expert_rollout,
    noisy_actions,
    planner_actions,
    student_rollout,
)
from mt_factored.distill.terms import (
    expert_plan_returns,
    expert_scale,
    masked_mse,
    ranking_kl,
    student_plan_returns,
    task_scale,
)

__all__ = [
    "PAPER_TERMS",
    "Center",
    "Noise",
    "TERMS",
    "DistillBatch",
    "DistillConfig",
    "ExpertRollout",
    "LossTerm",
    "Normalize",
    "StudentRollout",
    "distill_losses",
    "expert_plan_returns",
    "expert_rollout",
    "expert_scale",
    "log_keys",
    "loss_term",
    "masked_mse",
    "noisy_actions",
    "planner_actions",
    "ranking_kl",
    "student_losses",
    "student_plan_returns",
    "student_rollout",
    "task_scale",
    "terms_of",
]

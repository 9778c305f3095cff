"""Ranking distillation of a TD-MPC2 expert into the factored student (Fac-TDMPC Alg. 1).

- `DistillConfig` (`config.py`): every constant (noise, temperatures, coefficients).
- `distill_losses` (`losses.py`): named loss terms of one batch of windows; `ranking_kl`
  and `masked_mse` are the terms as functions of outputs, targets and masks.
- `rollout.py`: perturbed actions and both models' rollouts under them.
"""

from mt_factored.distill.config import DistillConfig
from mt_factored.distill.losses import (
    distill_losses,
    expert_scale,
    masked_mse,
    ranking_kl,
    student_losses,
    task_scale,
)
from mt_factored.distill.rollout import (
    ExpertRollout,
    StudentRollout,
    expert_rollout,
    perturb_actions,
    student_rollout,
)

__all__ = [
    "DistillConfig",
    "ExpertRollout",
    "StudentRollout",
    "distill_losses",
    "expert_rollout",
    "expert_scale",
    "task_scale",
    "masked_mse",
    "perturb_actions",
    "ranking_kl",
    "student_losses",
    "student_rollout",
]

"""Finetune a pretrained student to tasks (and embodiments) it never saw.

    python -m mt_factored.finetune recipe=finetune-quadruped pretrained=<folder | Hub id | .ckpt>
    python -m mt_factored.finetune recipe=finetune-quadruped from_scratch=true run_dir=...

Load the student -> extend it to the recipe's tasks (:func:`mt_factored.student.extend.
extend_student`: new task rows, more joint rows, a wider encoder input, old outputs
unchanged) -> optionally freeze the shared per-joint networks -> distill the new tasks'
expert on its data with the same module, data stream, trainer and evaluation as
``mt_factored.train`` -> print the evaluation table. ``from_scratch=true`` trains the same
extended architecture from fresh weights on the same data and steps (the baseline).

Task ids: the recipe's ``task_set`` is the set the data and expert were recorded in
(e.g. ``dmc_extra``: ``python -m mt_factored.train_expert ... record.task_set=dmc_extra``);
the student numbers its tasks its own way (pretrained tasks first, then the new ones).
Batches are translated from the first to the second before they reach the module
(:class:`BatchAdapter`); the expert and the evaluation use the student's ids.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.training.finetune import run_finetune


def run(cfg: DictConfig) -> dict:
    """Finetune as ``cfg`` says; returns the last evaluation results (student, expert)."""
    return run_finetune(cfg)


def main() -> int:
    return cli.main("mt_factored.finetune", "finetune", run, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())

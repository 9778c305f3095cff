"""``python -m mt_factored.fidelity``: the planning-fidelity metric of a student checkpoint.

Loads the expert and the student (:func:`~mt_factored.analysis.models.load_models`), draws
the data states from ``data``, runs :class:`~mt_factored.planning.fidelity.FidelityProbe`
and prints the table (JSON to ``out``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from mt_factored.analysis.config import FidelityCommandConfig
from mt_factored.analysis.models import EXPERT, STUDENT, load_models
from mt_factored.artifacts.atomic import atomic_write
from mt_factored.data.stream import open_store
from mt_factored.errors import InputError, MismatchError
from mt_factored.planning.fidelity import FidelityProbe, TaskFidelity, format_table, summary

log = logging.getLogger(__name__)


def run_fidelity(cfg: FidelityCommandConfig) -> dict[str, dict[str, TaskFidelity]]:
    """Score ``cfg.student`` against ``cfg.expert`` on ``cfg.tasks``; print and return it."""
    if cfg.expert is None:
        raise InputError(
            "fidelity needs the expert that judges the plans",
            "pass expert=<checkpoint> or expert={task: checkpoint}",
        )
    models = load_models(cfg, cfg.student)
    expert, student = models[EXPERT], models[STUDENT]
    if expert.task_ids != student.task_ids:
        raise MismatchError(
            f"the expert knows the tasks by ids {expert.task_ids}, the student by "
            f"{student.task_ids}",
            "score a student trained with the expert's task set (task_set=...)",
        )
    if expert.obs_dim != student.obs_dim:
        raise MismatchError(
            f"expert reads {expert.obs_dim} observation entries, the student {student.obs_dim}",
            "score a student distilled from this expert",
        )
    store = open_store(cfg.data) if cfg.data is not None else None
    started = time.perf_counter()
    probe = FidelityProbe(
        expert.net,
        expert.task_ids,
        expert.obs_dim,
        cfg.planning,
        store=store,
        config=cfg.fidelity,
        device=cfg.device,
        compile=cfg.compile,
    )
    results = probe.measure(student.net)
    seconds = time.perf_counter() - started
    print(format_table(results))
    print(f"({len(results)} tasks in {seconds:.1f} s)")
    if cfg.out:
        payload = {
            "student": str(cfg.student),
            "expert": str(cfg.expert),
            "seconds": seconds,
            "summary": summary(results),
            "tasks": {t: {s: r.as_dict() for s, r in by.items()} for t, by in results.items()},
        }
        atomic_write(Path(cfg.out), lambda p: p.write_text(json.dumps(payload, indent=2)))
    return results

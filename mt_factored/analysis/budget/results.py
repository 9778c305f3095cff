"""The budget sweep's results file: one JSON, rewritten atomically after every cell, so a
stopped sweep resumes where it stopped; settings that differ refuse to mix."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mt_factored.analysis.budget.grid import Budget
from mt_factored.artifacts.atomic import write_json
from mt_factored.errors import MismatchError

SWEEP_FORMAT_VERSION = 1


class SweepMismatchError(MismatchError):
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
        write_json(self.path, self.data)

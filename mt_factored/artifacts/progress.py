"""Progress bars of long commands (export, prepare, evaluate, sweeps): count, rate and ETA.

One `rich` bar layout for every command; ``enabled=False`` (``progress=false`` on the command
line) gives ``None`` instead, so callers write ``if bars: bars.update(...)``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any


def progress_bars(enabled: bool = True, unit: str = "it") -> Any:
    """A context manager giving a `rich.progress.Progress` (or None when disabled) whose
    bars show the description, the bar, done/total, the rate in ``unit``/s and the ETA."""
    if not enabled:
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )

"""Plots of a planning-budget sweep, drawn from its JSON results alone.

- :func:`plot_return_vs_latency`: return vs single-env planning ms per step (log x),
  every budget a point labelled with its budget, one line per model through its
  frontier (the best return reached at that latency or less); one panel per task
  and one for the mean over tasks.
- :func:`plot_return_grid`: per model and task, the return over samples x
  iterations as a heatmap coloured by the share of the model's own return at the
  reference budget (the Fac-TDMPC Fig. 7 comparison), the chosen smallest budget
  outlined.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mt_factored.analysis.budget.grid import Budget
from mt_factored.analysis.figures import save_figure

MEAN = "mean"
"""Panel name of the task average."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    """Save as PNG through a temp file in the same folder, then close the figure."""
    try:
        return save_figure(fig, path, dpi=120, bbox_inches="tight")
    finally:
        _pyplot().close(fig)


def panel_points(
    cells: Mapping[str, Mapping[str, Mapping[str, Any]]], tasks: Sequence[str], panel: str
) -> dict[Budget, tuple[float, float, float]]:
    """Budget -> (plan ms, mean return, std) of one model in one panel (a task or :data:`MEAN`).

    The mean panel averages over ``tasks`` and keeps only budgets run on all of them
    (its std is the mean of the tasks' stds).
    """
    points = {}
    for label, by_task in cells.items():
        wanted = tasks if panel == MEAN else [panel]
        if not all(t in by_task for t in wanted):
            continue
        rows = [by_task[t] for t in wanted]
        points[Budget.parse(label)] = (
            statistics.fmean(r["plan_ms"] for r in rows),
            statistics.fmean(r["mean"] for r in rows),
            statistics.fmean(r["std"] for r in rows),
        )
    return points


def frontier(ms: np.ndarray, ret: np.ndarray) -> np.ndarray:
    """Indices, fastest first, of the points whose return beats every faster point's."""
    best, keep = -np.inf, []
    for i in np.argsort(ms, kind="stable"):
        if ret[i] > best:
            best = ret[i]
            keep.append(i)
    return np.array(keep, dtype=int)


def _legend(model: str, info: Mapping[str, Any]) -> str:
    """``"small (0.21M params)"``: the size tells students of different sizes apart."""
    params = info.get("params")
    return f"{model} ({params / 1e6:.2g}M params)" if params else model


def _panels(tasks: Sequence[str]) -> list[str]:
    return [*tasks, MEAN] if len(tasks) > 1 else list(tasks)


def plot_return_vs_latency(
    data: Mapping[str, Any],
    tasks: Sequence[str],
    reference: Budget,
    path: str | os.PathLike,
    fraction: float = 0.95,
) -> Path:
    """Return vs planning ms per step (log x) of every model; see the module docstring.

    Args:
        data: the sweep's JSON (``SweepFile.data``).
        tasks: the tasks to draw, in order.
        reference: drawn with a star; a dotted line marks ``fraction`` of its return.
        path: the PNG to write.
    """
    plt = _pyplot()
    panels = _panels(tasks)
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.6 * len(panels), 4.0), squeeze=False, layout="constrained"
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        for i, (model, cells) in enumerate(data["cells"].items()):
            points = panel_points(cells, tasks, panel)
            if not points:
                continue
            color = f"C{i}"
            order = sorted(points, key=lambda b: points[b][0])
            ms, ret, std = (np.array([points[b][k] for b in order]) for k in range(3))
            ax.errorbar(ms, ret, yerr=std, color=color, fmt="o", ms=3, lw=0.6, capsize=2)
            front = frontier(ms, ret)
            name = _legend(model, data.get("models", {}).get(model, {}))
            ax.plot(ms[front], ret[front], color=color, lw=1.2, marker="o", ms=3, label=name)
            for b, x, y in zip(order, ms, ret, strict=True):
                ax.annotate(b.label, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
            if reference in points:
                ref_ms, ref_ret, _ = points[reference]
                ax.plot(ref_ms, ref_ret, marker="*", ms=11, color=color, mec="k", mew=0.5)
                keep = ref_ret - (1.0 - fraction) * abs(ref_ret)
                ax.axhline(keep, color=color, ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=6)
        ax.set_xlabel("planning ms per step (1 env)")
        ax.set_ylabel("return")
        ax.set_title("mean over tasks" if panel == MEAN else panel, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"Return vs planning latency over MPPI budgets (samples x iterations); star: "
        f"{reference.label}, dotted: {fraction:.0%} of it",
        fontsize=10,
    )
    return _save(fig, path)


def plot_return_grid(
    data: Mapping[str, Any],
    tasks: Sequence[str],
    reference: Budget,
    path: str | os.PathLike,
) -> Path:
    """Heatmaps over samples x iterations, one row per model; see the module docstring."""
    plt = _pyplot()
    panels = _panels(tasks)
    models = list(data["cells"])
    budgets = {Budget.parse(label) for cells in data["cells"].values() for label in cells}
    samples = sorted({b.num_samples for b in budgets})
    iterations = sorted({b.iterations for b in budgets})
    fig, axes = plt.subplots(
        len(models),
        len(panels),
        figsize=(
            1.5 + max(2.4, 0.55 * len(samples)) * len(panels),
            0.8 + max(2.0, 0.45 * len(iterations) + 0.8) * len(models),
        ),
        squeeze=False,
        layout="constrained",
    )
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("lightgrey")
    image = None
    for row, model in enumerate(models):
        chosen = data.get("selection", {}).get(model, {}).get("budgets", {})
        for col, panel in enumerate(panels):
            ax = axes[row][col]
            points = panel_points(data["cells"][model], tasks, panel)
            ret = np.full((len(iterations), len(samples)), np.nan)
            for b, (_, r, _) in points.items():
                ret[iterations.index(b.iterations), samples.index(b.num_samples)] = r
            ref = points.get(reference, (None, np.nan, None))[1]
            share = ret / abs(ref) if ref and np.isfinite(ref) else np.full_like(ret, np.nan)
            image = ax.imshow(
                np.ma.masked_invalid(share), cmap=cmap, vmin=0.5, vmax=1.05, origin="lower"
            )
            for (i, j), r in np.ndenumerate(ret):
                if np.isfinite(r):
                    dark = not share[i, j] > 0.8  # viridis turns light towards 1
                    color = "w" if dark else "k"
                    ax.text(j, i, f"{r:.0f}", ha="center", va="center", fontsize=6, color=color)
            pick = chosen.get(panel)
            if pick is not None:
                b = Budget.parse(pick)
                ax.add_patch(
                    plt.Rectangle(
                        (samples.index(b.num_samples) - 0.5, iterations.index(b.iterations) - 0.5),
                        1,
                        1,
                        fill=False,
                        ec="red",
                        lw=2,
                    )
                )
            ax.set_xticks(range(len(samples)), [str(s) for s in samples], fontsize=7)
            ax.set_yticks(range(len(iterations)), [str(i) for i in iterations], fontsize=7)
            ax.set_title(f"{model}: {'mean over tasks' if panel == MEAN else panel}", fontsize=8)
            if row == len(models) - 1:
                ax.set_xlabel("samples", fontsize=8)
            if col == 0:
                ax.set_ylabel("iterations", fontsize=8)
    if image is not None:
        fig.colorbar(
            image, ax=axes, shrink=0.8, extend="min", label=f"return / return at {reference.label}"
        )
    fig.suptitle(
        "Return over MPPI samples x iterations (text: return; red box: smallest budget "
        "keeping the return)",
        fontsize=9,
    )
    return _save(fig, path)

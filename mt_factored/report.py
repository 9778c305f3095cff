"""Markdown tables of evaluation results (printed by the entry points, pasted into READMEs)."""

from __future__ import annotations

from collections.abc import Mapping

from mt_factored.planning.episodes import EpisodeStats


def _fmt(stats: EpisodeStats | None) -> tuple[str, str]:
    if stats is None:
        return "-", "-"
    ms = (
        stats.plan_ms_single_env if stats.plan_ms_single_env is not None else stats.plan_ms_per_call
    )
    return f"{stats.mean:.1f} ± {stats.std:.1f}", f"{ms:.1f}"


def returns_table(results: Mapping[str, EpisodeStats], title: str = "return") -> str:
    """One model: task | mean ± std return | episodes | planning ms/step."""
    lines = [
        f"| task | {title} (mean ± std) | episodes | plan ms/step |",
        "|---|---|---|---|",
    ]
    for task, stats in results.items():
        ret, ms = _fmt(stats)
        lines.append(f"| {task} | {ret} | {len(stats.returns)} | {ms} |")
    return "\n".join(lines)


def comparison_table(
    student: Mapping[str, EpisodeStats], expert: Mapping[str, EpisodeStats]
) -> str:
    """Student vs expert per task: returns, ratio, planning ms/step of each and the speedup."""
    lines = [
        "| task | expert return | student return | ratio | expert ms/step | student ms/step | speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for task, s in student.items():
        e = expert.get(task)
        s_ret, s_ms = _fmt(s)
        e_ret, e_ms = _fmt(e)
        ratio = speed = "-"
        if e is not None:
            if abs(e.mean) > 1e-8:
                ratios.append(s.mean / e.mean)
                ratio = f"{ratios[-1]:.2f}"
            if s_ms != "-" and e_ms != "-" and float(s_ms) > 0:
                speed = f"{float(e_ms) / float(s_ms):.0f}x"
        lines.append(f"| {task} | {e_ret} | {s_ret} | {ratio} | {e_ms} | {s_ms} | {speed} |")
    if ratios:
        lines.append(f"| **mean** | | | {sum(ratios) / len(ratios):.2f} | | | |")
    return "\n".join(lines)

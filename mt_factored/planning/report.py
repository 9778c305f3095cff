"""Markdown tables of evaluation results (printed by the entry points, pasted into READMEs)."""

from __future__ import annotations

from collections.abc import Mapping

from mt_factored.planning.episodes import EpisodeStats

CACHED_MARK = "*"
"""After a return read from the expert-result cache."""


def _fmt(stats: EpisodeStats | None) -> tuple[str, str]:
    if stats is None:
        return "-", "-"
    ms = (
        stats.plan_ms_single_env if stats.plan_ms_single_env is not None else stats.plan_ms_per_call
    )
    mark = CACHED_MARK if stats.extra.get("cached") else ""
    return f"{stats.mean:.1f} ± {stats.std:.1f}{mark}", f"{ms:.1f}"


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


def budget_label(stats: EpisodeStats | None) -> str:
    """``"512x6"`` from the MPPI budget recorded in ``stats.extra`` (empty when unknown)."""
    if stats is None or "budget" not in stats.extra:
        return ""
    samples, iterations = stats.extra["budget"]
    if iterations == 0:  # PolicyActor: the policy prior acts alone
        return "policy prior"
    return f"{samples}x{iterations}"


def comparison_table(
    student: Mapping[str, EpisodeStats], expert: Mapping[str, EpisodeStats]
) -> str:
    """Student vs expert per task: returns, ratio, planning ms/step of each and the speedup.

    Each model plans with the MPPI budget (samples x iterations) named in the header. When
    the student planned with a smaller budget than the expert, one more column gives the
    student's latency at the expert's budget, so the speedup at equal settings stays visible.
    """
    first_s, first_e = next(iter(student.values()), None), next(iter(expert.values()), None)
    s_budget, e_budget = budget_label(first_s), budget_label(first_e)
    equal = any("plan_ms_at_expert_budget" in s.extra for s in student.values())
    head = [
        "task",
        "expert return",
        "student return",
        "ratio",
        f"expert ms/step{f' ({e_budget})' if e_budget else ''}",
        f"student ms/step{f' ({s_budget})' if s_budget else ''}",
        "speedup",
    ]
    if equal:
        head += [f"student ms/step ({e_budget or 'expert budget'})", "speedup at equal budget"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
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
            speed = _speedup(e_ms, s_ms)
        row = [task, e_ret, s_ret, ratio, e_ms, s_ms, speed]
        if equal:
            eq_ms = s.extra.get("plan_ms_at_expert_budget")
            eq = f"{eq_ms:.1f}" if eq_ms is not None else "-"
            row += [eq, _speedup(e_ms, eq)]
        lines.append("| " + " | ".join(row) + " |")
    if ratios:
        lines.append(f"| **mean** | | | {sum(ratios) / len(ratios):.2f} |" + " |" * (len(head) - 4))
    if any(e.extra.get("cached") for e in expert.values()):
        lines.append(
            f"\n{CACHED_MARK} from the expert-result cache (same checkpoint SHA-256, task, seeds, "
            "episodes, planner settings, threads and library versions); its latency was measured "
            "in this run. eval.refresh_expert_cache=true evaluates it again."
        )
    return "\n".join(lines)


def _speedup(slow_ms: str, fast_ms: str) -> str:
    if "-" in (slow_ms, fast_ms) or float(fast_ms) <= 0:
        return "-"
    return f"{float(slow_ms) / float(fast_ms):.0f}x"

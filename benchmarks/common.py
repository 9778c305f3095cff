"""Helpers shared by the benchmarks: timing, FLOP counting, the measured matmul peak.

Thread counts are set per measurement with :func:`threads`; the machines these
numbers come from are shared, so every table also reports the load average
(:func:`load_average`) next to its timings.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class TimingStats:
    """Wall-clock statistics of repeated calls, in milliseconds."""

    mean_ms: float
    median_ms: float
    std_ms: float
    min_ms: float
    repeats: int
    cpu_mean_ms: float = float("nan")
    """Mean process CPU time per call, all threads together. With one thread it stays
    close to the unloaded wall time when other processes share the cores."""

    def __str__(self) -> str:
        return f"{self.mean_ms:.1f} ± {self.std_ms:.1f} ms (median {self.median_ms:.1f}, min {self.min_ms:.1f}, n={self.repeats})"


def time_fn(fn: Callable[[], object], warmup: int = 3, repeats: int = 20) -> TimingStats:
    """Times ``fn()`` ``repeats`` times after ``warmup`` untimed calls.

    Args:
        fn: the work to time; on an accelerator it must synchronise itself.
        warmup: untimed calls first (allocator, caches, lazy initialisation).
        repeats: timed calls (>= 1).

    Returns:
        wall-clock mean, median, standard deviation and minimum per call, and the
        mean process CPU time per call.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    cpu_start = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    cpu_ms = (time.process_time() - cpu_start) * 1e3 / repeats
    return TimingStats(
        mean_ms=statistics.fmean(times),
        median_ms=statistics.median(times),
        std_ms=statistics.stdev(times) if repeats > 1 else 0.0,
        min_ms=min(times),
        repeats=repeats,
        cpu_mean_ms=cpu_ms,
    )


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one ``fn()`` call as counted by ``torch.utils.flop_counter``.

    The counter covers the matrix products (mm, addmm, bmm, baddbmm, convolutions,
    attention) at 2 FLOPs per multiply-add; elementwise work (LayerNorm, Mish,
    softmax) is not counted.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


@contextlib.contextmanager
def threads(num: int) -> Iterator[None]:
    """Runs the block with ``torch.set_num_threads(num)``, restoring the old count."""
    if num < 1:
        raise ValueError(f"thread count must be >= 1, got {num}")
    old = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def matmul_peak_gflops(num_threads: int, size: int = 2048, repeats: int = 10) -> float:
    """Measured fp32 matmul throughput (GFLOP/s) of this machine with ``num_threads``.

    Times ``size x size @ size x size`` and keeps the fastest call, the closest a
    shared machine gets to its peak.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen)
    b = torch.randn(size, size, generator=gen)
    out = torch.empty(size, size)
    with threads(num_threads):
        stats = time_fn(lambda: torch.mm(a, b, out=out), warmup=2, repeats=repeats)
    return 2 * size**3 / (stats.min_ms * 1e-3) / 1e9


@dataclass(frozen=True)
class PlanMeasurement:
    """Latency and work of one planner's warm-started planning step."""

    stats: TimingStats
    flops: int
    """Matmul FLOPs of one step (:func:`count_flops`)."""
    load_before: float
    load_after: float

    def gflops_per_s(self) -> float:
        """Achieved matmul throughput at the mean latency."""
        return self.flops / (self.stats.mean_ms * 1e-3) / 1e9


def measure_plan(
    planner: Any, obs: torch.Tensor, task: torch.Tensor, warmup: int, repeats: int
) -> PlanMeasurement:
    """Times warm-started ``planner.plan(obs, task)`` calls, as in an episode after its
    first step, and counts the FLOPs of one.

    Args:
        planner: an ``MPPIPlanner`` (anything with ``plan(obs, task, t0=...)``).
        obs, task: one planning step's inputs.
        warmup, repeats: see :func:`time_fn`.

    Returns:
        a :class:`PlanMeasurement`.
    """
    planner.plan(obs, task, t0=True)

    def step() -> None:
        planner.plan(obs, task)

    flops = count_flops(step)
    load_before = load_average()
    stats = time_fn(step, warmup, repeats)
    return PlanMeasurement(stats, flops, load_before, load_average())


def load_average() -> float:
    """1-minute load average (other processes competing for the cores)."""
    return os.getloadavg()[0]


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def variant_run_overrides(args: Any, variant: str) -> list[str]:
    """Hydra overrides shared by the comparison benchmarks (partition ablation, finetune vs
    scratch): every variant trains ``args.steps`` steps from fresh into
    ``args.run_root/<variant>`` with ``args.seed``, then evaluates once at the end
    (``args.episodes``, ``args.max_steps``); only the first variant evaluates the expert."""
    return [
        f"seed={args.seed}",
        f"trainer.max_steps={args.steps}",
        f"checkpoint.every_n_steps={args.steps}",
        "resume=never",
        f"run_dir='{args.run_root / variant}'",
        "eval.every_n_steps=0",
        "eval.at_end=true",
        f"eval.episodes={args.episodes}",
        f"eval.max_steps={args.max_steps if args.max_steps else 'null'}",
        f"eval.compare_expert={'true' if variant == args.variants[0] else 'false'}",
        "trainer.enable_progress_bar=false",
    ]


def train_unmeasured(run_dir: Any, num_threads: int, steps: int, overrides: list[str]) -> None:
    """Train ``overrides`` (a recipe and its changes) for ``steps`` steps into ``run_dir``, with
    no final evaluation (the benchmarks that call this measure every student the same way
    themselves) and no publish (the shipped student stays as it is)."""
    from mt_factored import cli
    from mt_factored.train import run

    run(
        cli.compose(
            "train",
            [
                *overrides,
                f"run_dir='{run_dir}'",
                f"threads={num_threads}",
                f"trainer.max_steps={steps}",
                "eval.at_end=false",
                "publish.dir=null",
            ],
        )
    )

"""Expert planning latency: ms per MPPI step for TD-MPC2 experts, FLOPs, fraction of peak.

    python benchmarks/planning_latency.py                      # the README table
    python benchmarks/planning_latency.py --sizes 5 --threads 2 --repeats 50

One env, the default MPPI settings (6 iterations, 512 samples, 64 elites, 24 policy
trajectories, horizon 3, two Q members for the bootstrap), a randomly initialised
mt30 expert of each size (latency does not depend on the weights). Each row times
``--repeats`` warm-started plan calls after ``--warmup`` untimed ones. FLOPs are
the matrix products of one plan (torch.utils.flop_counter); the peak is the fastest
2048^2 fp32 matmul with the same thread count. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    markdown_table,
    matmul_peak_gflops,
    measure_plan,
    threads,
)
from mt_factored.expert import ExpertConfig, TDMPC2Expert  # noqa: E402
from mt_factored.planning import ExpertPlanningModel, MPPIConfig, MPPIPlanner  # noqa: E402


def build_planner(size: int, seed: int) -> tuple[MPPIPlanner, torch.Tensor, torch.Tensor]:
    """A default-MPPI planner over a random mt30 expert of ``size``, and one env's input."""
    torch.manual_seed(seed)
    expert = TDMPC2Expert(ExpertConfig.from_size(size)).eval()
    planner = MPPIPlanner(ExpertPlanningModel(expert, generator=seed), MPPIConfig(), generator=seed)
    obs = torch.randn(1, expert.obs_dim)
    task = torch.zeros(1, dtype=torch.long)
    return planner, obs, task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1, 5], help="expert sizes (M params)"
    )
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    peaks = {n: matmul_peak_gflops(n) for n in args.threads}
    rows = []
    for size in args.sizes:
        planner, obs, task = build_planner(size, args.seed)
        for num in args.threads:
            with threads(num):
                run = measure_plan(planner, obs, task, args.warmup, args.repeats)
            stats, achieved = run.stats, run.gflops_per_s()
            rows.append(
                [
                    f"{size}M",
                    num,
                    f"{stats.mean_ms:.1f} ± {stats.std_ms:.1f}",
                    f"{stats.median_ms:.1f}",
                    f"{stats.cpu_mean_ms:.1f}",
                    f"{run.flops / 1e9:.2f}",
                    f"{achieved:.1f}",
                    f"{peaks[num]:.1f}",
                    f"{achieved / peaks[num]:.0%}",
                    f"{run.load_before:.2f} / {run.load_after:.2f}",
                ]
            )
    headers = [
        "expert",
        "threads",
        "ms/step (mean ± std)",
        "median ms",
        "CPU ms/step",
        "GFLOP/step",
        "GFLOP/s",
        "matmul peak GFLOP/s",
        "of peak",
        "load before / after",
    ]
    print(markdown_table(headers, rows))
    cfg = MPPIConfig()
    print(
        f"\nMPPI: {cfg.iterations} iterations, {cfg.num_samples} samples, {cfg.num_elites} elites, "
        f"{cfg.num_pi_trajs} policy trajectories, horizon {cfg.horizon}; 1 env; "
        f"{args.repeats} timed plans after {args.warmup} warm-up; torch {torch.__version__}. "
        "CPU ms/step: process CPU time of all threads together; load: 1-minute load average."
    )


if __name__ == "__main__":
    main()

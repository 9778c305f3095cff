"""Student vs expert planning latency: ms per MPPI step, speedup, FLOPs, fraction of peak.

    python benchmarks/student_planning_latency.py                 # the README tables
    python benchmarks/student_planning_latency.py --joints 6 --threads 2 --repeats 50

Table 1 (per joint count): one env whose task has N joints, one agent per joint,
planned with the default MPPI settings (6 iterations, 512 samples, 64 elites, 24
policy trajectories, horizon 3) by a student with the default ``StudentConfig``
sizes, next to the mt30-5M TD-MPC2 expert in the same run (the expert plans 1 agent
x 6 dims; its cost does not depend on the joint count). Table 2 (6 joints): the
trade-off over student sizes (latent m, hidden width d, hidden layers L) and MPPI
budgets (samples x iterations), with parameters and FLOPs. Weights are random
(latency does not depend on them). FLOPs are the matrix products of one plan
(torch.utils.flop_counter); the peak is the fastest 2048^2 fp32 matmul with the
same thread count. The machines are shared: every row carries the load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    count_flops,
    load_average,
    markdown_table,
    matmul_peak_gflops,
    threads,
    time_fn,
)
from mt_factored.expert import ExpertConfig, TDMPC2Expert  # noqa: E402
from mt_factored.planning import ExpertPlanningModel, MPPIConfig, MPPIPlanner  # noqa: E402
from mt_factored.planning.student_adapter import StudentPlanningModel  # noqa: E402
from mt_factored.student import FactoredStudent, StudentConfig  # noqa: E402


def student_for_joints(joints: int, **sizes) -> FactoredStudent:
    """A student whose single (synthetic) task has ``joints`` joints, one agent each."""
    config = StudentConfig(
        task_names=(f"synthetic-{joints}-joints",),
        action_dims=(joints,),
        discounts=(0.99,),
        action_dim=joints,
        **sizes,
    )
    return FactoredStudent(config).eval()


def parse_size(text: str) -> dict[str, int]:
    m, d, layers = (int(x) for x in text.split(":"))
    return {"latent_dim": m, "mlp_dim": d, "num_mlp_layers": layers}


def parse_budget(text: str) -> MPPIConfig:
    samples, iterations = (int(x) for x in text.lower().split("x"))
    base = MPPIConfig()
    elites = min(base.num_elites, samples // 2)
    pi = min(base.num_pi_trajs, samples // 4)
    return dataclasses.replace(
        base, num_samples=samples, iterations=iterations, num_elites=elites, num_pi_trajs=pi
    )


PATHS = ("eager", "compiled-returns", "compiled")
"""``compiled``: each model's fastest compiled path (the student's whole optimisation loop as
one graph); ``compiled-returns``: only the H-step returns compiled, MPPI's own steps eager
(the student's compiled path before the loop was fused; the expert has only this one)."""


def make_planner(model_cls, net, config: MPPIConfig, seed: int, path: str) -> MPPIPlanner:
    model = model_cls(net, seed, compile=path != "eager")
    if path == "compiled-returns":
        model.fuses_iterations = False  # MPPI's loop eager, the compiled returns per iteration
    return MPPIPlanner(model, config, seed)


def measure(model_cls, net, config: MPPIConfig, obs, task, args, num: int) -> dict[str, tuple]:
    """{path: (stats, flops, load, first plan s)}, warm-up and compilation untimed.

    FLOPs are counted on an eager planner of the same model (the compiled graph does the same
    matrix products; counting under a dispatch mode would make dynamo trace the compiled
    function again, with other guards, and the timed calls then check both graphs' guards).
    """
    with threads(num):
        flops = count_flops(
            lambda: make_planner(model_cls, net, config, args.seed, "eager").plan(obs, task)
        )
    out = {}
    paths = args.paths
    if model_cls is ExpertPlanningModel and "compiled" in paths:  # one compiled path only
        paths = [p for p in paths if p != "compiled-returns"]
    for path in paths:
        if path != "eager":
            # One model per run, as in a real command: graphs of earlier models would add
            # their guards to every call (recompiling this one hits Inductor's disk cache).
            torch._dynamo.reset()
        planner = make_planner(model_cls, net, config, args.seed, path)
        with threads(num):
            start = time.perf_counter()
            planner.plan(obs, task, t0=True)  # compiles the graphs of this shape
            first = time.perf_counter() - start
            load = load_average()
            stats = time_fn(lambda p=planner: p.plan(obs, task), args.warmup, args.repeats)
        out[path] = (stats, flops, f"{load:.1f}/{load_average():.1f}", first)
    return out


def layer_cost(width: int, rows: int, num: int, repeats: int) -> list:
    """One hidden layer of the student (Linear -> LayerNorm -> SiLU) on ``[rows, width]``, in
    ns per output element: its matmul alone, the compiled LayerNorm+SiLU alone, the whole
    layer compiled (one fused element-wise kernel after the matmul) and eager. The matmul's
    share of the compiled layer bounds the fraction of the matmul peak that any schedule of
    these layers reaches (less still, as these matmuls are below the 2048^2 peak)."""
    x = torch.randn(rows, width)
    weight, bias = torch.randn(width, width) / width**0.5, torch.randn(width)
    ln_w, ln_b = torch.ones(width), torch.zeros(width)

    def matmul(x):
        return torch.nn.functional.linear(x, weight, bias)

    def tail(h):
        return torch.nn.functional.silu(torch.nn.functional.layer_norm(h, (width,), ln_w, ln_b))

    def layer(x):
        return tail(matmul(x))

    with threads(num), torch.inference_mode():
        torch._dynamo.reset()
        tail_c, layer_c = torch.compile(tail, dynamic=False), torch.compile(layer, dynamic=False)
        h = matmul(x)
        mm, el, both, eager = (
            time_fn(lambda fn=fn, arg=arg: fn(arg), 10, repeats).min_ms
            for fn, arg in ((matmul, x), (tail_c, h), (layer_c, x), (layer, x))
        )
    ns = 1e6 / (rows * width)  # ms per call -> ns per output element
    return [
        width,
        rows,
        *(f"{t * ns:.2f}" for t in (mm, el, both, eager)),
        f"{mm / both:.0%}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--joints", type=int, nargs="+", default=[1, 2, 4, 6, 12, 21])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument(
        "--sizes",
        nargs="*",
        default=["16:64:1", "32:64:1", "32:64:2", "32:128:2"],
        help="student sizes m:d:L for the trade-off table (6 joints, 1 thread)",
    )
    parser.add_argument(
        "--budgets",
        nargs="*",
        default=["512x6", "128x2", "32x2"],
        help="MPPI samples x iterations for the trade-off table",
    )
    parser.add_argument("--expert-size", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--envs",
        type=int,
        nargs="*",
        default=[1, 8, 64],
        help="envs planned in one call for the batched-planning table (6 joints, 128 x 2)",
    )
    parser.add_argument(
        "--layer-widths",
        type=int,
        nargs="*",
        default=[64, 128],
        help="hidden widths for the per-layer cost table (rows: 6 joints x 512 samples)",
    )
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    peaks = {n: matmul_peak_gflops(n) for n in args.threads}
    expert = TDMPC2Expert(ExpertConfig.from_size(args.expert_size)).eval()
    obs = torch.randn(1, 24)
    task = torch.zeros(1, dtype=torch.long)

    def of_peak(flops: int, ms: float, num: int) -> str:
        return f"{flops / (ms * 1e-3) / 1e9 / peaks[num]:.0%}"

    def ms(stats) -> str:
        return f"{stats.mean_ms:.1f} ± {stats.std_ms:.1f} (min {stats.min_ms:.1f})"

    def expert_runs(config: MPPIConfig, num: int) -> dict[str, tuple]:
        return measure(
            ExpertPlanningModel,
            expert,
            config,
            obs,
            task,
            args,
            num,
        )

    def fastest(runs: dict[str, tuple]) -> tuple[str, tuple]:
        return min(runs.items(), key=lambda item: item[1][0].mean_ms)

    rows, budget_rows = [], []
    default = MPPIConfig()
    for num in args.threads:
        experts = expert_runs(default, num)
        e_path, (e_stats, e_flops, e_load, _) = fastest(experts)
        for path, (stats, flops, load, _) in experts.items():
            rows.append(
                [
                    "expert",
                    num,
                    path,
                    ms(stats),
                    "",
                    flops / 1e9,
                    of_peak(flops, stats.mean_ms, num),
                    load,
                ]
            )
        for joints in args.joints:
            student = student_for_joints(joints)
            runs = measure(
                StudentPlanningModel,
                student,
                default,
                obs,
                task,
                args,
                num,
            )
            for path, (stats, flops, load, first) in runs.items():
                rows.append(
                    [
                        joints,
                        num,
                        path,
                        ms(stats),
                        f"{e_stats.mean_ms / stats.mean_ms:.1f}x",
                        flops / 1e9,
                        of_peak(flops, stats.mean_ms, num),
                        f"{load} (first plan {first:.1f} s)",
                    ]
                )
    sizes = StudentConfig(task_names=("x",), action_dims=(1,), discounts=(0.99,))
    print(
        f"## Student vs {args.expert_size}M expert, default MPPI (512 x 6), default student "
        f"(m={sizes.latent_dim}, d={sizes.mlp_dim}, L={sizes.num_mlp_layers})\n"
    )
    print("The speedup divides the expert's fastest path in the same run by the student's.\n")
    print(
        markdown_table(
            [
                "joints",
                "threads",
                "path",
                "ms/step",
                "speedup vs expert",
                "GFLOP/step",
                "of matmul peak",
                "load before/after",
            ],
            rows,
        )
    )

    num = min(args.threads)
    for budget in args.budgets:
        config = parse_budget(budget)
        e_path, (e_stats, *_rest) = fastest(expert_runs(config, num))
        for size in args.sizes:
            for joints in (1, 6):
                student = student_for_joints(joints, **parse_size(size))
                runs = measure(
                    StudentPlanningModel,
                    student,
                    config,
                    obs,
                    task,
                    args,
                    num,
                )
                for path, (stats, flops, load, _) in runs.items():
                    budget_rows.append(
                        [
                            budget,
                            size,
                            joints,
                            path,
                            ms(stats),
                            f"{e_stats.mean_ms:.0f} ({e_path})",
                            f"{e_stats.mean_ms / stats.mean_ms:.1f}x",
                            of_peak(flops, stats.mean_ms, num),
                            load,
                        ]
                    )
    print(f"\n## Budgets and sizes, {num} thread(s), the expert at the same budget\n")
    print(
        markdown_table(
            [
                "MPPI samples x iters",
                "m:d:L",
                "joints",
                "path",
                "student ms/step",
                "expert ms/step (path)",
                "speedup",
                "of matmul peak",
                "load",
            ],
            budget_rows,
        )
    )
    env_rows = []
    config = parse_budget("128x2")
    student = student_for_joints(6)
    for envs in args.envs:
        many_obs = torch.randn(envs, 24)
        many_tasks = torch.zeros(envs, dtype=torch.long)
        runs = measure(StudentPlanningModel, student, config, many_obs, many_tasks, args, num)
        for path, (stats, flops, load, _) in runs.items():
            env_rows.append(
                [
                    envs,
                    path,
                    f"{stats.mean_ms:.1f} ± {stats.std_ms:.1f}",
                    f"{stats.mean_ms / envs:.2f}",
                    f"{envs / (stats.mean_ms * 1e-3):.0f}",
                    of_peak(flops, stats.mean_ms, num),
                    load,
                ]
            )
    print(f"\n## Batched planning: E envs x 6 joints in one call, 128 x 2, {num} thread(s)\n")
    print(
        markdown_table(
            ["envs", "path", "ms/call", "ms per env", "env steps/s", "of matmul peak", "load"],
            env_rows,
        )
    )
    if args.layer_widths:
        print(
            f"\n## One hidden layer, ns per output element ({num} thread(s), min of "
            f"{max(args.repeats, 50)} calls)\n"
        )
        print(
            markdown_table(
                [
                    "width",
                    "rows",
                    "matmul",
                    "LayerNorm+SiLU (compiled)",
                    "layer (compiled)",
                    "layer (eager)",
                    "matmul share (compiled)",
                ],
                [layer_cost(w, 6 * 512, num, max(args.repeats, 50)) for w in args.layer_widths],
            )
        )
    print(
        f"\nmatmul peak GFLOP/s: {', '.join(f'{n} thr {p:.0f}' for n, p in peaks.items())}; "
        f"{args.repeats} timed plans after {args.warmup} warm-up (compilation untimed); "
        f"torch {torch.__version__}"
    )


if __name__ == "__main__":
    main()

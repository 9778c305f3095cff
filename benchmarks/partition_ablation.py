"""Number of agents (Fac-TDMPC App. C.2): 1 agent vs one joint per agent vs the discovered partition.

    python benchmarks/partition_ablation.py                 # walker-stand, the shipped expert + data
    python benchmarks/partition_ablation.py --steps 4 --episodes 1 --max-steps 10   # plumbing only

Distills the task's shipped expert into the student three times on the task's shipped data,
with the same recipe, seed and steps; only ``student.partitions`` differs:

- ``one-agent``: all action dims in one group (a centralized student and planner, as TD-MPC);
- ``per-joint``: one joint per agent (the default);
- ``discovered``: ``python -m mt_factored.partition`` on the same data (PartitionConfig's default
  settings), or ``--discovered "0,3;1;2;4;5"``.

Each student then plans in dm_control (MPPI settings of the recipe); the expert is evaluated
once. Prints a table and writes ``<run-root>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import load_average, markdown_table, variant_run_overrides  # noqa: E402
from mt_factored import cli
from mt_factored.student.config import Partition  # noqa: E402
from mt_factored.tasks import get_task  # noqa: E402

VARIANTS = ("one-agent", "per-joint", "discovered")


def parse_groups(text: str) -> Partition:
    """``"0,3;1;2"`` -> ``((0, 3), (1,), (2,))``."""
    return tuple(tuple(int(j) for j in group.split(",")) for group in text.split(";"))


def discover(task: str, data: str, run_root: Path) -> Partition:
    """The CLI's partition for ``task`` (PartitionConfig's default settings, no recipe written)."""
    from mt_factored.partition import run

    overrides = [
        f"data='{data}'",
        f"task={task}",
        "write_recipe=false",
        f"out_dir='{run_root / 'discovery'}'",
    ]
    cfg = cli.compose("partition", overrides=overrides)
    return run(cfg)[task].partition


def hydra_groups(groups: Partition) -> str:
    return "[" + ",".join("[" + ",".join(map(str, g)) + "]" for g in groups) + "]"


def train_overrides(args: argparse.Namespace, variant: str, groups: Partition) -> list[str]:
    task = args.task
    overrides = [
        f"recipe={args.base}",
        f"name=partition-ablation-{variant}",
        f"tasks=[{task}]",
        f"expert={{{task}: '{args.expert}'}}",
        f"data='{args.data}'",
        f"++student.partitions={{{task}: {hydra_groups(groups)}}}",
        *variant_run_overrides(args, variant),
    ]
    if args.batch_size:
        overrides.append(f"loader.batch_size={args.batch_size}")
    return overrides + list(args.override)


def run_variant(args: argparse.Namespace, variant: str, groups: Partition) -> dict:
    from mt_factored.train import run

    cfg = cli.compose("train", overrides=train_overrides(args, variant, groups))
    start = time.perf_counter()
    results = run(cfg)
    wall = time.perf_counter() - start
    student = results["student"][args.task]
    expert = results["expert"].get(args.task)
    return {
        "variant": variant,
        "partition": [list(g) for g in groups],
        "returns": student.returns,
        "mean": student.mean,
        "std": student.std,
        "plan_ms": student.plan_ms_single_env,
        "wall_s": wall,
        "expert": None
        if expert is None
        else {"returns": expert.returns, "mean": expert.mean, "std": expert.std},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="walker-stand")
    parser.add_argument("--expert", default=None, help="default: checkpoints/quickstart/<task>.pt")
    parser.add_argument("--data", default=None, help="default: data/quickstart/<task>.pt")
    parser.add_argument("--base", default="quickstart", help="recipe every variant starts from")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per variant")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--episodes", type=int, default=5, help="evaluation episodes")
    parser.add_argument("--max-steps", type=int, default=None, help="cut episodes short")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--discovered", type=parse_groups, default=None, help='e.g. "0,3;1;2"')
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--run-root", type=Path, default=Path("runs/partition_ablation"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--override", nargs="*", default=[], help="extra train overrides")
    args = parser.parse_args(argv)
    args.expert = args.expert or f"checkpoints/quickstart/{args.task}.pt"
    args.data = args.data or f"data/quickstart/{args.task}.pt"
    torch.set_num_threads(args.threads)

    dims = get_task(args.task).action_dim
    partitions = {
        "one-agent": (tuple(range(dims)),),
        "per-joint": tuple((j,) for j in range(dims)),
    }
    if "discovered" in args.variants:
        partitions["discovered"] = args.discovered or discover(args.task, args.data, args.run_root)
    rows = [run_variant(args, v, partitions[v]) for v in args.variants]

    expert = next((r["expert"] for r in rows if r["expert"]), None)
    table = [
        [
            r["variant"],
            r["partition"],
            len(r["partition"]),
            f"{r['mean']:.1f} ± {r['std']:.1f}",
            f"{r['mean'] / expert['mean']:.2f}" if expert and abs(expert["mean"]) > 1e-8 else "-",
            f"{r['plan_ms']:.1f}" if r["plan_ms"] is not None else "-",
            f"{r['wall_s']:.0f}",
        ]
        for r in rows
    ]
    if expert:
        table.append(["expert", "-", "-", f"{expert['mean']:.1f} ± {expert['std']:.1f}", "1.00"])
        table[-1] += ["-", "-"]
    headers = ["variant", "partition", "agents", "return", "/ expert", "plan ms/step", "wall s"]
    print(
        f"\n{args.task}: {args.steps} steps, seed {args.seed}, {args.episodes} episodes"
        f"{f' of {args.max_steps} steps' if args.max_steps else ''}, base recipe {args.base}, "
        f"{args.threads} thread(s), load {load_average():.1f}\n"
    )
    print(markdown_table(headers, table))
    out = args.run_root / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}))
    os.replace(tmp, out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

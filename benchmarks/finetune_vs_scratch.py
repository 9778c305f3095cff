"""Finetuning a pretrained student vs training the same student from scratch on a new robot.

    python benchmarks/finetune_vs_scratch.py --pretrained runs/quickstart/checkpoints/last.ckpt
    python benchmarks/finetune_vs_scratch.py --steps 4 --episodes 1 --max-steps 10  # plumbing only

Runs ``python -m mt_factored.finetune`` once per variant with the same recipe
(mt_factored/recipes/recipe/finetune-<robot>.yaml: expert, data, batch size, learning rate), seed
and optimizer steps; only how the student starts (and what trains) differs:

- ``finetuned``: the pretrained student, extended to the robot, every weight trains;
- ``frozen``: the same, with the shared per-joint networks frozen (``freeze_shared=true``);
- ``scratch``: the same extended architecture from fresh weights (``from_scratch=true``).

Each student then plans in dm_control (the recipe's MPPI settings); the expert once.
Prints a table and writes ``<run-root>/results.json``.
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

VARIANTS = {
    "finetuned": ["freeze_shared=false"],
    "frozen": ["freeze_shared=true"],
    "scratch": ["from_scratch=true", "freeze_shared=false"],
}


def overrides(args: argparse.Namespace, variant: str) -> list[str]:
    out = [
        f"recipe={args.recipe}",
        f"name={args.recipe}-{variant}",
        *variant_run_overrides(args, variant),
        *VARIANTS[variant],
    ]
    if args.pretrained:
        out.append(f"pretrained='{args.pretrained}'")
    return out + list(args.override)


def run_variant(args: argparse.Namespace, variant: str) -> dict:
    from mt_factored.finetune import run

    cfg = cli.compose("finetune", overrides=overrides(args, variant))
    start = time.perf_counter()
    results = run(cfg)
    wall = time.perf_counter() - start
    return {
        "variant": variant,
        "wall_s": wall,
        "tasks": {
            task: {
                "returns": s.returns,
                "mean": s.mean,
                "std": s.std,
                "plan_ms": s.plan_ms_single_env,
                "expert": None
                if task not in results["expert"]
                else {
                    "returns": results["expert"][task].returns,
                    "mean": results["expert"][task].mean,
                    "std": results["expert"][task].std,
                },
            }
            for task, s in results["student"].items()
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="finetune-quadruped")
    parser.add_argument("--pretrained", default=None, help="default: the recipe's")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per variant")
    parser.add_argument("--episodes", type=int, default=5, help="evaluation episodes")
    parser.add_argument("--max-steps", type=int, default=None, help="cut episodes short")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--run-root", type=Path, default=Path("runs/finetune_vs_scratch"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--override", nargs="*", default=[], help="extra finetune overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = [run_variant(args, v) for v in args.variants]
    experts = {t: r["expert"] for row in rows for t, r in row["tasks"].items() if r["expert"]}
    table = []
    for row in rows:
        for task, r in row["tasks"].items():
            expert = experts.get(task)
            ratio = r["mean"] / expert["mean"] if expert and abs(expert["mean"]) > 1e-8 else None
            table.append(
                [
                    task,
                    row["variant"],
                    f"{r['mean']:.1f} ± {r['std']:.1f}",
                    "-" if ratio is None else f"{ratio:.2f}",
                    f"{row['wall_s']:.0f}",
                ]
            )
    for task, expert in experts.items():
        table.append([task, "expert", f"{expert['mean']:.1f} ± {expert['std']:.1f}", "1.00", "-"])
    print(
        f"\n{args.recipe}: {args.steps} steps, seed {args.seed}, {args.episodes} episodes"
        f"{f' of {args.max_steps} steps' if args.max_steps else ''}, "
        f"{args.threads} thread(s), load {load_average():.1f}\n"
    )
    print(markdown_table(["task", "student", "return", "/ expert", "wall s"], table))
    out = args.run_root / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}))
    os.replace(tmp, out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

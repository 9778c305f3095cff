"""The quality issue's ablation: each new distillation piece on and off, 3 training seeds.

    python benchmarks/quickstart_ablation.py                              # every variant x seed
    python benchmarks/quickstart_ablation.py --variants baseline planner --seeds 1   # a share
    python benchmarks/quickstart_ablation.py --report-only               # table of what is done

Every variant is the quickstart recipe (2,500 steps, batch 256, the shipped experts and data)
with ``seed`` set to the training seed and one piece changed:

- ``recipe``: ``recipe=quickstart`` as shipped (closed-loop distillation with the student's
  anchored planner);
- ``central``: the recipe with every task's joints in one agent (walker-stand, reacher-easy and
  cup-catch each a single agent): the student then plans each task centrally, so its return
  need not add up over joints, which tells whether the decomposition is what limits it;
- ``recipe_planner``: ``recipe=quickstart-planner``, the recipe with the planner-matched
  objectives added (candidates drawn like MPPI's and the return_kl term);
- ``baseline``: ``recipe=quickstart`` without its closed loop (the paper's K=10 Gaussian
  candidates, reward_kl + value_kl + policy; the recipe turned closed-loop distillation on
  after this ablation ran, so every variant sets its closed loop explicitly);
- ``planner``: ``recipe=quickstart-planner`` (candidates drawn like MPPI's and the return_kl
  term);
- ``closed_loop``: the baseline plus closed-loop distillation as this ablation ran it (a round
  of the student's own unanchored MPPI every 500 steps from step 500, 2 x 250 steps per task,
  a quarter of each later batch from its buffer; the recipe now collects 2 x 500 steps with
  the anchored planner and draws half of each batch);
- ``interaction``: the baseline with walker-stand's agents from ``partition
  method=interaction`` (right and left hip in one agent; the other tasks' proposals are one
  joint per agent, the default);
- ``all``: planner + closed_loop + interaction.

Each student is then measured exactly like the fidelity-vs-return study's
(``benchmarks/fidelity_vs_return.py``): ``python -m mt_factored.fidelity`` (regret, rank
agreement) and ``python -m mt_factored.evaluate`` at the student's 128 x 2 budget, here 10
episodes per task on the fixed evaluation env seeds 10000-10009, at every
``--prior-weights`` value (``planning.prior_weight``: 0 is MPPI on the student's returns alone,
3 the recipe's anchor to its prior); and the student's policy prior
acting alone on the same seeds (``evaluate mpc=false``), which tells what the student knows
apart from how its MPPI uses it. Ratios divide by the experts'
returns in the quickstart's cache (``checkpoints/quickstart/expert_results.json``). Finished runs
and measurements are reused, so several processes can share the (variant, seed) grid
(``--variants`` / ``--seeds``) and a killed run resumes. Writes
``<run-root>/quickstart_ablation.{json,md}`` (and ``--json``, with its ``.md`` beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import fidelity_vs_return as fvr  # noqa: E402
from benchmarks.common import load_average, markdown_table, train_unmeasured  # noqa: E402
from mt_factored import cli  # noqa: E402

TASKS = fvr.TASKS
OFF = ["closed_loop.every_n_steps=0"]
CLOSED_LOOP = [
    "closed_loop.every_n_steps=500",
    "closed_loop.start_step=500",
    "closed_loop.share=0.25",
    "closed_loop.steps=250",
    "closed_loop.planning={num_samples: 128, iterations: 2, num_elites: 16, num_pi_trajs: 16, "
    "prior_weight: 0.0}",
]
INTERACTION = ["student.partitions={walker-stand: [[0,3],[1],[2],[4],[5]]}"]
CENTRAL = [
    "student.partitions={walker-stand: [[0,1,2,3,4,5]], reacher-easy: [[0,1]], cup-catch: [[0,1]]}"
]
VARIANTS: dict[str, list[str]] = {
    "recipe": ["recipe=quickstart"],
    "central": ["recipe=quickstart", *CENTRAL],
    "recipe_planner": ["recipe=quickstart-planner"],
    "baseline": ["recipe=quickstart", *OFF],
    "planner": ["recipe=quickstart-planner", *OFF],
    "closed_loop": ["recipe=quickstart", *CLOSED_LOOP],
    "interaction": ["recipe=quickstart", *OFF, *INTERACTION],
    "all": ["recipe=quickstart-planner", *CLOSED_LOOP, *INTERACTION],
}


def train(args: argparse.Namespace, variant: str, seed: int) -> Path:
    """Train one (variant, seed) unless its final checkpoint exists; its ``last.ckpt``."""
    run_dir = args.run_root / f"{variant}-seed{seed}"
    last = run_dir / "checkpoints" / "last.ckpt"
    done = run_dir / "train_seconds.json"
    if not done.is_file():
        start = time.perf_counter()
        train_unmeasured(
            run_dir,
            args.threads,
            args.steps,
            [
                *VARIANTS[variant],
                f"name={variant}-seed{seed}",
                f"seed={seed}",
                "trainer.enable_progress_bar=false",
            ],
        )
        seconds = time.perf_counter() - start
        done.write_text(json.dumps({"seconds": seconds, "load": load_average()}))
    return last


def policy_returns(args: argparse.Namespace, label: str, student: Path) -> dict[str, float]:
    """The student's policy prior acting alone (``evaluate mpc=false``) on the same env seeds:
    what the student knows, apart from how its MPPI uses it. Read back when measured."""
    out = args.run_root / "measure" / label
    path = out / f"evaluate-policy-seed{args.seed}-episodes{args.episodes}.json"
    if not path.is_file():
        from mt_factored.evaluate import run

        run(
            cli.compose(
                "evaluate",
                [
                    f"student='{student}'",
                    f"tasks=[{','.join(TASKS)}]",
                    f"threads={args.threads}",
                    f"episodes={args.episodes}",
                    f"seed={args.seed}",
                    "mpc=false",
                    "latency_repeats=0",
                    "progress_bar=false",
                    f"out='{path}'",
                    f"out_dir='{out}'",
                ],
            )
        )
    return {t: r["mean"] for t, r in json.loads(path.read_text())["student"].items()}


POLICY = "policy prior alone"


def mppi_setting(prior_weight: float) -> str:
    """How tables name the student's MPPI at ``prior_weight``."""
    return f"MPPI, prior_weight={prior_weight:g}"


def settings(args: argparse.Namespace) -> list[str]:
    """The planning settings every student is judged at: MPPI at each prior weight, then its
    policy prior acting alone."""
    return [*map(mppi_setting, args.prior_weights), POLICY]


def summarise(results: dict[str, dict[int, dict]], args: argparse.Namespace) -> dict[str, dict]:
    """Per variant and planning setting: mean and std over seeds of each task's ratio and of
    the mean ratio; per variant the mean rank agreement."""
    out = {}
    for variant, by_seed in results.items():
        if not by_seed:
            continue
        rows: dict[str, dict] = {}
        for setting in settings(args):
            row = {}
            for key in [*TASKS, "mean"]:
                ratios = [
                    statistics.fmean(r[t]["ratios"][setting] for t in TASKS)
                    if key == "mean"
                    else r[key]["ratios"][setting]
                    for r in by_seed.values()
                ]
                row[key] = {
                    "ratio_mean": statistics.fmean(ratios),
                    "ratio_std": statistics.stdev(ratios) if len(ratios) > 1 else 0.0,
                }
            rows[setting] = row
        rank = statistics.fmean(
            statistics.fmean(r[t]["rank"] for t in TASKS) for r in by_seed.values()
        )
        out[variant] = {"seeds": sorted(by_seed), "settings": rows, "rank_mean": rank}
    return out


def report(results: dict, summary: dict, args: argparse.Namespace) -> str:
    head = ["variant", "seeds", "student planning", *TASKS, "mean ratio", "mean rank agreement"]
    rows = []
    for variant, s in summary.items():
        for setting, row in s["settings"].items():
            rows.append(
                [
                    variant,
                    ",".join(map(str, s["seeds"])),
                    setting,
                    *(f"{row[t]['ratio_mean']:.2f} ± {row[t]['ratio_std']:.2f}" for t in TASKS),
                    f"{row['mean']['ratio_mean']:.2f} ± {row['mean']['ratio_std']:.2f}",
                    f"{s['rank_mean']:+.2f}",
                ]
            )
    per_seed = [
        [
            variant,
            str(seed),
            setting,
            *(f"{r[t]['returns'][setting]:.1f} ({r[t]['ratios'][setting]:.2f})" for t in TASKS),
            f"{statistics.fmean(r[t]['ratios'][setting] for t in TASKS):.2f}",
            f"{statistics.fmean(r[t]['rank'] for t in TASKS):+.2f}",
            f"{r['train_seconds'] / 60:.1f}",
        ]
        for variant, by_seed in results.items()
        for seed, r in sorted(by_seed.items())
        for setting in settings(args)
    ]
    seed_head = ["variant", "seed", "student planning", *TASKS, "mean ratio", "rank", "train min"]
    return (
        f"{args.steps} steps per run, {args.threads} thread(s); returns: {args.episodes} episodes "
        f"per task on env seeds {args.seed}..{args.seed + args.episodes - 1}, 128 x 2 planning; "
        f"ratio: over the cached expert returns; load now {load_average():.1f}\n\n"
        "Ratio, mean ± std over training seeds:\n\n"
        + markdown_table(head, rows)
        + "\n\nEvery run (return, ratio in brackets):\n\n"
        + markdown_table(seed_head, per_seed)
        + "\n"
    )


def measure(args: argparse.Namespace, label: str, last: Path, experts: dict[str, float]) -> dict:
    """Fidelity, and the returns at every planning setting (ratios over ``experts``), of one
    student (each measurement read back when done)."""
    rows: dict = {}
    for w in args.prior_weights:
        for task, r in fvr.measure(args, label, last, w).items():
            row = rows.setdefault(task, {"rank": r["rank"], "regret": r["regret"]})
            row.setdefault("returns", {})[mppi_setting(w)] = r["return"]
    for task, ret in policy_returns(args, label, last).items():
        rows[task]["returns"][POLICY] = ret
    for task in TASKS:
        rows[task]["ratios"] = {k: v / experts[task] for k, v in rows[task]["returns"].items()}
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=2500, help="training steps (the recipe's)")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per task")
    parser.add_argument("--seed", type=int, default=10000, help="first evaluation env seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--prior-weights",
        nargs="+",
        type=float,
        default=[0.0, 3.0],
        help="judge every student's MPPI at these planning.prior_weight values (0: unanchored)",
    )
    parser.add_argument("--run-root", type=Path, default=Path("runs/quickstart_ablation"))
    parser.add_argument("--report-only", action="store_true", help="only tabulate what is done")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the JSON here (and the table beside it, .md)",
    )
    args = parser.parse_args(argv)
    args.run_root = args.run_root.resolve()
    torch.set_num_threads(args.threads)

    experts = fvr.expert_returns()  # hashes the expert checkpoints: once per run
    if not args.report_only:
        for seed in args.seeds:  # seed-major: a partial grid still covers every variant
            for variant in args.variants:
                last = train(args, variant, seed)
                measure(args, f"{variant}-seed{seed}", last, experts)

    results: dict[str, dict[int, dict]] = {v: {} for v in VARIANTS}
    for variant in VARIANTS:
        for seed in args.seeds:
            label = f"{variant}-seed{seed}"
            out = args.run_root / "measure" / label
            trained = args.run_root / label / "train_seconds.json"
            measured = [trained, out / "fidelity.json"]
            measured += [fvr.returns_path(args, out, w) for w in args.prior_weights]
            if not all(path.is_file() for path in measured):
                continue
            last = args.run_root / label / "checkpoints" / "last.ckpt"
            rows = measure(args, label, last, experts)
            rows["train_seconds"] = json.loads(trained.read_text())["seconds"]
            results[variant][seed] = rows
    summary = summarise(results, args)
    text = report(results, summary, args)
    print(text)
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "variants": VARIANTS,
        "expert_returns": experts,
        "summary": summary,
        "runs": {v: {str(s): r for s, r in by.items()} for v, by in results.items()},
    }
    for path in filter(None, (args.run_root / "quickstart_ablation.json", args.json)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)
    for path in filter(None, (args.run_root / "quickstart_ablation.md", args.json)):
        path.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()

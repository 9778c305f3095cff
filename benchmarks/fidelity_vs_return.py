"""Does the planning-fidelity metric predict returns? Spearman over students, per task and pooled.

    python benchmarks/fidelity_vs_return.py                      # train, measure, plot (~50 min, 1 thread)
    python benchmarks/fidelity_vs_return.py --planner-steps 0    # without the quickstart-planner run

Students: the checkpoints of one ``recipe=quickstart`` run saved every ``--every`` steps, the
shipped student (``checkpoints/students/quickstart``) and the checkpoints of a short
``recipe=quickstart-planner`` run. For each one it runs ``python -m mt_factored.fidelity``
(regret and rank agreement per task, the command's defaults: the student's 128 x 2 budget) and
``python -m mt_factored.evaluate`` (dm_control returns at the same 128 x 2, ``--episodes`` on
env seeds ``--seed`` ..). The return ratio divides by the expert's return from the quickstart's
expert cache (``checkpoints/quickstart/expert_results.json``: 3 episodes, seed 0, 512 x 6, 2
threads), so no expert is evaluated. Finished steps (a run's ``last.ckpt``, a student's JSON)
are reused. Writes ``<run-root>/fidelity_vs_return.json`` and ``.md``, and the plot
(``--plot``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import load_average, markdown_table, threads, train_unmeasured  # noqa: E402
from mt_factored import cli  # noqa: E402
from mt_factored.planning.episodes import EpisodeConfig  # noqa: E402
from mt_factored.planning.expert_cache import ExpertResultCache, cache_key  # noqa: E402
from mt_factored.planning.mppi import MPPIConfig  # noqa: E402

TASKS = ["cartpole-balance", "reacher-easy", "cup-catch", "walker-stand"]
EXPERTS = {t: ROOT / f"checkpoints/quickstart/{t}.pt" for t in TASKS}
CACHE = ROOT / "checkpoints/quickstart/expert_results.json"
SHIPPED = ROOT / "checkpoints/students/quickstart"
# The quickstart student's planning budget (recipe quickstart: eval.student_planning).
STUDENT_PLANNING = {"num_samples": 128, "iterations": 2, "num_elites": 16, "num_pi_trajs": 16}


def common(args: argparse.Namespace) -> list[str]:
    experts = ", ".join(f"{t}: '{p}'" for t, p in EXPERTS.items())
    return [f"expert={{{experts}}}", f"tasks=[{','.join(TASKS)}]", f"threads={args.threads}"]


def train(args: argparse.Namespace, recipe: str, steps: int) -> list[tuple[str, Path]]:
    """Train ``recipe`` for ``steps`` steps (unless done); its step checkpoints up to ``steps``,
    oldest first."""
    run_dir = args.run_root / recipe
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        train_unmeasured(
            run_dir,
            args.threads,
            steps,
            [
                f"recipe={recipe}",
                f"name={recipe}",
                f"checkpoint.every_n_steps={args.every}",
                "checkpoint.keep=-1",
                # the students this study measured were trained before the quickstart
                # recipe turned closed-loop distillation on
                "closed_loop.every_n_steps=0",
            ],
        )
    ckpts = sorted((run_dir / "checkpoints").glob("step*.ckpt"))
    return [(f"{recipe}@{int(p.stem[4:])}", p) for p in ckpts if int(p.stem[4:]) <= steps]


def measure(args: argparse.Namespace, label: str, student: Path, prior_weight: float = 0.0) -> dict:
    """Fidelity and returns of one student (each read back when its JSON exists); the returns
    with the student's MPPI anchored to its prior by ``prior_weight`` (0: not anchored)."""
    out = args.run_root / "measure" / label.replace("@", "-")
    fid = out / "fidelity.json"
    ret = returns_path(args, out, prior_weight)
    student_arg = f"student='{student}'"
    if not fid.is_file():
        from mt_factored.fidelity import run

        run(
            cli.compose(
                "fidelity",
                [
                    student_arg,
                    *common(args),
                    f"data='{ROOT / 'data/quickstart'}'",
                    f"out='{fid}'",
                    f"out_dir='{out}'",
                ],
            )
        )
    if not ret.is_file():
        from mt_factored.evaluate import run

        run(
            cli.compose(
                "evaluate",
                [
                    student_arg,
                    f"tasks=[{','.join(TASKS)}]",
                    f"threads={args.threads}",
                    f"episodes={args.episodes}",
                    f"seed={args.seed}",
                    "latency_repeats=0",
                    "progress_bar=false",
                    *(f"planning.{k}={v}" for k, v in STUDENT_PLANNING.items()),
                    f"planning.prior_weight={prior_weight}",
                    f"out='{ret}'",
                    f"out_dir='{out}'",
                ],
            )
        )
    fidelity = json.loads(fid.read_text())["tasks"]
    returns = json.loads(ret.read_text())["student"]
    rows = {}
    for task in TASKS:
        by_source = fidelity[task]
        rows[task] = {
            "regret": sum(r["regret"] for r in by_source.values()) / len(by_source),
            "regret_own": by_source["own"]["regret"],
            "rank": sum(r["rank_joint"] for r in by_source.values()) / len(by_source),
            "return": returns[task]["mean"],
            "returns": returns[task]["returns"],
        }
    return rows


def returns_path(args: argparse.Namespace, out: Path, prior_weight: float) -> Path:
    """Where a student's returns at ``prior_weight`` are kept (unanchored: the name the
    measurements had before the anchor existed, so they are read back)."""
    anchor = f"-prior{prior_weight:g}" if prior_weight else ""
    return out / f"evaluate-seed{args.seed}-episodes{args.episodes}{anchor}.json"


def expert_returns() -> dict[str, float]:
    """The experts' mean returns from the quickstart's cached evaluation (its exact key)."""
    with threads(2):  # the key holds the thread count the quickstart evaluates with
        key, _ = cache_key(EXPERTS, EpisodeConfig(episodes=3, seed=0), MPPIConfig())
    cached = ExpertResultCache(CACHE).get(key)
    if cached is None:
        raise SystemExit(f"{CACHE} does not hold the quickstart's expert evaluation")
    return {t: cached[t].mean for t in TASKS}


def spearman(x: list[float], y: list[float]) -> dict[str, float]:
    from scipy.stats import spearmanr

    res = spearmanr(x, y)
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": len(x)}


def correlations(students: dict[str, dict]) -> dict[str, dict]:
    """Spearman of each fidelity metric with the return (per task) and the ratio (pooled)."""
    out: dict[str, dict] = {}
    for metric in ("regret", "regret_own", "rank"):
        by: dict[str, dict] = {}
        for task in TASKS:
            rows = [s[task] for s in students.values()]
            by[task] = spearman([r[metric] for r in rows], [r["return"] for r in rows])
        pairs = [s[t] for s in students.values() for t in TASKS]
        by["pooled"] = spearman([r[metric] for r in pairs], [r["ratio"] for r in pairs])
        means = [
            [sum(s[t][k] for t in TASKS) / len(TASKS) for s in students.values()]
            for k in (metric, "ratio")
        ]
        by["student_means"] = spearman(*means)
        out[metric] = by
    return out


def plot(students: dict[str, dict], corr: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, metric, xlabel in (
        (axes[0], "regret", "fidelity regret (0: the expert's plan, 1: random)"),
        (axes[1], "rank", "rank agreement with the expert (Spearman)"),
    ):
        for i, task in enumerate(TASKS):
            rows = [s[task] for s in students.values()]
            rho = corr[metric][task]["rho"]
            ax.scatter(
                [r[metric] for r in rows],
                [r["ratio"] for r in rows],
                color=f"C{i}",
                label=f"{task} (rho {rho:+.2f})",
            )
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        pooled = corr[metric]["pooled"]
        ax.set_title(
            f"pooled Spearman {pooled['rho']:+.2f} (p={pooled['p']:.1g}, n={pooled['n']})",
            fontsize=10,
        )
    axes[0].set_ylabel("student / expert return")
    fig.suptitle(
        f"Planning fidelity vs dm_control return, {len(students)} students x {len(TASKS)} tasks: "
        f"Spearman(regret, ratio) = {corr['regret']['pooled']['rho']:+.2f}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def report(students: dict[str, dict], corr: dict[str, dict], args: argparse.Namespace) -> str:
    rows = [
        [
            name,
            task,
            f"{r['regret']:.3f}",
            f"{r['regret_own']:.3f}",
            f"{r['rank']:+.2f}",
            f"{r['return']:.1f}",
            f"{r['ratio']:.2f}",
        ]
        for name, s in students.items()
        for task, r in s.items()
    ]
    head = ["student", "task", "regret", "regret (own states)", "rank", "return", "ratio"]
    keys = [*TASKS, "pooled", "student_means"]
    spear = [
        [metric, *(f"{corr[metric][k]['rho']:+.2f} (p={corr[metric][k]['p']:.2g})" for k in keys)]
        for metric in corr
    ]
    return (
        f"{len(students)} students, {args.episodes} episodes per task on env seeds "
        f"{args.seed}..{args.seed + args.episodes - 1}, 128 x 2 planning, {args.threads} thread(s), "
        f"load {load_average():.1f}\n\n"
        "Spearman with the return (per task, over students) and the ratio (pooled over "
        "student x task; student_means: each student's means over the tasks):\n\n"
        + markdown_table(["metric", *keys], spear)
        + "\n\n"
        + markdown_table(head, rows)
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps of the quickstart run")
    parser.add_argument("--planner-steps", type=int, default=500, help="0: no planner run")
    parser.add_argument("--every", type=int, default=250, help="checkpoint every n steps")
    parser.add_argument("--episodes", type=int, default=5, help="evaluation episodes per task")
    parser.add_argument("--seed", type=int, default=10000, help="first evaluation env seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-root", type=Path, default=Path("runs/fidelity_vs_return"))
    parser.add_argument("--plot", type=Path, default=ROOT / "docs/fidelity-vs-return.png")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    args.run_root = args.run_root.resolve()
    torch.set_num_threads(args.threads)

    candidates = train(args, "quickstart", args.steps)
    candidates.append(("shipped", SHIPPED))
    if args.planner_steps:
        candidates += train(args, "quickstart-planner", args.planner_steps)
    experts = expert_returns()
    students = {}
    for label, path in candidates:
        students[label] = measure(args, label, path)
        for task, r in students[label].items():
            r["ratio"] = r["return"] / experts[task]
    corr = correlations(students)
    text = report(students, corr, args)
    print(text)
    plot(students, corr, args.plot)
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "expert_returns": experts,
        "spearman": corr,
        "students": students,
    }
    for path in filter(None, (args.run_root / "fidelity_vs_return.json", args.json)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)
    (args.run_root / "fidelity_vs_return.md").write_text(text)
    print(f"wrote {args.plot} and {args.run_root / 'fidelity_vs_return.json'}")


if __name__ == "__main__":
    main()

"""Plot return vs agent steps of online expert runs (docs/expert_curves.png):
``python -m mt_factored.plot_expert_curves``.

Each run folder (a trainer `run_dir`, or `checkpoints/quickstart/logs/<task>`) holds
`train.csv`, `eval.csv` and `config.yaml`. One panel per task: training-episode returns
(exploration mode), evaluation returns (MPPI eval mode, mean ± std over the eval
episodes) and, dashed, the mean return of uniform random actions.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from mt_factored import tasks
from mt_factored.analysis.figures import save_figure
from mt_factored.constants import REPO_ROOT
from mt_factored.errors import MissingError

DEFAULT_LOGS = REPO_ROOT / "checkpoints" / "quickstart" / "logs"
"""The shipped quickstart experts' logs (in the repository checkout)."""


@dataclass
class ExpertCurvesConfig:
    """``python -m mt_factored.plot_expert_curves``: return vs agent steps of online expert runs,
    one panel per task."""

    runs: list[str] = field(default_factory=list)
    """Run folders (a ``train_expert`` run_dir, or ``checkpoints/quickstart/logs/<task>``);
    empty: every folder of checkpoints/quickstart/logs."""
    out: str = "docs/expert_curves.png"
    """The image to write."""
    random_episodes: int = 10
    """Episodes of uniform random actions for the dashed baseline (0: none)."""


def run_curves(cfg: ExpertCurvesConfig) -> Path:
    """Draw the runs ``cfg`` names; returns the image's path."""
    runs = [Path(r) for r in cfg.runs] or sorted(p for p in DEFAULT_LOGS.glob("*") if p.is_dir())
    return plot(runs, Path(cfg.out), cfg.random_episodes)


def read_rows(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {k: float(v) if v not in ("", None) else np.nan for k, v in r.items()}
            for r in csv.DictReader(f)
        ]


def random_return(task: str, episodes: int = 10, seed: int = 100) -> tuple[float, float]:
    """Mean and std return of uniform random actions over `episodes` episodes."""
    returns = []
    for i in range(episodes):
        env = tasks.make_env(task, seed=seed + i)
        rng = np.random.default_rng(seed + i)
        env.reset()
        total, done = 0.0, False
        while not done:
            _, reward, done, _ = env.step(rng.uniform(-1.0, 1.0, env.action_dim))
            total += reward
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


def plot(run_dirs: list[Path], out: Path, random_episodes: int = 10) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for run in run_dirs:
        config = (
            OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
            if (run / "config.yaml").is_file()
            else {}
        )
        task = config.get("task", run.name)
        runs.append((task, config, read_rows(run / "train.csv"), read_rows(run / "eval.csv")))
    if not runs:
        raise MissingError("no run folders given or found", "pass runs=[folder, ...]")
    cols = min(2, len(runs))
    rows = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.6 * rows), squeeze=False)
    for ax, (task, config, train, evals) in zip(axes.flat, runs, strict=False):
        if train:
            ax.plot(
                [r["step"] for r in train],
                [r["return"] for r in train],
                ".",
                ms=3,
                alpha=0.5,
                color="tab:blue",
                label="training episode (explore)",
            )
        if evals:
            steps = np.array([r["step"] for r in evals])
            mean = np.array([r["return"] for r in evals])
            std = np.array([r["return_std"] for r in evals])
            ax.plot(
                steps,
                mean,
                "o-",
                color="tab:orange",
                label=f"eval (MPPI mean, {int(evals[-1]['episodes'])} ep.)",
            )
            ax.fill_between(steps, mean - std, mean + std, color="tab:orange", alpha=0.2)
        if random_episodes > 0:
            rmean, _ = random_return(task, random_episodes)
            ax.axhline(
                rmean, ls="--", color="gray", label=f"uniform random ({random_episodes} ep.)"
            )
        size, seed = config.get("model_size", "?"), config.get("seed", "?")
        ax.set_title(f"{task} (size {size}, seed {seed})")
        ax.set_xlabel("agent steps (action repeat 2)")
        ax.set_ylabel("episode return")
        ax.set_ylim(0, 1050)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    fig.suptitle("Online single-task TD-MPC2 experts (mt_factored.train_expert)")
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)

"""Distillation throughput: windows/s and ms per optimizer update.

    python benchmarks/distill_throughput.py                       # the README table
    python benchmarks/distill_throughput.py --batch 512 --threads 2 --repeats 10

One update = ``distill_losses`` (K noise samples, horizon H) + backward + Adam step
on a default ``StudentConfig`` mt30 student. "student only" replays an expert
rollout computed once (the cost of the student's side: its rollout, the loss terms,
backward, Adam); "with expert" also runs the frozen mt30-5M expert forward on the
K perturbed rollouts, as training does. "compiled" rows run the student's side through
``torch.compile`` (``compile=true`` in training); "vs eager" divides the eager row's time by
the row's, and the first update (compilation) is reported apart and not timed. "group_agents" is the student's side with
``distill.group_agents=true`` (each group of windows with the same number of real agents
runs only those agents). Random windows over all 30 tasks (``--tasks quickstart``: the
quickstart's four); the data loader is not included (see benchmarks/data_throughput.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import load_average, markdown_table, threads, time_fn  # noqa: E402
from mt_factored.constants import ACTION, OBS, TASK  # noqa: E402
from mt_factored.distill import (  # noqa: E402
    DistillConfig,
    distill_losses,
    expert_rollout,
    noisy_actions,
    student_losses,
)
from mt_factored.distill.losses import compiled_student_losses  # noqa: E402
from mt_factored.expert import ExpertConfig, TDMPC2Expert  # noqa: E402
from mt_factored.student import FactoredStudent, StudentConfig  # noqa: E402

QUICKSTART_TASKS = ("cartpole-balance", "reacher-easy", "cup-catch", "walker-stand")


def random_batch(
    student: FactoredStudent, batch: int, horizon: int, seed: int, tasks: list[int] | None = None
) -> dict:
    gen = torch.Generator().manual_seed(seed)
    if tasks is None:
        task = torch.randint(0, student.config.num_tasks, (batch,), generator=gen)
    else:
        task = torch.tensor(tasks)[torch.randint(0, len(tasks), (batch,), generator=gen)]
    mask = student.merge_actions(student.agent_action_mask(task), task)
    action = torch.rand(batch, horizon, student.config.action_dim, generator=gen) * 2 - 1
    return {
        OBS: torch.randn(batch, horizon + 1, student.config.obs_dim, generator=gen),
        ACTION: action * mask[:, None],
        TASK: task,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10, help="K noise samples")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--expert-size", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tasks",
        choices=["mt30", "quickstart"],
        default="mt30",
        help="windows of all 30 tasks, or of the quickstart's four (1, 2, 2 and 6 joints)",
    )
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    student = FactoredStudent(StudentConfig.for_task_set("mt30"))
    expert = TDMPC2Expert(ExpertConfig.from_size(args.expert_size)).eval().requires_grad_(False)
    cfg = DistillConfig(num_noise_samples=args.samples)
    names = student.config.task_names
    ids = None if args.tasks == "mt30" else [names.index(t) for t in QUICKSTART_TASKS]
    batch = random_batch(student, args.batch, args.horizon, args.seed, ids)
    optim = torch.optim.Adam(student.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(args.seed)
    mask = student.merge_actions(student.agent_action_mask(batch[TASK]), batch[TASK])
    actions = noisy_actions(batch[ACTION], mask, cfg.num_noise_samples, cfg.sample_stds(), gen)
    targets = expert_rollout(expert, batch[OBS][:, 0], actions, batch[TASK], with_pi=True)

    def update(losses) -> None:
        optim.zero_grad(set_to_none=True)
        losses()["loss"].backward()
        optim.step()

    grouped = dataclasses.replace(cfg, group_agents=True)

    def student_only(config: DistillConfig, compiled: bool = False):
        losses = compiled_student_losses if compiled else student_losses
        return lambda: update(lambda: losses(student, batch, actions, targets, config))

    def with_expert(compiled: bool):
        return lambda: update(lambda: distill_losses(student, expert, batch, cfg, gen, compiled))

    runs = {
        "student only": student_only(cfg),
        "student only, compiled": student_only(cfg, compiled=True),
        "student only, group_agents": student_only(grouped),
        f"with {args.expert_size}M expert": with_expert(False),
        f"with {args.expert_size}M expert, compiled": with_expert(True),
    }
    rows, eager_ms = [], {}
    for num in args.threads:
        for name, fn in runs.items():
            with threads(num):
                start = time.perf_counter()
                fn()  # the first update compiles (forward and backward graphs): untimed
                first = time.perf_counter() - start
                load = load_average()
                stats = time_fn(fn, args.warmup, args.repeats)
            base = name.removesuffix(", compiled")
            eager_ms.setdefault((base, num), stats.mean_ms)
            rows.append(
                [
                    name,
                    num,
                    f"{stats.mean_ms:.0f} ± {stats.std_ms:.0f} (min {stats.min_ms:.0f})",
                    f"{args.batch / (stats.mean_ms * 1e-3):.0f}",
                    f"{eager_ms[(base, num)] / stats.mean_ms:.2f}x",
                    f"{first:.1f}",
                    f"{load:.1f}/{load_average():.1f}",
                ]
            )
    headers = ["run", "threads", "ms/update", "windows/s", "vs eager", "first update s"]
    print(markdown_table([*headers, "load before/after"], rows))
    params = sum(p.numel() for p in student.parameters())
    print(
        f"\nbatch {args.batch}, H={args.horizon}, K={args.samples}; student {params / 1e3:.0f}k "
        f"params ({student.config.latent_dim}:{student.config.mlp_dim}:"
        f"{student.config.num_mlp_layers}); {args.repeats} timed updates after {args.warmup} "
        f"warm-up; torch {torch.__version__}"
    )


if __name__ == "__main__":
    main()

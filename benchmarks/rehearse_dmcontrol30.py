"""Rehearse the main job at full shape: ``recipe=dmcontrol30`` on a 30-task dataset in the
official format with an mt30-5M expert, single process and DDP, end to end.

    python benchmarks/rehearse_dmcontrol30.py --size-gb 8     # the README table
    python benchmarks/rehearse_dmcontrol30.py --size-gb 0.5   # quick check

No machine here can download the public mt30 data or the mt30-5M expert, so this writes
stand-ins of the same formats and shapes into --workdir:
- official chunks (``benchmarks/data_throughput.py:generate``) of all 30 mt30 tasks with
  their real observation and action dims, --size-gb in all, in 4 chunks proportioned like
  the public ones (the first holds 200,000 of the 690,000 episodes, the rest share the
  remainder; the spec gives no per-task counts, so every task has the same number of
  episodes), then prepared into shards with ``python -m mt_factored.data prepare``;
- an mt30-5M expert (5,241,066 parameters) with random weights, its reward and value heads
  perturbed off TD-MPC2's zero initialisation so every loss term has a gradient, saved in the
  public checkpoint layout.

It then runs ``python -m mt_factored.train recipe=dmcontrol30`` as a subprocess, unchanged
but for the paths, the step count, the thread count, the loader's workers, the final
evaluation (30 tasks x 10 episodes of 512x6 MPPI with the 5M expert: hours on a CPU) and a
checkpoint cadence short enough to kill and resume within the run, with ``profile=`` on
(:mod:`mt_factored.training.profile`). Epochs are --epoch-batches long, so the run covers 2:

1. timing: steps/s and the median time per step in data / expert / student / backward /
   optimiser (the first step, which starts the workers, left out); peak RSS of the main
   process and of each loader worker;
2. windows per task against the recipe's weights (none: uniform over windows, so each task's
   share of the data's windows);
3. the stream batches trained on after 2 epochs, by content: every batch digest distinct and
   equal to the digests of stream batches 0 .. 2E-1;
4. kill -9 of the whole process group mid-run (after a checkpoint), re-run of the same
   command: weights and optimiser state bit-identical to the uninterrupted run (1.);
5. ``trainer=ddp`` on 2 CPU processes (gloo): each rank's batches are its own stream's
   (disjoint from the other rank's) and both ranks end with the same weights;
6. FLOPs and tensor operations of one training step (forward + backward), counted with
   ``torch.utils.flop_counter``, and from them the projected wall time of the recipe's 1e6
   steps on one and on eight GPUs (a projection, with the assumptions printed).

Prints a markdown table and writes everything to --out (JSON). Deletes the work dir at the
end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import torch

from benchmarks import faults
from benchmarks.common import count_flops, load_average
from benchmarks.data_throughput import generate

PUBLIC_EPISODES = 690_000
CHUNK_SHARES = [200_000, 163_334, 163_333, 163_333]  # chunk_0 is [200000, 501]; the rest split
EXPERT_PARAMETERS = 5_241_066
FULL_RUN_STEPS = 1_000_000
# Stated device throughput (NVIDIA H100 SXM datasheet, dense) and assumed utilisations.
H100_TF32_TFLOPS = 494.7
H100_FP32_TFLOPS = 66.9
ASSUMED_UTILISATION = {"tf32": 0.20, "fp32": 0.50}
LAUNCH_US = 10.0  # assumed eager PyTorch cost per tensor operation on a GPU (launch bound)


def shell_env(threads: int) -> dict[str, str]:
    return {**faults.env(), "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}


def write_expert(path: Path, seed: int = 0) -> Path:
    """An mt30-5M expert with random weights in the public checkpoint layout."""
    from mt_factored.expert import ExpertConfig, TDMPC2Expert

    torch.manual_seed(seed)
    expert = TDMPC2Expert(ExpertConfig.from_size(5, "mt30"))
    count = expert.num_learnable_parameters()
    if count != EXPERT_PARAMETERS:
        raise RuntimeError(f"mt30-5M has {EXPERT_PARAMETERS:,} parameters, built {count:,}")
    with torch.no_grad():  # TD-MPC2 zero-initialises the reward and Q heads' last layers
        for p in expert.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return expert.save_checkpoint(path)


def prepare(chunks: Path, shards: Path, threads: int) -> float:
    start = time.perf_counter()
    cmd = faults.command(
        "mt_factored.data",
        "prepare",
        f"source={chunks}",
        f"out={shards}",
        "task_set=mt30",
        "progress=false",
    )
    out = subprocess.run(cmd, capture_output=True, text=True, env=shell_env(threads))
    if out.returncode != 0:
        raise RuntimeError(f"prepare failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def train_command(args, shards: Path, expert: Path, run_dir: Path, *extra: str) -> list[str]:
    """The recipe's command with only what this machine needs changed."""
    return faults.command(
        "mt_factored.train",
        "recipe=dmcontrol30",
        f"data={shards}",
        f"expert={expert}",
        f"run_dir={run_dir}",
        f"threads={args.threads}",
        f"loader.num_workers={args.workers}",
        f"trainer.max_steps={2 * args.epoch_batches}",
        f"trainer.limit_train_batches={args.epoch_batches}",
        f"checkpoint.every_n_steps={args.checkpoint_every}",
        "eval.at_end=false",
        "trainer.enable_progress_bar=false",
        *extra,
    )


def run_train(cmd: list[str], threads: int) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=shell_env(threads))
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-4000:]}")
    return time.perf_counter() - start


def stream_digests(shards: Path, batches: int, seed: int, world: int = 1) -> list[list[str]]:
    """Digests of stream batches 0 .. batches-1 of every rank, as the recipe's loader makes
    them (batch 512, horizon 3)."""
    from mt_factored.data import WindowDataset
    from mt_factored.training.profile import batch_digest

    dataset = WindowDataset(str(shards), batch_size=512, horizon=3, seed=seed)
    return [
        [batch_digest(dataset.batch(k, r, world)) for k in range(batches)] for r in range(world)
    ]


def summary(profile: dict) -> dict:
    """Steps/s and median ms per phase over the steps after the first."""
    rows = profile["rows"][1:] or profile["rows"]
    phases = {k: statistics.median(r[k] for r in rows) * 1e3 for k in rows[0]}
    return {
        "steps": profile["steps"],
        "steps_per_s": profile["steps"] / profile["wall_s"],
        "median_step_ms": statistics.median(sum(r.values()) for r in rows) * 1e3,
        "phase_ms": phases,
        "peak_rss_mb": profile["peak_rss_mb"],
        "worker_peak_rss_mb": sorted(profile["worker_peak_rss_mb"].values()),
        "worker_private_mb": max(profile["worker_private_mb"].values(), default=0.0),
    }


def task_shares(profile: dict, shards: Path) -> dict:
    """Windows seen per task against the recipe's weights (uniform over windows: each
    task's share of the data's episodes, all of one length)."""
    from mt_factored.data.stream import open_store

    tasks = open_store(str(shards)).episode_tasks
    expected = torch.bincount(torch.as_tensor(tasks), minlength=30).double()
    expected /= expected.sum()
    seen = torch.tensor(profile["task_windows"][:30], dtype=torch.float64)
    windows = float(seen.sum())
    ratio = (seen / windows) / expected
    return {
        "windows": int(windows),
        "expected_share": expected.tolist(),
        "seen_share": (seen / windows).tolist(),
        "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max()),
        # One binomial standard deviation of a task's share, relative to it.
        "relative_noise": float(((1 - expected) / (expected * windows)).sqrt().mean()),
        "tasks_per_batch_min": min(profile["tasks_per_batch"]),
    }


def kill_and_resume(args, shards, expert, work: Path, reference: dict, duration: float) -> dict:
    """kill -9 mid-run, then the same command again: bit-identical to the reference run."""
    run_dir = work / "killed"
    cmd = train_command(args, shards, expert, run_dir)
    delay = random.Random(args.seed).uniform(0.45, 0.75) * duration
    faults.run_killed(cmd, delay)
    last = run_dir / "checkpoints" / "last.ckpt"
    killed_at = torch.load(last, weights_only=True)["global_step"] if last.is_file() else None
    unreadable = [p.name for p in faults.unreadable_checkpoints(run_dir)]
    run_train(cmd, args.threads)
    same = faults.identical(faults.final_state(run_dir), reference)
    return {"delay_s": delay, "killed_at_step": killed_at, "unreadable": unreadable, "exact": same}


def ddp(args, shards, expert, work: Path) -> dict:
    """2 CPU processes (gloo): disjoint rank streams, identical weights."""
    run_dir = work / "ddp"
    profile = run_dir / "profile.json"
    steps = 2 * args.ddp_epoch_batches
    cmd = train_command(
        args,
        shards,
        expert,
        run_dir,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"trainer.max_steps={steps}",
        f"trainer.limit_train_batches={args.ddp_epoch_batches}",
        f"profile={profile}",
    )
    run_train(cmd, args.threads)
    ranks = [
        json.loads(profile.read_text()),
        json.loads(profile.with_suffix(".rank1.json").read_text()),
    ]
    expected = stream_digests(shards, steps, seed=1, world=2)
    seen = [r["batch_digests"] for r in ranks]
    return {
        **{f"rank{i}": summary(r) for i, r in enumerate(ranks)},
        "steps": steps,
        "disjoint": not set(seen[0]) & set(seen[1]),
        "each_rank_its_stream": seen == expected,
        "same_weights": ranks[0]["student_sha256"] == ranks[1]["student_sha256"],
    }


class OpCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the tensor operations run (each one a kernel launch or more on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def step_cost(shards: Path, expert: Path, work: Path, threads: int) -> dict:
    """FLOPs and operations of one training step of the recipe, forward and backward."""
    from mt_factored import cli
    from mt_factored.artifacts.configs import as_object
    from mt_factored.data import WindowDataset
    from mt_factored.distill import distill_losses
    from mt_factored.training import build

    torch.set_num_threads(threads)
    overrides = [
        "recipe=dmcontrol30",
        "name=rehearse",
        f"data={shards}",
        f"expert={expert}",
        f"run_dir={work}",
    ]
    cfg = as_object(cli.compose("train", overrides))
    task_set, _ = build.build_task_set(cfg)
    expert_model = build.build_expert(cfg)
    module = build.build_module(cfg, task_set, expert_model)
    batch = WindowDataset(str(shards), batch_size=cfg.loader.batch_size, horizon=3, seed=1).batch(0)
    gen = torch.Generator().manual_seed(0)

    def step():
        module.zero_grad()
        loss = distill_losses(module.student, expert_model, batch, module.distill_config, gen)
        loss["loss"].backward()

    flops = count_flops(step)
    counter = OpCounter()
    with counter:
        step()
    student_params = sum(p.numel() for p in module.student.parameters())
    return {
        "flops": flops,
        "ops": counter.ops,
        "student_parameters": student_params,
        **plan_cost(cfg, module.student),
    }


def plan_cost(cfg, student) -> dict:
    """FLOPs and operations of one of the evaluation's student planner calls (the recipe's
    MPPI settings, its episodes in lock-step, walker's 6 joints), and how many calls one
    evaluation makes."""
    from mt_factored.planning import MPPIPlanner
    from mt_factored.planning.student_adapter import StudentPlanningModel
    from mt_factored.training import build

    planning = build.student_planning_config(cfg) or cfg.planning
    planner = MPPIPlanner(StudentPlanningModel(student.eval()), planning, generator=0)
    envs = cfg.eval.episodes
    obs, task = torch.randn(envs, 24), torch.zeros(envs, dtype=torch.long)  # walker-stand
    with torch.no_grad():
        planner.plan(obs, task, t0=True)
        flops = count_flops(lambda: planner.plan(obs, task))
        counter = OpCounter()
        with counter:
            planner.plan(obs, task)
    return {
        "plan_flops": flops,
        "plan_ops": counter.ops,
        "plan_calls_per_eval": 30 * 500,  # every task's 500 steps, its episodes batched
        "evals_per_run": FULL_RUN_STEPS // cfg.eval.every_n_steps,
        "planning": f"{planning.num_samples}x{planning.iterations}",
    }


def projection(cost: dict) -> dict:
    """Projected wall time of the recipe's 1e6 steps (assumptions in the returned dict)."""
    out = {"steps": FULL_RUN_STEPS, "launch_us_per_op": LAUNCH_US}
    launch_s = cost["ops"] * LAUNCH_US * 1e-6
    # The periodic evaluation: planner calls in sequence, launch-bound at these sizes (its
    # FLOPs are small); dm_control's physics (CPU) comes on top and is not counted.
    plan_s = cost["plan_ops"] * LAUNCH_US * 1e-6
    out["eval_hours"] = plan_s * cost["plan_calls_per_eval"] * cost["evals_per_run"] / 3600
    for mode, peak in (("tf32", H100_TF32_TFLOPS), ("fp32", H100_FP32_TFLOPS)):
        util = ASSUMED_UTILISATION[mode]
        flop_s = cost["flops"] / (peak * 1e12 * util)
        # One GPU, or 8 with the recipe's 512 windows per process (8x the windows, same
        # steps: the step time barely changes; the all-reduce of the student's gradients is
        # small); 8 with 64 per process keeps 512 per step: 1/8 of the FLOPs per GPU, the same
        # number of launches.
        one = max(flop_s, launch_s)
        eight_split = max(flop_s / 8, launch_s)
        out[mode] = {
            "peak_tflops": peak,
            "assumed_utilisation": util,
            "flop_bound_step_ms": flop_s * 1e3,
            "launch_bound_step_ms": launch_s * 1e3,
            "hours_1_gpu": one * FULL_RUN_STEPS / 3600,
            "hours_8_gpus_512_per_gpu": one * FULL_RUN_STEPS / 3600,
            "hours_8_gpus_64_per_gpu": eight_split * FULL_RUN_STEPS / 3600,
        }
    return out


def markdown(result: dict) -> str:
    lines = [
        "| run | steps/s | median ms/step | data | expert | student | backward | optimiser "
        "| peak RSS main (MB) | peak RSS per worker (MB) | worker private (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = [("1 process", result["timing"])]
    runs += [(f"DDP rank {r}", result["ddp"][f"rank{r}"]) for r in (0, 1) if "ddp" in result]
    for name, s in runs:
        p = s["phase_ms"]
        workers = ", ".join(f"{w:.0f}" for w in s["worker_peak_rss_mb"]) or "-"
        lines.append(
            f"| {name} | {s['steps_per_s']:.3f} | {s['median_step_ms']:,.0f} | {p['data']:,.0f} "
            f"| {p['expert']:,.0f} | {p['student']:,.0f} | {p['backward']:,.0f} "
            f"| {p['optimiser']:,.0f} | {s['peak_rss_mb']:.0f} | {workers} "
            f"| {s['worker_private_mb']:.0f} |"
        )
    t, e = result["tasks"], result["epochs"]
    lines += [
        "",
        f"- windows per task: {t['windows']:,} windows, seen/expected share "
        f"{t['ratio_min']:.2f}-{t['ratio_max']:.2f} over the 30 tasks (one binomial s.d. "
        f"{t['relative_noise']:.0%}); at least {t['tasks_per_batch_min']} tasks in every batch",
        f"- distinct stream batches after 2 epochs of {e['epoch_batches']}: "
        f"{e['distinct']}/{e['steps']} ({e['distinct'] / e['steps']:.0%}), "
        f"equal to stream batches 0-{e['steps'] - 1}: {e['match_stream']}",
    ]
    if "resume" in result:
        r = result["resume"]
        lines.append(
            f"- kill -9 at {r['delay_s']:.0f} s (last checkpoint: step {r['killed_at_step']}), "
            f"same command again: bit-identical weights and optimiser state: {r['exact']}"
            + (f"; unreadable after the kill: {r['unreadable']}" if r["unreadable"] else "")
        )
    if "ddp" in result:
        d = result["ddp"]
        lines.append(
            f"- DDP, 2 processes, {d['steps']} steps: ranks disjoint {d['disjoint']}, each rank "
            f"its own stream {d['each_rank_its_stream']}, identical weights {d['same_weights']}"
        )
    if "cost" in result:
        c, proj = result["cost"], result["projection"]
        lines.append(
            f"- one step: {c['flops'] / 1e9:,.0f} GFLOP (forward + backward, matmuls) in "
            f"{c['ops']:,} tensor operations; student {c['student_parameters']:,} parameters"
        )
        for mode in ("tf32", "fp32"):
            m = proj[mode]
            lines.append(
                f"- projection ({mode}, H100 {m['peak_tflops']} TFLOP/s at an assumed "
                f"{m['assumed_utilisation']:.0%}, {proj['launch_us_per_op']:.0f} us per op): "
                f"{max(m['flop_bound_step_ms'], m['launch_bound_step_ms']):.0f} ms/step, 1e6 steps "
                f"in {m['hours_1_gpu']:.0f} h on 1 GPU (also on 8 at 512 windows each); "
                f"{m['hours_8_gpus_64_per_gpu']:.0f} h on 8 at 64 each"
            )
        lines.append(
            f"- the evaluation every {FULL_RUN_STEPS // c['evals_per_run']:,} steps (30 tasks x "
            f"500 steps, student MPPI {c['plan_ops']:,} operations per {c['planning']} call): "
            f"{proj['eval_hours']:.0f} h more over the run, launch-bound, physics not counted"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=8.0, help="synthetic source data")
    parser.add_argument("--workdir", default="/tmp/mt_factored_rehearse")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--workers", type=int, default=2, help="loader workers per process")
    parser.add_argument("--epoch-batches", type=int, default=12, help="E: the run is 2E steps")
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--ddp-epoch-batches", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=["resume", "ddp", "cost"])
    parser.add_argument("--seed", type=int, default=0, help="when the kill lands")
    parser.add_argument("--out", default="rehearse_dmcontrol30.json")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"args": vars(args), "cpus": os.cpu_count()}
    try:
        chunks, shards, expert = work / "chunks", work / "shards", work / "mt30-5M.pt"
        start = time.perf_counter()
        if not (shards / "index.json").is_file():
            generate(chunks, args.size_gb, len(CHUNK_SHARES), shares=CHUNK_SHARES)
            result["generate_s"] = time.perf_counter() - start
            result["prepare_s"] = prepare(chunks, shards, args.threads)
            shutil.rmtree(chunks)  # the shards hold the same data
        from mt_factored.data.stream import open_store

        store = open_store(str(shards))
        result["episodes"] = int(len(store.episode_tasks))
        result["shard_gb"] = sum(f.stat().st_size for f in shards.rglob("*.npy")) / 1e9
        write_expert(expert)

        run_dir = work / "straight"
        profile = run_dir / "profile.json"
        cmd = train_command(args, shards, expert, run_dir, f"profile={profile}")
        result["command"] = " ".join(cmd[1:])
        duration = run_train(cmd, args.threads)
        straight = json.loads(profile.read_text())
        result["timing"] = summary(straight)
        result["tasks"] = task_shares(straight, shards)
        expected = stream_digests(shards, 2 * args.epoch_batches, seed=1)[0]
        result["epochs"] = {
            "epoch_batches": args.epoch_batches,
            "steps": straight["steps"],
            "distinct": len(set(straight["batch_digests"])),
            "match_stream": straight["batch_digests"] == expected,
        }
        if "resume" not in args.skip:
            reference = faults.final_state(run_dir)
            result["resume"] = kill_and_resume(args, shards, expert, work, reference, duration)
        if "ddp" not in args.skip:
            result["ddp"] = ddp(args, shards, expert, work)
        if "cost" not in args.skip:
            result["cost"] = step_cost(shards, expert, work / "cost", args.threads)
            result["projection"] = projection(result["cost"])
        result["load_average"] = load_average()
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(
            f"\n{result['episodes']:,} episodes ({result['shard_gb']:.1f} GB of shards), "
            f"{args.threads} thread(s) and {args.workers} loader workers per process, "
            f"load average {result['load_average']:.2f} on {os.cpu_count()} cores\n"
        )
        print(markdown(result))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Data pipeline throughput: prepare MB/s, windows/s for 0/1/2 workers, peak resident memory,
from the .npy shards and from the Parquet export of the same data.

    python benchmarks/data_throughput.py --size-gb 8        # the README table (~10 min)
    python benchmarks/data_throughput.py --size-gb 0.5      # quick check
    python benchmarks/data_throughput.py --size-gb 0.5 --formats parquet   # Parquet rows only

Writes a synthetic mt30-shaped dataset in the official chunk format (torch.save of a
TensorDict, float32, 30 tasks, 501 frames, action padding and NaN slots as the public
data) of --size-gb GB into --workdir, prepares it (and a 1/--growth subset) into shards,
exports both to Parquet (`python -m mt_factored.data export`; the training store converts it
once to Arrow in the work dir), then streams batches of --batch-size windows (horizon 3) from
each, each measurement in
a fresh subprocess whose peak resident memory (VmHWM) is read from /proc. Deletes the
work dir at the end unless --keep. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

EPISODE_BYTES = 501 * (24 + 6 + 1 + 1) * 4  # float32 obs, action, reward + int32 task


def vm_kb(pid: int | str = "self", field: str = "VmHWM") -> int:
    """A memory field of /proc/<pid>/status, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def generate(
    folder: Path, size_gb: float, chunks: int, seed: int = 0, shares: list[float] | None = None
) -> list[Path]:
    """Writes `chunks` official-format chunks totalling about `size_gb` GB (tasks in turn,
    so every task has the same number of episodes, to within one per chunk); `shares`:
    each chunk's fraction of the episodes (None: equal chunks)."""
    import torch

    from mt_factored.data import write_chunk
    from mt_factored.tasks import get_task_set

    task_set = get_task_set("mt30")
    dims = torch.tensor(task_set.action_dims)
    obs_dims = torch.tensor(task_set.obs_dims)
    if shares is not None and len(shares) != chunks:
        raise ValueError(f"{len(shares)} shares for {chunks} chunks")
    total = size_gb * 1e9 / EPISODE_BYTES
    gen = torch.Generator().manual_seed(seed)
    paths = []
    for c in range(chunks):
        share = total / chunks if shares is None else total * shares[c] / sum(shares)
        per_chunk = max(len(task_set), int(share))
        task = torch.arange(per_chunk) % len(task_set)
        obs = torch.randn(per_chunk, 501, 24, generator=gen)
        obs *= (torch.arange(24) < obs_dims[task][:, None])[:, None, :]
        action = torch.rand(per_chunk, 501, 6, generator=gen).mul_(2).sub_(1)
        action *= (torch.arange(6) < dims[task][:, None])[:, None, :]
        reward = torch.rand(per_chunk, 501, generator=gen)
        action[:, 0] = float("nan")
        reward[:, 0] = float("nan")
        data = {
            "obs": obs,
            "action": action,
            "reward": reward,
            "task": task.to(torch.int32)[:, None].expand(per_chunk, 501).contiguous(),
        }
        paths.append(write_chunk(folder / f"chunk_{c}.pt", data, validate=False))
        del obs, action, reward, data
    return paths


def run_self(*args: str) -> dict:
    """Runs a measurement of this script in a fresh process; returns its JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-4000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_prepare(source: str, out: str) -> None:
    from mt_factored.data import prepare

    files = sorted(Path(source).glob("*.pt"))
    nbytes = sum(f.stat().st_size for f in files)
    start = time.perf_counter()
    prepare(source, out, task_set="mt30", progress=False, verify=False)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "mb_per_s": nbytes / 1e6 / seconds,
                "seconds": seconds,
                "gb": nbytes / 1e9,
                "peak_rss_mb": vm_kb() / 1024,
            }
        )
    )


def measure_export(shards: str, out: str) -> None:
    from mt_factored.data.export import export
    from mt_factored.data.parquet_store import store_from_parquet

    start = time.perf_counter()
    export(shards, out, progress=False)
    exported = time.perf_counter()
    store = store_from_parquet(out)  # the one-off conversion to the Arrow cache
    converted = time.perf_counter()
    nbytes = sum(f.stat().st_size for f in Path(out).rglob("*.parquet"))
    print(
        json.dumps(
            {
                "export_s": exported - start,
                "convert_s": converted - exported,
                "parquet_gb": nbytes / 1e9,
                "episodes": store.num_episodes,
                "peak_rss_mb": vm_kb() / 1024,
            }
        )
    )


def measure_stream(path: str, workers: int, batches: int, warmup: int, batch_size: int) -> None:
    import torch
    from torch.utils.data import DataLoader

    from mt_factored.data import WindowDataset

    torch.set_num_threads(1)
    dataset = WindowDataset(path, batch_size=batch_size, horizon=3, seed=0)
    loader = DataLoader(
        dataset, batch_size=None, num_workers=workers, prefetch_factor=8 if workers else None
    )
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    seconds = time.perf_counter() - start
    assert batch["obs"].shape == (batch_size, 4, 24)
    worker_pids = [w.pid for w in getattr(iterator, "_workers", [])]
    worker_hwm = max((vm_kb(pid) for pid in worker_pids), default=0)
    print(
        json.dumps(
            {
                "windows_per_s": batches * batch_size / seconds,
                "main_peak_rss_mb": vm_kb() / 1024,
                "worker_peak_rss_mb": worker_hwm / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=8.0)
    parser.add_argument("--growth", type=int, default=4, help="the small set is size/growth")
    parser.add_argument("--chunks", type=int, default=8, help="source chunks (multiple of growth)")
    parser.add_argument("--workdir", default="/tmp/mt_factored_data_bench")
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--formats", nargs="+", default=["shards", "parquet"])
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()
    if args.chunks % args.growth:
        parser.error("--chunks must be a multiple of --growth")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MT_FACTORED_CACHE"] = str(work / "arrow")  # the Parquet store's Arrow files
    try:
        source = work / "chunks"
        start = time.perf_counter()
        paths = generate(source, args.size_gb, args.chunks)
        gen_s = time.perf_counter() - start
        small_src = work / "chunks_small"
        small_src.mkdir(exist_ok=True)
        for p in paths[: args.chunks // args.growth]:
            target = small_src / p.name
            if not target.exists():
                os.link(p, target)
        prep = run_self("_prepare", str(source), str(work / "full"))
        run_self("_prepare", str(small_src), str(work / "small"))
        exports = {}
        if "parquet" in args.formats:
            for name in ("small", "full"):
                exports[name] = run_self("_export", str(work / name), str(work / f"{name}-pq"))
        rows = []
        for fmt in args.formats:
            for name in ("small", "full"):
                folder = work / (name if fmt == "shards" else f"{name}-pq")
                for workers in args.workers:
                    r = run_self(
                        "_stream",
                        str(folder),
                        str(workers),
                        str(args.batches),
                        str(args.warmup),
                        str(args.batch_size),
                    )
                    rows.append((fmt, name, workers, r))
        load = os.getloadavg()
        size = {
            name: sum(f.stat().st_size for f in (work / name).glob("*.npy")) / 1e9
            for name in ("small", "full")
        }
        print(
            f"\nsynthetic source: {prep['gb']:.2f} GB in {args.chunks} chunks "
            f"(generated in {gen_s:.0f} s); load average {load[0]:.2f} {load[1]:.2f} "
            f"{load[2]:.2f} on {os.cpu_count()} cores\n"
        )
        print(
            f"prepare: {prep['mb_per_s']:.0f} MB/s ({prep['seconds']:.0f} s), "
            f"peak RSS {prep['peak_rss_mb']:.0f} MB\n"
        )
        for name, e in exports.items():
            print(
                f"export {name} ({size[name]:.2f} GB of shards): {e['export_s']:.0f} s to "
                f"{e['parquet_gb']:.2f} GB of Parquet, {e['convert_s']:.0f} s to Arrow, peak "
                f"RSS {e['peak_rss_mb']:.0f} MB\n"
            )
        print(
            "| format | data | workers | windows/s (B=256, H=3) | peak RSS main (MB) "
            "| peak RSS per worker (MB) |"
        )
        print("|---|---|---|---|---|---|")
        for fmt, name, workers, r in rows:
            worker_rss = f"{r['worker_peak_rss_mb']:.0f}" if workers else "-"
            print(
                f"| {fmt} | {size[name]:.1f} GB | {workers} | {r['windows_per_s']:,.0f} | "
                f"{r['main_peak_rss_mb']:.0f} | {worker_rss} |"
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_prepare":
        measure_prepare(*sys.argv[2:4])
    elif len(sys.argv) > 1 and sys.argv[1] == "_export":
        measure_export(*sys.argv[2:4])
    elif len(sys.argv) > 1 and sys.argv[1] == "_stream":
        measure_stream(sys.argv[2], *map(int, sys.argv[3:7]))
    else:
        main()

"""Fault injection: kill, corrupt, fill, lock and poison the real commands; print what survived.

    python benchmarks/faults.py [--tries 20] [--cases kill_train,kill_prepare,...] [--seed 0]

Every case runs the real entry points (``python -m mt_factored.train`` on the smoke recipe's
tiny expert and data, ``python -m mt_factored.data prepare``) as subprocesses on one thread,
and prints one row: case, tries, survived, data lost.

- kill_train: kill -9 (the whole process group) at a random moment of a smoke training that
  writes a checkpoint every step (so kills land in checkpoint writes too), then re-run the same
  command. Survived: the re-run ends with weights and optimiser state bit-identical to an
  uninterrupted run. Data lost: a checkpoint left unreadable by the kill.
- kill_prepare: the same for ``data prepare`` of a 40-episode chunk into 20 shards. Survived:
  every file of the re-run's folder byte-identical to an uninterrupted prepare's.
- full_disk: training into a 6 MiB tmpfs (skipped where tmpfs cannot be mounted). Survived:
  one error line naming the checkpoint and no corrupt file.
- read_only: a run folder on a read-only tmpfs (skipped where it cannot be mounted). Survived:
  one error line naming run_dir.
- corrupt_last: last.ckpt truncated between two invocations. Survived: the re-run falls back
  to the intact step checkpoint (warning naming both) and ends bit-identical.
- concurrent: two trainings started together on one run_dir. Survived: one refused with the
  holder's PID, the other bit-identical to an uninterrupted run, no ``-v1`` file.
- nan_shard: NaN written into a prepared shard. Survived: one error line naming the shard,
  no checkpoint written.
- tampered_expert: 400 bytes zeroed inside a shipped expert (its SHA256SUMS beside it), and a
  local expert file replaced by another valid expert between two invocations of a run.
  Survived: both refused naming the file (the second with the hash diff).
- pickle_payload: a ``.pt`` whose unpickling would write a marker file, as expert= and as
  data=. Survived: one error line, no marker.
- bad_inputs: a task missing from the data, a single-task expert as expert=path, a truncated
  index.json, a truncated last.ckpt with nothing to fall back to, loader.batch_size=abc.
  Survived: exit status 2, one ``error:`` line naming the task / file / key and what to do, no
  traceback.

``data lost`` counts the tries that left a file unreadable or missing (a checkpoint or shard
that was whole before the fault). Its short cases also run in the test suite
(tests/test_faults.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mt_factored.artifacts.checksums import MANIFEST_NAME
from mt_factored.constants import PACKAGE_ASSETS_DIR, SHIPPED_CHECKPOINTS_DIR

SMOKE_EXPERT = PACKAGE_ASSETS_DIR / "smoke" / "cartpole-balance.pt"
SMOKE_DATA = PACKAGE_ASSETS_DIR / "smoke" / "data"
CARTPOLE_ID, CARTPOLE_OBS, CARTPOLE_ACT = 8, 5, 1  # mt30 id and dims of cartpole-balance


@dataclass
class Row:
    """One line of the table."""

    case: str
    tries: int = 0
    survived: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        note = " ".join("; ".join(dict.fromkeys(self.notes)).split())[:300]
        return (
            f"| {self.case} | {self.tries} | {self.survived}/{self.tries} | {self.lost} | {note} |"
        )


# ----------------------------------------------------------------------------- running
def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())


def run_killed(cmd: list[str], delay: float) -> None:
    """Start ``cmd`` and kill -9 its whole process group after ``delay`` seconds."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
        start_new_session=True,
    )
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def error_line(out: subprocess.CompletedProcess) -> str | None:
    """The ``error:`` line of a failed command, when it failed with exit 2 and no traceback."""
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    if out.returncode != 2 or "Traceback" in out.stderr or not lines:
        return None
    return lines[-1] if lines[-1].startswith("error: ") and " — " in lines[-1] else None


def train_args(run_dir: Path, *extra: str, steps: int = 24) -> list[str]:
    return command(
        "mt_factored.train",
        "recipe=smoke",
        f"run_dir={run_dir}",
        "logger=none",
        "eval.at_end=false",
        "trainer.enable_progress_bar=false",
        f"trainer.max_steps={steps}",
        "checkpoint.every_n_steps=1",
        "checkpoint.keep=2",
        *extra,
    )


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """Weights and optimiser state of a run's last.ckpt, flattened."""
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    out = {f"w.{k}": v for k, v in ckpt["state_dict"].items()}
    for i, opt in enumerate(ckpt["optimizer_states"]):
        for pid, slots in opt["state"].items():
            out.update({f"opt{i}.{pid}.{k}": v for k, v in slots.items() if torch.is_tensor(v)})
    out["global_step"] = torch.tensor(ckpt["global_step"])
    return out


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def unreadable_checkpoints(run_dir: Path) -> list[Path]:
    bad = []
    for path in sorted((run_dir / "checkpoints").glob("*.ckpt")):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 (any failure is a lost file)
            bad.append(path)
    return bad


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[bool]:
    """Mount a tmpfs at ``path`` for the block; yields False where that is not possible."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = (
        shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], capture_output=True)


# ----------------------------------------------------------------------------- fixtures
class Workspace:
    """Files the cases share, made once: a reference training, a bigger chunk and its
    reference prepare."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._reference: dict[str, torch.Tensor] | None = None
        self._duration = 0.0

    def path(self, name: str) -> Path:
        out = self.root / name
        shutil.rmtree(out, ignore_errors=True)
        return out

    def reference(self) -> tuple[dict[str, torch.Tensor], float]:
        """The uninterrupted smoke run's final state and its wall time."""
        if self._reference is None:
            run_dir = self.path("reference-train")
            start = time.perf_counter()
            out = run(train_args(run_dir))
            self._duration = time.perf_counter() - start
            if out.returncode != 0:
                raise RuntimeError(f"reference training failed:\n{out.stderr[-3000:]}")
            self._reference = final_state(run_dir)
        return self._reference, self._duration

    def chunk(self) -> Path:
        """A folder with one valid official chunk of 40 cartpole episodes."""
        folder = self.root / "chunk40"
        if not (folder / "chunk_0.pt").is_file():
            from mt_factored.data import write_chunk

            gen = torch.Generator().manual_seed(0)
            episodes, frames = 40, 501
            obs = torch.zeros(episodes, frames, 24)
            obs[..., :CARTPOLE_OBS] = torch.randn(episodes, frames, CARTPOLE_OBS, generator=gen)
            action = torch.zeros(episodes, frames, 6)
            action[..., :CARTPOLE_ACT] = torch.rand(episodes, frames, 1, generator=gen) * 2 - 1
            reward = torch.rand(episodes, frames, generator=gen)
            action[:, 0], reward[:, 0] = float("nan"), float("nan")
            task = torch.full((episodes, frames), CARTPOLE_ID, dtype=torch.int32)
            data = {"obs": obs, "action": action, "reward": reward, "task": task}
            write_chunk(folder / "chunk_0.pt", data)
        return folder

    def prepare_args(self, out: Path) -> list[str]:
        return command(
            "mt_factored.data",
            "prepare",
            f"source={self.chunk()}",
            f"out={out}",
            "task_set=mt30",
            "shard_episodes=2",
            "block_episodes=1",
            "progress=false",
        )


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


# ----------------------------------------------------------------------------- cases
def kill_train(ws: Workspace, tries: int, rng: random.Random) -> Row:
    row = Row("kill -9 during training (checkpoint every step)")
    reference, duration = ws.reference()
    for _ in range(tries):
        run_dir = ws.path("kill-train")
        row.tries += 1
        run_killed(train_args(run_dir), rng.uniform(1.0, duration))
        if unreadable_checkpoints(run_dir):
            row.lost += 1
            row.notes.append("a checkpoint was unreadable after the kill")
        out = run(train_args(run_dir))
        if out.returncode == 0 and identical(final_state(run_dir), reference):
            row.survived += 1
        else:
            row.notes.append(f"re-run: exit {out.returncode} {out.stderr.strip()[-200:]}")
    row.notes.append(f"kills uniform in [1, {duration:.0f}] s of a {duration:.0f} s run")
    return row


def kill_prepare(ws: Workspace, tries: int, rng: random.Random) -> Row:
    row = Row("kill -9 during data prepare (20 shards)")
    reference_dir = ws.root / "reference-prepare"
    if not (reference_dir / "index.json").is_file():
        start = time.perf_counter()
        out = run(ws.prepare_args(reference_dir))
        if out.returncode != 0:
            raise RuntimeError(f"reference prepare failed:\n{out.stderr[-3000:]}")
        (ws.root / "prepare-seconds").write_text(str(time.perf_counter() - start))
    reference = folder_bytes(reference_dir)
    duration = float((ws.root / "prepare-seconds").read_text())
    for _ in range(tries):
        out_dir = ws.path("kill-prepare")
        row.tries += 1
        run_killed(ws.prepare_args(out_dir), rng.uniform(0.5, duration))
        out = run(ws.prepare_args(out_dir))
        files = folder_bytes(out_dir) if out_dir.is_dir() else {}
        if out.returncode == 0 and files == reference:
            row.survived += 1
        else:
            row.lost += int(out.returncode == 0)
            row.notes.append(f"re-run: exit {out.returncode}, {len(files)} files")
    row.notes.append(f"kills uniform in [0.5, {duration:.0f}] s")
    return row


def full_disk(ws: Workspace, tries: int, rng: random.Random) -> Row:
    row = Row("full disk (6 MiB tmpfs run folder)")
    mount = ws.path("full-disk")
    with tmpfs(mount, "6m") as mounted:
        if not mounted:
            row.notes.append("skipped: cannot mount a tmpfs here (needs root)")
            return row
        for i in range(tries):
            row.tries += 1
            run_dir = mount / f"run{i}"
            out = run(train_args(run_dir, steps=40))
            line = error_line(out) or ""
            corrupt = unreadable_checkpoints(run_dir)
            row.lost += bool(corrupt)
            if "could not write checkpoint" in line and "No space left" in line and not corrupt:
                row.survived += 1
            else:
                row.notes.append(f"exit {out.returncode}: {line or out.stderr.strip()[-200:]}")
            shutil.rmtree(run_dir, ignore_errors=True)
    row.notes.append("0 corrupt files expected; the error names the checkpoint")
    return row


def read_only(ws: Workspace, tries: int, rng: random.Random) -> Row:
    row = Row("read-only run folder")
    mount = ws.path("read-only")
    with tmpfs(mount, "1m", read_only=True) as mounted:
        if not mounted:
            row.notes.append("skipped: cannot mount a read-only tmpfs here (needs root)")
            return row
        for _ in range(tries):
            row.tries += 1
            out = run(train_args(mount / "run"))
            line = error_line(out) or ""
            if f"run_dir={mount / 'run'}" in line and "cannot be written" in line:
                row.survived += 1
            else:
                row.notes.append(f"exit {out.returncode}: {line or out.stderr.strip()[-200:]}")
    return row


def corrupt_last(ws: Workspace, tries: int, rng: random.Random) -> Row:
    row = Row("truncated last.ckpt between two invocations")
    reference, _ = ws.reference()
    for _ in range(tries):
        run_dir = ws.path("corrupt-last")
        row.tries += 1
        out = run(train_args(run_dir, steps=12))
        last = run_dir / "checkpoints" / "last.ckpt"
        last.write_bytes(last.read_bytes()[: rng.randrange(0, last.stat().st_size)])
        out = run(train_args(run_dir))
        logged = out.stdout + out.stderr  # Hydra's job logging writes to stdout
        warned = f"checkpoint {last}" in logged and "resuming from" in logged
        if out.returncode == 0 and warned and identical(final_state(run_dir), reference):
            row.survived += 1
        else:
            row.notes.append(f"exit {out.returncode}, warned={warned}")
    return row


def concurrent(ws: Workspace, tries: int, rng: random.Random) -> Row:
    row = Row("two trainings on one run_dir")
    reference, _ = ws.reference()
    for _ in range(tries):
        run_dir = ws.path("concurrent")
        row.tries += 1
        procs = [
            subprocess.Popen(
                train_args(run_dir),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env(),
            )
            for _ in range(2)
        ]
        outs = []
        for p in procs:
            stdout, stderr = p.communicate()
            outs.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
        codes = sorted(o.returncode for o in outs)
        refused = [error_line(o) or "" for o in outs if o.returncode == 2]
        versions = list((run_dir / "checkpoints").glob("*-v*.ckpt"))
        if (
            codes == [0, 2]
            and "is in use by PID" in refused[0]
            and not versions
            and identical(final_state(run_dir), reference)
        ):
            row.survived += 1
        else:
            row.notes.append(f"exits {codes}, {len(versions)} -v files")
    return row


def nan_shard(ws: Workspace, tries: int, rng: random.Random) -> Row:
    row = Row("NaN written into a prepared shard")
    for _ in range(tries):
        prepared = ws.path("nan-shard")
        run(ws.prepare_args(prepared))
        shard = sorted(prepared.glob("*.obs.npy"))[rng.randrange(20)]
        obs = np.load(shard, mmap_mode="r+")
        obs[:, :, rng.randrange(CARTPOLE_OBS)] = np.nan  # every window of the shard reads it
        obs.flush()
        del obs
        run_dir = ws.path("nan-shard-run")
        row.tries += 1
        out = run(train_args(run_dir, f"data={prepared}", "loader.batch_size=512", steps=4))
        line = error_line(out) or ""
        if f"non-finite obs in {shard}" in line and not unreadable_checkpoints(run_dir):
            row.survived += 1
        else:
            row.notes.append(f"exit {out.returncode}: {line or out.stderr.strip()[-200:]}")
    return row


def tampered_expert(ws: Workspace, tries: int, rng: random.Random) -> Row:
    row = Row("tampered expert (shipped; replaced between invocations)")
    for _ in range(tries):
        row.tries += 1
        shipped = ws.path("tampered") / "checkpoints"
        (shipped / "quickstart").mkdir(parents=True)
        shutil.copy(SHIPPED_CHECKPOINTS_DIR / MANIFEST_NAME, shipped / MANIFEST_NAME)
        path = shipped / "quickstart" / "cartpole-balance.pt"
        raw = bytearray((SHIPPED_CHECKPOINTS_DIR / "quickstart" / path.name).read_bytes())
        at = rng.randrange(len(raw) // 4, len(raw) // 2)
        raw[at : at + 400] = bytes(400)
        path.write_bytes(bytes(raw))
        out = run(train_args(ws.path("tampered-run"), f"expert={{cartpole-balance: {path}}}"))
        first = f"{path}: its SHA-256" in (error_line(out) or "")
        local = ws.path("local-expert") / "expert.pt"
        local.parent.mkdir(parents=True)
        shutil.copy(SMOKE_EXPERT, local)
        run_dir = ws.path("replaced-run")
        run(train_args(run_dir, f"expert={{cartpole-balance: {local}}}", steps=2))
        # another valid expert of the task in its place (it loads: only its hash tells)
        shutil.copy(SHIPPED_CHECKPOINTS_DIR / "quickstart" / "cartpole-balance.pt", local)
        out = run(train_args(run_dir, f"expert={{cartpole-balance: {local}}}", steps=4))
        second = "expert file of 'cartpole-balance': SHA-256" in (error_line(out) or "")
        row.survived += first and second
        if not (first and second):
            row.notes.append(f"shipped refused={first}, replaced refused={second}")
    return row


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def pickle_payload(ws: Workspace, tries: int, rng: random.Random) -> Row:
    row = Row("pickle payload as expert= and as data=")
    for _ in range(tries):
        row.tries += 1
        folder = ws.path("payload")
        folder.mkdir()
        marker = folder / "ran"
        torch.save({"model": {"w": torch.ones(2), "x": _Payload(marker)}}, folder / "evil.pt")
        (folder / "chunks").mkdir()
        torch.save(
            {"obs": torch.zeros(1, 5, 24), "x": _Payload(marker)}, folder / "chunks" / "chunk_0.pt"
        )
        a = run(train_args(ws.path("payload-run"), f"expert={folder / 'evil.pt'}"))
        b = run(train_args(ws.path("payload-run"), f"data={folder / 'chunks'}"))
        lines = [error_line(a) or "", error_line(b) or ""]
        ok = all("the pickle calls builtins.exec" in ln for ln in lines) and not marker.exists()
        row.survived += ok
        if not ok:
            row.notes.append(f"marker={marker.exists()}: {lines}")
    row.notes.append("0 payloads executed" if row.survived == row.tries else "A PAYLOAD RAN")
    return row


BadInput = tuple[list[str], Callable[[str], bool]]
"""A command and the check of its error line."""


def missing_task(ws: Workspace) -> BadInput:
    return (
        train_args(ws.path("bad-task"), "tasks=[cartpole-balance,walker-walk]"),
        lambda ln: "holds no episode of walker-walk (it holds: cartpole-balance)" in ln,
    )


def single_task_as_path(ws: Workspace) -> BadInput:
    return (
        train_args(ws.path("bad-expert"), f"expert={SMOKE_EXPERT}", "expert_model_size=auto"),
        lambda ln: "expert={<task>: <path>}" in ln,
    )


def truncated_index(ws: Workspace) -> BadInput:
    prepared = ws.path("bad-index")
    run(ws.prepare_args(prepared))
    index = prepared / "index.json"
    index.write_text(index.read_text()[:200])
    return (
        train_args(ws.path("bad-index-run"), f"data={prepared}"),
        lambda ln: f"{index} is truncated or corrupt" in ln and "prepare" in ln,
    )


def truncated_last(ws: Workspace) -> BadInput:
    run_dir = ws.path("bad-last")
    run(train_args(run_dir, "checkpoint.keep=0", steps=2))
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    return (
        train_args(run_dir, "checkpoint.keep=0", steps=2),
        lambda ln: f"checkpoint {last} (1000 bytes) cannot be read" in ln,
    )


def wrong_type(ws: Workspace) -> BadInput:
    return (
        train_args(ws.path("bad-type"), "loader.batch_size=abc"),
        lambda ln: "batch_size" in ln and "Integer" in ln,
    )


BAD_INPUTS: dict[str, Callable[[Workspace], BadInput]] = {
    "task missing from the data": missing_task,
    "single-task expert as expert=path": single_task_as_path,
    "truncated index.json": truncated_index,
    "truncated last.ckpt, no step checkpoint": truncated_last,
    "loader.batch_size=abc": wrong_type,
}


def check_bad_input(ws: Workspace, name: str) -> str | None:
    """None when the bad input ``name`` got its one-line error, else what it got."""
    cmd, check = BAD_INPUTS[name](ws)
    line = error_line(run(cmd)) or ""
    return None if check(line) else f"{name}: {line or 'no one-line error'}"


def bad_inputs(ws: Workspace, tries: int, rng: random.Random) -> Row:
    row = Row(f"bad inputs ({len(BAD_INPUTS)} kinds): one error line each")
    for name in BAD_INPUTS:
        row.tries += 1
        problem = check_bad_input(ws, name)
        row.survived += problem is None
        if problem:
            row.notes.append(problem)
    return row


CASES: dict[str, Callable[[Workspace, int, random.Random], Row]] = {
    "kill_train": kill_train,
    "kill_prepare": kill_prepare,
    "full_disk": full_disk,
    "read_only": read_only,
    "corrupt_last": corrupt_last,
    "concurrent": concurrent,
    "nan_shard": nan_shard,
    "tampered_expert": tampered_expert,
    "pickle_payload": pickle_payload,
    "bad_inputs": bad_inputs,
}
ONE_TRY = ("full_disk", "read_only", "nan_shard", "tampered_expert", "pickle_payload", "bad_inputs")
"""Deterministic cases: a second try repeats the first."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=20, help="tries of the kill cases")
    parser.add_argument(
        "--other-tries", type=int, default=1, help="tries of corrupt_last/concurrent"
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mt_factored-faults-") as tmp:
        ws = Workspace(Path(tmp))
        for name in args.cases.split(","):
            tries = args.tries if name.startswith("kill") else args.other_tries
            row = CASES[name](ws, 1 if name in ONE_TRY else tries, rng)
            rows.append(row)
            print(row.markdown(), flush=True)
    load = os.getloadavg()[0]
    print("\n| case | tries | survived | data lost | notes |\n|---|---|---|---|---|")
    print("\n".join(r.markdown() for r in rows))
    print(f"\n{time.perf_counter() - start:.0f} s, OMP_NUM_THREADS=1, load average {load:.1f}")
    if args.out:
        args.out.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0 if all(r.survived == r.tries for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

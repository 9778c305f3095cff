"""``profile=<file>.json``: where a training step's time and memory go, and what it saw.

:class:`StepProfile` splits every optimizer step into phases with Lightning's hooks,

    data        end of the last step -> start of this one: the wait for the loader's next
                batch (and, on the steps they run, checkpoint writes and evaluations)
    expert      the teacher's calls inside ``training_step`` (timed through the
                :class:`~mt_factored.expert.interface.Expert` methods)
    student     the rest of ``training_step``: the student's rollout and the loss terms
    backward    ``loss.backward()``
    optimiser   gradient clipping and the Adam step (to the end of the step's hooks)

and records the windows per task, a digest of every batch (so a check can tell which
stream batches were trained on, by content), and the peak resident memory (VmHWM) of the
process and of each loader worker (and the workers' private memory: forked from the main
process, their VmHWM also counts the pages they share with it). It writes one JSON at the end of training, per rank
(rank r > 0: ``<stem>.rank<r><suffix>``). The timings synchronise CUDA at the phase
boundaries, so a profiled GPU run is a little slower than an unprofiled one.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from mt_factored.artifacts.atomic import write_json
from mt_factored.constants import OBS, TASK

PHASES = ("data", "expert", "student", "backward", "optimiser")
PRIVATE_EVERY = 10
"""Steps between two reads of the workers' private memory (a walk of their page tables)."""
MAX_ROWS = 10_000
"""Per-step rows (times, digest) kept; totals cover every step (the profile is meant for
rehearsals, not for a 1e6-step run's every step)."""


def vm_kb(pid: int | str = "self", field: str = "VmHWM") -> int | None:
    """A memory field of ``/proc/<pid>/status`` in kB (None: no such process, or no /proc)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def private_kb(pid: int | str = "self") -> int | None:
    """Memory only this process holds (private clean + dirty pages, kB): a forked loader
    worker's VmHWM also counts the pages it still shares with the main process."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines()[1:] if ":" in line)
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty") if k in fields)


def batch_digest(batch: dict[str, torch.Tensor]) -> str:
    """A short content hash of a batch's observations (distinct windows, distinct digests)."""
    obs = batch[OBS].detach().cpu().contiguous()
    return hashlib.blake2b(obs.numpy().tobytes(), digest_size=8).hexdigest()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every tensor of ``model``'s state dict in key order (equal digests: equal
    weights, bit for bit)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rank_path(path: Path, rank: int) -> Path:
    """The profile file of ``rank`` (rank 0 writes ``path`` itself)."""
    return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


class _TimedExpert:
    """Forwards every attribute to ``expert``; calls of its methods add to ``seconds``."""

    def __init__(self, expert: Any, clock) -> None:
        self._expert, self._clock, self.seconds = expert, clock, 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._expert, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def timed(*args, **kwargs):
            start = self._clock()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += self._clock() - start

        return timed


class StepProfile(L.Callback):
    """Times the phases of every step and records what it trained on (module docstring).

    Args:
        path: the JSON file rank 0 writes (other ranks beside it).
        num_tasks: length of the windows-per-task counts (the student's tasks).
    """

    def __init__(self, path: str | Path, num_tasks: int) -> None:
        super().__init__()
        self.path, self.num_tasks = Path(path), int(num_tasks)
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.rows: list[dict[str, float]] = []
        self.digests: list[str] = []
        self.task_windows = np.zeros(self.num_tasks, dtype=np.int64)
        self.worker_hwm_kb: dict[int, int] = {}
        self.worker_private_kb: dict[int, int] = {}
        self.tasks_per_batch: list[int] = []
        self.steps = 0
        self._cuda = False
        self._marks: dict[str, float] = {}
        self._timed: _TimedExpert | None = None
        self._real_expert: Any = None
        self._started = 0.0

    def _now(self) -> float:
        if self._cuda:  # kernels run asynchronously: count them in the phase that queued them
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self._cuda = pl_module.device.type == "cuda"
        self._started = self._marks["end"] = self._now()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._marks["start"] = self._now()
        # The timing wrapper is in place only during training_step, so evaluation, saving
        # and everything else see the real expert.
        self._real_expert = pl_module._expert[0]
        self._timed = _TimedExpert(self._real_expert, self._now)
        pl_module._expert[0] = self._timed

    def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None:
        self._marks["forward"] = self._now()
        if self._timed is not None:
            pl_module._expert[0] = self._real_expert

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._marks["backward_start"] = self._now()

    def on_after_backward(self, trainer, pl_module) -> None:
        self._marks["backward"] = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        end = self._now()
        m = self._marks
        expert = self._timed.seconds if self._timed is not None else 0.0
        row = {
            "data": m["start"] - m["end"],
            "expert": expert,
            "student": m["forward"] - m["start"] - expert,
            "backward": m["backward"] - m["backward_start"],
            "optimiser": end - m["backward"],
        }
        for phase, seconds in row.items():
            self.totals[phase] += seconds
        self.steps += 1
        if len(self.rows) < MAX_ROWS:
            self.rows.append(row)
            self.digests.append(batch_digest(batch))
        tasks = batch[TASK].detach().cpu().long().numpy()
        counts = np.bincount(tasks, minlength=len(self.task_windows))
        if len(counts) > len(self.task_windows):  # ids beyond the student's (never expected)
            self.task_windows = np.pad(self.task_windows, (0, len(counts) - len(self.task_windows)))
        self.task_windows += counts
        if len(self.tasks_per_batch) < MAX_ROWS:
            self.tasks_per_batch.append(int(np.count_nonzero(counts)))
        for pid in getattr(trainer.train_dataloader, "worker_pids", ()):
            kb = vm_kb(pid)
            if kb is not None:
                self.worker_hwm_kb[pid] = max(kb, self.worker_hwm_kb.get(pid, 0))
            due = pid not in self.worker_private_kb or self.steps % PRIVATE_EVERY == 0
            own = private_kb(pid) if due else None
            if own is not None:
                self.worker_private_kb[pid] = max(own, self.worker_private_kb.get(pid, 0))
        m["end"] = self._now()  # after this callback's own bookkeeping

    def on_train_end(self, trainer, pl_module) -> None:
        main_kb = vm_kb()
        write_json(
            rank_path(self.path, trainer.global_rank),
            {
                "rank": trainer.global_rank,
                "world_size": trainer.world_size,
                "steps": self.steps,
                "first_step": trainer.global_step - self.steps,
                "wall_s": time.perf_counter() - self._started,
                "threads": torch.get_num_threads(),
                "seconds": self.totals,
                "rows": self.rows,
                "batch_digests": self.digests,
                "task_windows": self.task_windows.tolist(),
                "tasks_per_batch": self.tasks_per_batch,
                "student_sha256": weights_digest(pl_module.student),
                "peak_rss_mb": None if main_kb is None else main_kb / 1024,
                "worker_peak_rss_mb": {str(p): kb / 1024 for p, kb in self.worker_hwm_kb.items()},
                "worker_private_mb": {
                    str(p): kb / 1024 for p, kb in self.worker_private_kb.items()
                },
            },
        )

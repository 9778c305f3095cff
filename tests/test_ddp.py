"""DDP on 2 CPU processes: ranks see different windows, end with identical weights, and a
run interrupted mid-epoch resumes exactly across epoch boundaries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import write_tiny_chunk, write_tiny_expert


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    expert = write_tiny_expert(tmp_path / "expert.pt")
    data = tmp_path / "chunks"
    write_tiny_chunk(
        data / "chunk_0.pt",
        task_ids={8: 3, 4: 3},
        action_dims={8: 1, 4: 2},
        obs_dims={8: 5, 4: 6},
    )
    script = Path(__file__).with_name("ddp_script.py")
    path = os.pathsep.join(p for p in (str(script.parent), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}

    def ddp(max_steps: int, name: str) -> None:
        out = subprocess.run(
            [
                sys.executable,
                str(script),
                str(tmp_path),
                str(expert),
                str(data),
                str(max_steps),
                name,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr[-4000:]

    ddp(5, "straight")  # epochs of 2 batches: boundaries after steps 2 and 4
    ddp(3, "resumed")  # interrupted inside the second epoch
    ddp(5, "resumed")
    r0 = torch.load(tmp_path / "straight-rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "straight-rank1.pt", weights_only=False)

    # Different windows: no first observation of a rank-0 window equals one of rank 1.
    a, b = r0["obs"], r1["obs"]
    assert a.shape == b.shape and a.shape[0] > 0
    same = (a[:, None] == b[None]).all(-1)
    assert not same.any(), f"{int(same.sum())} windows seen by both ranks"

    for key, value in r0["student"].items():
        torch.testing.assert_close(value, r1["student"][key], rtol=0, atol=0, msg=key)

    # The resumed run trains its last 2 steps on the straight run's windows and ends with
    # its weights, on both ranks.
    for rank, straight in enumerate((r0, r1)):
        resumed = torch.load(tmp_path / f"resumed-rank{rank}.pt", weights_only=False)
        torch.testing.assert_close(resumed["obs"], straight["obs"][-resumed["obs"].shape[0] :])
        assert resumed["obs"].shape[0] == 2 * straight["obs"].shape[0] // 5
        for key, value in straight["student"].items():
            torch.testing.assert_close(resumed["student"][key], value, rtol=0, atol=0, msg=key)
    # No window repeats across the 5 steps of both ranks (the epochs walk forward).
    windows = torch.cat([r0["obs"], r1["obs"]])
    assert torch.unique(windows, dim=0).shape[0] == windows.shape[0]

"""Tiny artifacts the tests write themselves (a random TD-MPC2 expert and student,
official-format chunks) and a runner for the command-line entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from tensordict import TensorDict

from mt_factored.constants import MT_ACTION_DIM, MT_OBS_DIM

EPISODE_FRAMES = 501


def tiny_expert_config(**overrides):
    """A tiny mt30 expert (the fixtures' sizes)."""
    from mt_factored.expert import ExpertConfig

    sizes = dict(task_dim=16, enc_dim=32, mlp_dim=32, latent_dim=32, num_enc_layers=2, num_q=2)
    sizes.update(overrides)
    return ExpertConfig.custom("mt30", **sizes)


def write_tiny_expert(path: Path, seed: int = 0, **overrides) -> Path:
    """Save a randomly initialised tiny mt30 expert in the public layout."""
    from mt_factored.expert import TDMPC2Expert

    torch.manual_seed(seed)
    expert = TDMPC2Expert(tiny_expert_config(**overrides))
    expert.save_checkpoint(path)
    return path


def write_tiny_chunk(
    path: Path,
    task_ids: dict[int, int],
    action_dims: dict[int, int],
    obs_dims: dict[int, int],
    seed: int = 0,
    frames: int = EPISODE_FRAMES,
) -> Path:
    """An official-format chunk: ``{task_id: episodes}`` of random but valid episodes."""
    gen = torch.Generator().manual_seed(seed)
    tasks = [t for t, n in task_ids.items() for _ in range(n)]
    n = len(tasks)
    obs = torch.zeros(n, frames, MT_OBS_DIM)
    action = torch.zeros(n, frames, MT_ACTION_DIM)
    for i, t in enumerate(tasks):
        obs[i, :, : obs_dims[t]] = torch.randn(frames, obs_dims[t], generator=gen)
        action[i, :, : action_dims[t]] = torch.rand(frames, action_dims[t], generator=gen) * 2 - 1
    reward = torch.rand(n, frames, generator=gen) * 2
    action[:, 0] = float("nan")
    reward[:, 0] = float("nan")
    task = torch.tensor(tasks, dtype=torch.int32)[:, None].expand(n, frames).contiguous()
    td = TensorDict(
        {"obs": obs, "action": action, "reward": reward, "task": task}, batch_size=[n, frames]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(td, path)
    return path


def write_tiny_student(folder: Path, seed: int = 0, **overrides) -> Path:
    """Save a randomly initialised tiny mt30 student with ``save_pretrained``."""
    from mt_factored.student import FactoredStudent, StudentConfig

    sizes = dict(latent_dim=16, mlp_dim=32, enc_dim=32, task_dim=8, agent_dim=8)
    sizes.update(overrides)
    torch.manual_seed(seed)
    FactoredStudent(StudentConfig.for_task_set("mt30", **sizes)).save_pretrained(folder)
    return folder


def run_cli(
    module: str, *args: str, cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in ``cwd`` on one thread (headless rendering: egl);
    ``env`` adds variables."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


SMOKE_TASK, SMOKE_TASK_ID = "cartpole-balance", 8  # its mt30 id


def write_smoke_assets(folder: Path) -> dict[str, Path]:
    """The smoke recipe's files, installed with the package (``mt_factored/assets/smoke``):
    a randomly initialised single-task expert of cartpole-balance in the public checkpoint
    layout (sizes 16) and one official-format chunk of two random cartpole episodes (mt30
    padding). Deterministic: ``python tests/tiny.py`` rewrites them unchanged.
    """
    from mt_factored.expert import ExpertConfig, TDMPC2Expert

    torch.manual_seed(0)
    config = ExpertConfig.custom(
        SMOKE_TASK, 1, enc_dim=16, mlp_dim=16, latent_dim=16, num_enc_layers=2, num_q=2
    )
    expert = TDMPC2Expert(config).save_checkpoint(folder / f"{SMOKE_TASK}.pt")
    chunk = write_tiny_chunk(
        folder / "data" / "chunk_0.pt",
        task_ids={SMOKE_TASK_ID: 2},
        action_dims={SMOKE_TASK_ID: 1},
        obs_dims={SMOKE_TASK_ID: 5},
        seed=0,
    )
    return {"expert": expert, "data": chunk}


if __name__ == "__main__":
    from mt_factored.artifacts.checksums import write_manifest
    from mt_factored.constants import PACKAGE_ASSETS_DIR

    written = write_smoke_assets(PACKAGE_ASSETS_DIR / "smoke")
    write_manifest(PACKAGE_ASSETS_DIR, [written["expert"]])  # the shipped experts' hashes
    print(written)

"""Online TD-MPC2 expert trainer: replay windows, losses go down, chunks, exact resume."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from mt_factored import cli
from mt_factored.constants import MT_ACTION_DIM, MT_OBS_DIM, RECIPES_DIR
from mt_factored.online.config import build_expert_config
from mt_factored.online.learner import RunningScale
from mt_factored.online.replay import EpisodeReplay
from mt_factored.online.trainer import EXPERT_NAME, STATE_NAME

CARTPOLE_BALANCE_ID = 8  # mt30 task id
EPISODE = 50  # agent steps per test episode

# A tiny model and a cheap MPPI so a few hundred steps take seconds on one CPU thread.
TINY = [
    "task=cartpole-balance",
    "model_size=cpu",
    "model.enc_dim=32",
    "model.mlp_dim=32",
    "model.latent_dim=16",
    "model.num_q=2",
    f"max_episode_steps={EPISODE}",
    f"seed_steps={2 * EPISODE}",
    "replay.batch_size=32",
    "planning.num_samples=32",
    "planning.num_elites=8",
    "planning.num_pi_trajs=4",
    "planning.iterations=2",
    "eval.episodes=2",
    "record.episodes_per_chunk=4",
    "device=cpu",
    "threads=1",
    "progress_bar=false",
]


def compose_cfg(run_dir: Path, *overrides: str):
    return cli.compose("expert_train", overrides=[*TINY, f"run_dir={run_dir}", *overrides])


def train(run_dir: Path, *overrides: str) -> dict:
    from mt_factored.train_expert import run

    return run(compose_cfg(run_dir, *overrides))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ recipe and sizes
@pytest.mark.parametrize(
    "size", sorted(p.stem for p in (RECIPES_DIR / "expert_size").glob("*.yaml"))
)
def test_every_size_composes(size: str) -> None:
    cfg = cli.compose("expert_train", overrides=[f"model_size={size}", "task=walker-stand"])
    config = build_expert_config(cfg.task, cfg.model_size, cfg.model)
    assert config.task_dim == 0 and config.num_tasks == 1
    assert (config.obs_dim, config.action_dim) == (24, 6)
    assert cfg.planning.num_samples == 512 and cfg.planning.iterations == 6  # TD-MPC2 defaults


def test_cpu_size_is_well_under_1m_parameters() -> None:
    from mt_factored.expert.model import TDMPC2Expert

    for task in ("cartpole-balance", "reacher-easy", "cup-catch", "walker-stand"):
        n = TDMPC2Expert(build_expert_config(task, "cpu")).num_learnable_parameters()
        assert n < 500_000, (task, n)


def test_published_size_matches_table() -> None:
    config = build_expert_config("walker-stand", "5M")
    assert (config.enc_dim, config.mlp_dim, config.latent_dim, config.num_q) == (256, 512, 512, 5)


def test_unknown_size_lists_the_sizes() -> None:
    with pytest.raises(ValueError, match="cpu"):
        build_expert_config("walker-stand", "7")


# ------------------------------------------------------------------ replay
def _episode(steps: int, offset: float, obs_dim: int = 3, action_dim: int = 2):
    obs = offset + np.arange(steps + 1, dtype=np.float32)[:, None].repeat(obs_dim, 1)
    action = offset + np.arange(1, steps + 1, dtype=np.float32)[:, None].repeat(action_dim, 1)
    reward = offset + np.arange(1, steps + 1, dtype=np.float32)
    return obs, action, reward


def test_replay_windows_stay_inside_episodes_and_align() -> None:
    buf = EpisodeReplay(3, 2, capacity=10_000, horizon=3, batch_size=512, seed=0)
    buf.add(*_episode(5, 0.0))
    buf.add(*_episode(7, 1000.0))
    assert buf.num_episodes == 2 and buf.num_transitions == 12
    assert buf.num_windows == (5 - 3 + 1) + (7 - 3 + 1)
    batch = buf.sample()
    obs, action, reward = batch["obs"], batch["action"], batch["reward"]
    assert obs.shape == (4, 512, 3) and action.shape == (3, 512, 2) and reward.shape == (3, 512)
    assert torch.isfinite(action).all() and torch.isfinite(reward).all()
    # obs[t], action[t+1], reward[t+1] of one episode: consecutive integers of one offset.
    steps = obs[1:, :, 0] - obs[:-1, :, 0]
    assert torch.equal(steps, torch.ones_like(steps))
    assert torch.equal(action[:, :, 0], obs[1:, :, 0]) and torch.equal(reward, obs[1:, :, 0])
    starts = (obs[0, :, 0] % 1000).long()
    assert set(starts[obs[0, :, 0] < 1000].tolist()) == {0, 1, 2}
    assert set(starts[obs[0, :, 0] >= 1000].tolist()) == {0, 1, 2, 3, 4}


def test_replay_capacity_drops_oldest_and_state_round_trips() -> None:
    buf = EpisodeReplay(3, 2, capacity=12, horizon=2, batch_size=64, seed=1)
    for i in range(3):
        buf.add(*_episode(5, 1000.0 * i))
    assert buf.num_episodes == 2 and buf.num_transitions == 10
    assert buf.sample()["obs"].min() >= 1000
    clone = EpisodeReplay(3, 2, capacity=12, horizon=2, batch_size=64, seed=99)
    clone.load_state_dict(buf.state_dict())
    for _ in range(3):
        a, b = buf.sample(), clone.sample()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_running_scale_tracks_percentile_range() -> None:
    scale = RunningScale(tau=0.5)
    x = torch.linspace(0, 100, 101).unsqueeze(-1)
    scale.update(x)  # range 90 -> 1 + 0.5 * (90 - 1)
    assert scale.value.item() == pytest.approx(45.5)
    assert scale(torch.tensor([91.0])).item() == pytest.approx(2.0)
    scale.update(torch.zeros(10, 1))  # range clamped to >= 1
    assert scale.value.item() == pytest.approx(23.25)


def test_one_update_moves_the_target_by_tau_and_leaves_eval_mode() -> None:
    from mt_factored.expert.model import TDMPC2Expert
    from mt_factored.online.config import LearnerConfig
    from mt_factored.online.learner import TDMPC2Learner

    torch.manual_seed(0)
    config = build_expert_config(
        "cartpole-balance", "cpu", {"enc_dim": 16, "mlp_dim": 16, "latent_dim": 16}
    )
    expert = TDMPC2Expert(config).eval()
    learner_cfg = dict(
        lr=1e-3, enc_lr_scale=0.3, pi_eps=1e-5, grad_clip_norm=20.0, rho=0.5,
        consistency_coef=20.0, reward_coef=0.1, value_coef=0.1, entropy_coef=1e-4,
        target_tau=0.25, scale_tau=0.01,
    )  # fmt: skip
    learner = TDMPC2Learner(expert, LearnerConfig(**learner_cfg))
    batch = {
        "obs": torch.randn(4, 8, 5),
        "action": torch.rand(3, 8, 1) * 2 - 1,
        "reward": torch.rand(3, 8),
    }
    target_before = {k: v.clone() for k, v in expert._target_Qs_params.named_buffers()}
    pi_before = [p.clone() for p in learner.pi_params]
    terms = learner.update(batch)
    online = dict(expert._Qs.params.named_parameters())
    for name, target in expert._target_Qs_params.named_buffers():
        expected = 0.75 * target_before[name] + 0.25 * online[name].detach()
        torch.testing.assert_close(target, expected)
    assert any(not torch.equal(a, b) for a, b in zip(pi_before, learner.pi_params, strict=True))
    assert not expert.training and learner.updates == 1
    assert all(np.isfinite(v) for v in terms.values())
    assert all(p.grad is None for p in expert.parameters())


def test_shipped_quickstart_assets_load() -> None:
    from mt_factored.constants import SHIPPED_CHECKPOINTS_DIR, SHIPPED_DATA_DIR
    from mt_factored.data.chunks import read_chunk
    from mt_factored.expert import load_single_task_expert
    from mt_factored.tasks import get_task_set

    mt30 = get_task_set("mt30")
    experts = sorted((SHIPPED_CHECKPOINTS_DIR / "quickstart").glob("*.pt"))
    if not experts:
        pytest.skip("no shipped quickstart experts in this checkout")
    for path in experts:
        task = path.stem
        expert = load_single_task_expert(path, task)
        assert expert.num_learnable_parameters() < 1_000_000
        assert path.stat().st_size < 20 * 2**20
        data = SHIPPED_DATA_DIR / "quickstart" / f"{task}.pt"
        chunk = read_chunk(data)
        assert (chunk["task"] == mt30.index(task)).all()
        assert chunk["obs"].shape[1:] == (501, MT_OBS_DIM)
        assert data.stat().st_size < 20 * 2**20


# ------------------------------------------------------------------ training runs
@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    """8 episodes of 50 steps: 100 seed steps, then 300 updates (+100 pre-training)."""
    run_dir = tmp_path_factory.mktemp("expert") / "run"
    summary = train(run_dir, f"steps={8 * EPISODE}", f"eval.every_steps={4 * EPISODE}")
    assert summary["finished"] and summary["step"] == 8 * EPISODE and summary["episode"] == 8
    return run_dir


@pytest.mark.slow
def test_short_run_reduces_world_model_losses(short_run: Path) -> None:
    rows = read_csv(short_run / "train.csv")
    assert [int(r["step"]) for r in rows] == [EPISODE * (i + 1) for i in range(8)]
    learned = [r for r in rows if r["consistency_loss"]]
    first, last = learned[0], learned[-1]
    # One update per step from the last seed step on, plus one per seed step (pre-training).
    assert int(last["updates"]) == (8 * EPISODE - 2 * EPISODE - 1) + 2 * EPISODE
    for key in ("consistency_loss", "reward_loss"):
        assert float(last[key]) < 0.7 * float(first[key]), (key, first[key], last[key])
    evals = read_csv(short_run / "eval.csv")
    assert [int(r["step"]) for r in evals] == [4 * EPISODE, 8 * EPISODE]
    assert all(np.isfinite(float(r["return"])) for r in evals)


@pytest.mark.slow
def test_checkpoint_loads_as_public_single_task_expert(short_run: Path) -> None:
    from mt_factored.expert import load_single_task_expert
    from mt_factored.expert.model import TDMPC2Expert

    state = torch.load(short_run / STATE_NAME, weights_only=False)
    expert = load_single_task_expert(short_run / EXPERT_NAME, "cartpole-balance")
    assert expert.config.mlp_dim == 32 and expert.config.num_q == 2
    own = expert.state_dict()
    assert set(own) == set(state["model"])
    assert all(torch.equal(own[k], state["model"][k]) for k in own)
    same = TDMPC2Expert.from_checkpoint(short_run / EXPERT_NAME, config=expert.config)
    assert all(torch.equal(same.state_dict()[k], own[k]) for k in own)
    raw = torch.load(short_run / EXPERT_NAME, weights_only=False)
    assert set(raw) == {"model"} and "_detach_Qs_params.0.weight" in raw["model"]


@pytest.mark.slow
def test_recorded_chunks_are_public_format(short_run: Path) -> None:
    from mt_factored.data.chunks import read_chunk

    chunks = sorted((short_run / "data").glob("chunk_*.pt"))
    assert [p.name for p in chunks] == ["chunk_0.pt", "chunk_1.pt"]
    data = read_chunk(chunks[0])
    assert data["obs"].shape == (4, EPISODE + 1, MT_OBS_DIM)
    assert data["action"].shape == (4, EPISODE + 1, MT_ACTION_DIM)
    assert data["reward"].shape == data["task"].shape == (4, EPISODE + 1)
    assert data["obs"].dtype == data["action"].dtype == data["reward"].dtype == torch.float32
    assert torch.isnan(data["action"][:, 0]).all() and torch.isnan(data["reward"][:, 0]).all()
    assert (
        torch.isfinite(data["action"][:, 1:]).all() and torch.isfinite(data["reward"][:, 1:]).all()
    )
    assert (data["task"].long() == CARTPOLE_BALANCE_ID).all()
    assert (data["obs"][..., 5:] == 0).all() and (data["action"][:, 1:, 1:] == 0).all()
    assert (data["action"][:, 1:, :1].abs() <= 1).all()
    # The returns in train.csv are the recorded rewards.
    rows = read_csv(short_run / "train.csv")
    sums = data["reward"][:, 1:].sum(dim=1)
    assert np.allclose(sums.numpy(), [float(r["return"]) for r in rows[:4]], rtol=1e-4)
    # The replay stores the same episodes (native dims).
    state = torch.load(short_run / STATE_NAME, weights_only=False)
    replay_obs = state["replay"]["obs"][: EPISODE + 1]
    assert np.array_equal(replay_obs, data["obs"][0, :, :5].numpy())


@pytest.mark.slow
def test_recorded_chunks_feed_the_window_dataset(short_run: Path) -> None:
    from mt_factored.data.stream import WindowDataset

    dataset = WindowDataset(short_run / "data", batch_size=16, horizon=3, seed=0)
    batch = dataset.batch(0)
    assert batch["obs"].shape == (16, 4, MT_OBS_DIM) and batch["action"].shape == (
        16,
        3,
        MT_ACTION_DIM,
    )
    assert torch.isfinite(batch["action"]).all() and torch.isfinite(batch["reward"]).all()
    assert (batch["task"] == CARTPOLE_BALANCE_ID).all()


@pytest.mark.slow
def test_resume_is_exact(tmp_path: Path) -> None:
    """N episodes straight == N/2, stop, re-run the same command for the rest."""
    args = (f"steps={6 * EPISODE}", f"eval.every_steps={3 * EPISODE}")
    straight = tmp_path / "straight"
    train(straight, *args)
    resumed = tmp_path / "resumed"
    first = train(resumed, *args, "stop.episodes=3")
    assert not first["finished"] and first["episode"] == 3
    second = train(resumed, *args, "stop.episodes=3")
    assert second["finished"] and second["episode"] == 6

    a = torch.load(straight / STATE_NAME, weights_only=False)
    b = torch.load(resumed / STATE_NAME, weights_only=False)
    assert a["learner"]["updates"] == b["learner"]["updates"] > 0
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in ("exp_avg", "exp_avg_sq"):
        for pa, pb in zip(
            a["learner"]["optim"]["state"].values(),
            b["learner"]["optim"]["state"].values(),
            strict=True,
        ):
            assert torch.equal(pa[key], pb[key])
    assert torch.equal(a["learner"]["scale"]["value"], b["learner"]["scale"]["value"])
    assert np.array_equal(a["replay"]["obs"], b["replay"]["obs"])
    drop_wall = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    for name in ("train.csv", "eval.csv"):
        assert drop_wall(read_csv(straight / name)) == drop_wall(read_csv(resumed / name))
    for chunk in ("chunk_0.pt", "chunk_1.pt"):
        ca = torch.load(straight / "data" / chunk, weights_only=False)
        cb = torch.load(resumed / "data" / chunk, weights_only=False)
        for key in ("obs", "action", "reward", "task"):
            torch.testing.assert_close(ca[key], cb[key], rtol=0, atol=0, equal_nan=True)

    # A finished run re-run with the same command does nothing and changes nothing.
    again = train(resumed, *args)
    assert again["finished"] and again["step"] == 6 * EPISODE
    c = torch.load(resumed / STATE_NAME, weights_only=False)
    assert all(torch.equal(b["model"][k], c["model"][k]) for k in b["model"])


def test_resume_refuses_another_run(tmp_path: Path) -> None:
    train(tmp_path, f"steps={2 * EPISODE}", "eval.at_end=false")
    with pytest.raises(ValueError, match="belongs to another run"):
        train(tmp_path, f"steps={4 * EPISODE}", "model.mlp_dim=48")


@pytest.mark.slow
def test_cli_stops_and_resumes_with_the_same_command(tmp_path: Path) -> None:
    """The real entry point: a stopped run continues when the same command is re-run."""
    import json
    import os
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "mt_factored.train_expert",
        *TINY,
        f"run_dir={tmp_path}",
        f"steps={2 * EPISODE}",
        "stop.episodes=1",
        "eval.at_end=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    summaries = []
    for _ in range(2):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        summaries.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert [s["episode"] for s in summaries] == [1, 2]
    assert [s["finished"] for s in summaries] == [False, True]
    assert [int(r["episode"]) for r in read_csv(tmp_path / "train.csv")] == [1, 2]

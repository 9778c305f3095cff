"""Online distillation in the expert trainer (Fac-TDMPC Appendix C.1): student folder, the
student learns, the expert is untouched by it, exact resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_expert_train import EPISODE, TINY, read_csv

from mt_factored import cli
from mt_factored.constants import ACTION, OBS, TASK
from mt_factored.distill import DistillConfig
from mt_factored.online.distill import (
    EVAL_FIELDS,
    STUDENT_DIR,
    build_student_config,
    student_batch,
    train_fields,
)
from mt_factored.online.replay import EpisodeReplay
from mt_factored.online.trainer import STATE_NAME

CARTPOLE_BALANCE_ID = 8  # mt30 task id
TASK_NAME = "cartpole-balance"

# A tiny student; the expert learns faster than test_expert_train's so that its rankings
# are informative when the student starts.
STUDENT = [
    "distill.enabled=true",
    "distill.batch_size=32",
    "distill.lr=1e-3",
    "distill.student.enc_dim=32",
    "distill.student.mlp_dim=32",
    "distill.student.latent_dim=16",
    "distill.student.task_dim=8",
    "distill.student.agent_dim=8",
]
EXPERT = ["learner.lr=1e-3"]
EPISODES = 10
START = 5 * EPISODE  # the student's first step: the expert has taken 150 updates by then
RUN = (f"steps={EPISODES * EPISODE}", "eval.every_steps=0", f"distill.start_step={START}")


def train(run_dir: Path, *overrides: str) -> dict:

    from mt_factored.train_expert import run

    cfg = cli.compose("expert_train", overrides=[*TINY, f"run_dir={run_dir}", *overrides])
    return run(cfg)


def _floats(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r[key]]


# ------------------------------------------------------------------ pieces
def test_student_config_native_and_padded() -> None:
    sizes = {"mlp_dim": 16, "latent_dim": 16}
    native, native_id = build_student_config(TASK_NAME, "native", sizes)
    assert (native.obs_dim, native.action_dim, native.num_tasks, native.num_agents) == (5, 1, 1, 1)
    assert native_id == 0 and native.mlp_dim == 16
    padded, padded_id = build_student_config(TASK_NAME, "mt30", sizes)
    assert (padded.obs_dim, padded.action_dim, padded.num_tasks) == (24, 6, 30)
    assert padded_id == CARTPOLE_BALANCE_ID and padded.task_names[padded_id] == TASK_NAME
    with pytest.raises(ValueError, match="student_task_set=native"):
        build_student_config("quadruped-walk", "mt30", sizes)


def test_student_batch_is_batch_major_and_zero_padded() -> None:
    obs = torch.randn(4, 7, 5)  # [H+1, B, o]
    action = torch.rand(3, 7, 1) * 2 - 1
    batch = student_batch({OBS: obs, ACTION: action}, CARTPOLE_BALANCE_ID, 24, 6)
    assert batch[OBS].shape == (7, 4, 24) and batch[ACTION].shape == (7, 3, 6)
    assert torch.equal(batch[OBS][..., :5], obs.transpose(0, 1))
    assert torch.equal(batch[ACTION][..., :1], action.transpose(0, 1))
    assert (batch[OBS][..., 5:] == 0).all() and (batch[ACTION][..., 1:] == 0).all()
    assert batch[TASK].dtype == torch.long and (batch[TASK] == CARTPOLE_BALANCE_ID).all()
    with pytest.raises(ValueError, match="do not fit"):
        student_batch({OBS: obs, ACTION: action}, 0, 4, 1)


def test_student_windows_leave_the_expert_batches_alone() -> None:
    """Drawing the student's windows (own batch size, own stream) does not change the
    expert's next batches."""
    rng = np.random.default_rng(0)
    replays = [EpisodeReplay(3, 2, 10_000, 3, batch_size=8, seed=5) for _ in range(2)]
    for _ in range(3):
        episode = (rng.normal(size=(21, 3)), rng.uniform(-1, 1, (20, 2)), rng.normal(size=20))
        for replay in replays:
            replay.add(*episode)
    student_rng = np.random.default_rng(1)
    for _ in range(3):
        windows = replays[1].sample(torch.device("cpu"), batch_size=16, rng=student_rng)
        assert windows[OBS].shape == (4, 16, 3)
        a, b = replays[0].sample(), replays[1].sample()
        assert a[OBS].shape == (4, 8, 3) and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ a run
@pytest.fixture(scope="module")
def distill_run(tmp_path_factory) -> tuple[Path, dict]:
    """10 episodes of 50 steps; the student takes one update per expert update from step 250."""
    run_dir = tmp_path_factory.mktemp("online_distill") / "run"
    summary = train(run_dir, *EXPERT, *STUDENT, *RUN)
    assert summary["finished"] and summary["episode"] == EPISODES
    return run_dir, summary


def test_run_writes_the_student_and_its_logs(distill_run) -> None:
    from mt_factored.student import FactoredStudent

    run_dir, summary = distill_run
    student = FactoredStudent.from_pretrained(run_dir / STUDENT_DIR)
    assert (student.config.obs_dim, student.config.action_dim) == (5, 1)  # native sizes
    assert student.config.task_names == (TASK_NAME,) and student.config.mlp_dim == 32
    state = torch.load(run_dir / STATE_NAME, weights_only=False)["distill"]
    saved = load_file(run_dir / STUDENT_DIR / "model.safetensors")
    assert set(saved) == set(state["student"])
    assert all(torch.equal(saved[k], state["student"][k]) for k in saved)
    # One student update per expert update from START on.
    assert state["updates"] == summary["student_updates"] == EPISODES * EPISODE - START

    rows = read_csv(run_dir / "train.csv")
    assert all(field in rows[0] for field in train_fields(DistillConfig()))
    logged = [int(r["step"]) for r in rows if r["distill_loss"]]
    assert logged == [START + EPISODE * (i + 1) for i in range(EPISODES - START // EPISODE)]
    assert int(rows[-1]["distill_updates"]) == state["updates"]
    evals = read_csv(run_dir / "eval.csv")
    assert [int(r["step"]) for r in evals] == [EPISODES * EPISODE]
    assert all(field in evals[0] for field in EVAL_FIELDS)
    assert np.isfinite(float(evals[0]["student_return"])) and float(evals[0]["return"]) > 0
    assert summary["student_eval"] == pytest.approx(float(evals[0]["student_return"]), rel=1e-5)


def test_student_learns_to_rank_like_the_expert(distill_run) -> None:
    """The logged distillation loss falls and the top-1 agreement rises; on the final
    expert the trained student's loss is far below a fresh student's."""
    from mt_factored.distill import DistillConfig, distill_losses
    from mt_factored.expert import load_single_task_expert
    from mt_factored.student import FactoredStudent

    run_dir, _ = distill_run
    rows = read_csv(run_dir / "train.csv")
    loss, top1 = _floats(rows, "distill_loss"), _floats(rows, "distill_reward_top1")
    assert np.mean(loss[-2:]) < 0.4 * np.mean(loss[:2]), loss
    assert np.mean(top1[-2:]) > np.mean(top1[:2]) + 0.1, top1

    state = torch.load(run_dir / STATE_NAME, weights_only=False)
    expert = load_single_task_expert(run_dir / "expert.pt", TASK_NAME).eval()
    trained = FactoredStudent.from_pretrained(run_dir / STUDENT_DIR)
    torch.manual_seed(0)
    fresh = FactoredStudent(trained.config)
    replay = EpisodeReplay(5, 1, 100_000, 3, batch_size=256, seed=0)
    replay.load_state_dict(state["replay"])
    batch = student_batch(replay.sample(), 0, 5, 1)
    cfg = DistillConfig()
    with torch.no_grad():
        losses = [
            float(distill_losses(s, expert, batch, cfg, torch.Generator().manual_seed(0))["loss"])
            for s in (trained, fresh)
        ]
    assert losses[0] < 0.25 * losses[1], losses


def test_the_expert_does_not_see_the_student(distill_run, tmp_path: Path) -> None:
    """The same run without distillation trains the same expert, bit for bit, and writes
    nothing of the student."""
    run_dir, _ = distill_run
    plain = tmp_path / "plain"
    summary = train(plain, *EXPERT, *RUN)
    assert "student_eval" not in summary and not (plain / STUDENT_DIR).exists()
    a = torch.load(run_dir / STATE_NAME, weights_only=False)
    b = torch.load(plain / STATE_NAME, weights_only=False)
    assert "distill" in a and "distill" not in b and "distill" not in b["identity"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert np.array_equal(a["replay"]["obs"], b["replay"]["obs"])
    assert a["replay"]["rng"] == b["replay"]["rng"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    rows_a, rows_b = read_csv(run_dir / "train.csv"), read_csv(plain / "train.csv")
    assert set(rows_b[0]) & set(train_fields(DistillConfig())) == set()
    assert set(read_csv(plain / "eval.csv")[0]) & set(EVAL_FIELDS) == set()
    expert_cols = [k for k in rows_b[0] if k != "wall_s"]
    assert [[r[k] for k in expert_cols] for r in rows_a] == [
        [r[k] for k in expert_cols] for r in rows_b
    ]


def test_resume_is_exact(distill_run, tmp_path: Path) -> None:
    """Stopped at an episode boundary after the student started, then re-run: the student
    (weights, optimiser, streams) ends exactly where the uninterrupted run's did."""
    straight, _ = distill_run
    resumed = tmp_path / "resumed"
    first = train(resumed, *EXPERT, *STUDENT, *RUN, "stop.episodes=7")
    assert not first["finished"] and first["student_updates"] == 7 * EPISODE - START
    second = train(resumed, *EXPERT, *STUDENT, *RUN)
    assert second["finished"]

    a = torch.load(straight / STATE_NAME, weights_only=False)["distill"]
    b = torch.load(resumed / STATE_NAME, weights_only=False)["distill"]
    assert a["updates"] == b["updates"] > 0 and a["windows_rng"] == b["windows_rng"]
    for key in a["student"]:
        assert torch.equal(a["student"][key], b["student"][key]), key
    for pa, pb in zip(a["optim"]["state"].values(), b["optim"]["state"].values(), strict=True):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"])
        assert torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])
    drop_wall = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    for name in ("train.csv", "eval.csv"):
        assert drop_wall(read_csv(straight / name)) == drop_wall(read_csv(resumed / name))
    sa = load_file(straight / STUDENT_DIR / "model.safetensors")
    sb = load_file(resumed / STUDENT_DIR / "model.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_refuses_another_student(tmp_path: Path) -> None:
    short = (f"steps={2 * EPISODE}", "eval.at_end=false")
    train(tmp_path / "a", *STUDENT, *short)
    with pytest.raises(ValueError, match="belongs to another run"):
        train(tmp_path / "a", *STUDENT, *short, "distill.student.mlp_dim=48")
    train(tmp_path / "b", *short)  # no student: switching one on is another run
    with pytest.raises(ValueError, match="belongs to another run"):
        train(tmp_path / "b", *STUDENT, *short)


def test_padded_mt30_student_trains_and_plans(tmp_path: Path) -> None:
    from mt_factored.student import FactoredStudent

    summary = train(
        tmp_path,
        *STUDENT,
        f"steps={3 * EPISODE}",
        "eval.every_steps=0",
        "eval.episodes=1",
        "distill.student_task_set=mt30",
        f"distill.export={tmp_path / 'export'}",
    )
    # Start at the seed steps (the default): one student update per expert update, the
    # seed-data pre-training included.
    expert_updates = torch.load(tmp_path / STATE_NAME, weights_only=False)["learner"]["updates"]
    assert summary["student_updates"] == expert_updates > 2 * EPISODE
    assert np.isfinite(summary["student_eval"])
    student = FactoredStudent.from_pretrained(tmp_path / STUDENT_DIR)
    exported = FactoredStudent.from_pretrained(tmp_path / "export")
    assert all(torch.equal(v, exported.state_dict()[k]) for k, v in student.state_dict().items())
    assert (student.config.obs_dim, student.config.action_dim, student.config.num_tasks) == (
        24,
        6,
        30,
    )

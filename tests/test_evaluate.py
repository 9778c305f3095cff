"""`python -m mt_factored.evaluate` on checkpoints the tests make: tables, JSON, video."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tiny import run_cli, write_tiny_expert, write_tiny_student

FAST_PLANNING = [
    "planning.num_samples=32",
    "planning.num_elites=4",
    "planning.num_pi_trajs=4",
    "planning.iterations=2",
]


def evaluate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli("mt_factored.evaluate", *args, cwd=cwd)


def test_evaluate_expert_prints_table_and_writes_json(tmp_path: Path) -> None:
    expert = write_tiny_expert(tmp_path / "expert.pt")
    out = evaluate(
        f"expert={expert}",
        "expert_model_size=auto",
        "tasks=[cartpole-balance,reacher-easy]",
        "episodes=2",
        "max_steps=15",
        "latency_repeats=2",
        f"out={tmp_path / 'results.json'}",
        f"out_dir={tmp_path / 'eval'}",
        *FAST_PLANNING,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| task | return (mean ± std) | episodes | plan ms/step |" in out.stdout
    assert "| cartpole-balance |" in out.stdout and "| reacher-easy |" in out.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    cartpole = results["expert"]["cartpole-balance"]
    assert len(cartpole["returns"]) == 2 and cartpole["plan_ms_single_env"] > 0
    # 15 steps of at most 2 reward each.
    assert all(0 <= r <= 30 for r in cartpole["returns"])


def test_evaluate_writes_video_of_first_episode(tmp_path: Path) -> None:
    pytest.importorskip("imageio_ffmpeg", reason="video needs the video extra")
    expert = write_tiny_expert(tmp_path / "expert.pt")
    out = evaluate(
        f"expert={expert}",
        "expert_model_size=auto",
        "tasks=[cartpole-balance]",
        "episodes=1",
        "max_steps=10",
        "latency_repeats=1",
        "video=true",
        f"out_dir={tmp_path / 'eval'}",
        *FAST_PLANNING,
        cwd=tmp_path,
    )
    if out.returncode != 0 and "EGL" in out.stderr:
        pytest.skip("no headless OpenGL (EGL) on this machine")
    assert out.returncode == 0, out.stderr[-3000:]
    video = tmp_path / "eval" / "expert-cartpole-balance.mp4"
    assert video.is_file() and video.stat().st_size > 1000


def test_side_by_side_video_and_filmstrip(tmp_path: Path) -> None:
    """Student and expert, same env seed, in one mp4 per task, and a filmstrip PNG."""
    pytest.importorskip("imageio_ffmpeg", reason="video needs the video extra")
    import imageio.v2 as imageio

    expert = write_tiny_expert(tmp_path / "expert.pt")
    student = write_tiny_student(tmp_path / "student")
    out = evaluate(
        f"expert={expert}",
        "expert_model_size=auto",
        f"student={student}",
        "tasks=[cartpole-balance]",
        "episodes=1",
        "max_steps=8",
        "latency_repeats=0",
        "video=true",
        "video_layout=side_by_side",
        "filmstrip=4",
        "progress_bar=false",
        f"out_dir={tmp_path / 'eval'}",
        *FAST_PLANNING,
        cwd=tmp_path,
    )
    if out.returncode != 0 and "EGL" in out.stderr:
        pytest.skip("no headless OpenGL (EGL) on this machine")
    assert out.returncode == 0, out.stderr[-3000:]
    folder = tmp_path / "eval"
    one = imageio.mimread(folder / "student-cartpole-balance.mp4")
    both = imageio.mimread(folder / "cartpole-balance.mp4")
    assert len(both) == len(one) == 8
    assert both[0].shape[1] == 2 * one[0].shape[1] and both[0].shape[0] == one[0].shape[0]
    strip = imageio.imread(folder / "cartpole-balance-filmstrip.png")
    assert strip.shape[0] == 2 * (one[0].shape[0] // 2)  # a row per model, half size
    assert strip.shape[1] == 4 * (one[0].shape[1] // 2)
    assert "━" not in out.stdout + out.stderr  # progress_bar=false: no bars


def test_video_options_need_video(tmp_path: Path) -> None:
    expert = write_tiny_expert(tmp_path / "expert.pt")
    out = evaluate(f"expert={expert}", "filmstrip=3", f"out_dir={tmp_path}", cwd=tmp_path)
    assert out.returncode == 2 and "need video=true" in out.stderr


def test_evaluate_needs_a_model(tmp_path: Path) -> None:
    out = evaluate("tasks=[cartpole-balance]", f"out_dir={tmp_path}", cwd=tmp_path)
    assert out.returncode != 0
    assert "nothing to evaluate: pass expert=... and/or student=..." in out.stderr


def test_comparison_table_names_budgets_and_equal_budget_speedup() -> None:
    from mt_factored.planning.episodes import EpisodeStats
    from mt_factored.planning.report import comparison_table

    def stats(returns, ms, budget, **extra):
        return EpisodeStats(
            "walker-stand",
            returns,
            ms,
            1,
            plan_ms_single_env=ms,
            extra={"budget": budget, **extra},
        )

    expert = {"walker-stand": stats([900.0, 1000.0], 100.0, (512, 6))}
    student = {
        "walker-stand": stats([950.0], 5.0, (128, 2), plan_ms_at_expert_budget=25.0),
    }
    lines = comparison_table(student, expert).splitlines()
    assert lines[0] == (
        "| task | expert return | student return | ratio | expert ms/step (512x6) | "
        "student ms/step (128x2) | speedup | student ms/step (512x6) | speedup at equal budget |"
    )
    assert lines[2] == (
        "| walker-stand | 950.0 ± 50.0 | 950.0 ± 0.0 | 1.00 | 100.0 | 5.0 | 20x | 25.0 | 4x |"
    )
    assert lines[3].startswith("| **mean** | | | 1.00 |")
    # Same budget for both: no equal-budget columns.
    del student["walker-stand"].extra["plan_ms_at_expert_budget"]
    assert "equal budget" not in comparison_table(student, expert)

"""Planning-budget sweep: grid, elite scaling, the 95% rule, resume, and the CLI end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny import run_cli, write_tiny_expert, write_tiny_student

from mt_factored import cli
from mt_factored.analysis.budget.grid import Budget, BudgetScaling, budget_config, build_grid
from mt_factored.analysis.budget.plots import frontier
from mt_factored.analysis.budget.results import SweepFile, SweepMismatchError
from mt_factored.analysis.budget.selection import (
    keeps_return,
    select_budgets,
    selection_summary,
    smallest_budget,
)
from mt_factored.planning.base import MPPIConfig

REF = Budget(512, 6)


def budgets(returns: dict[str, float]) -> dict[Budget, float]:
    return {Budget.parse(label): r for label, r in returns.items()}


# ------------------------------------------------------------------------------ grid
def test_grid_is_every_pair_cheapest_first() -> None:
    grid = build_grid([64, 32], [2, 1])
    # 64x1 and 32x2 cost 64 evaluations each: fewer (sequential) iterations first.
    assert [b.label for b in grid] == ["32x1", "64x1", "32x2", "64x2"]


@pytest.mark.parametrize(
    "samples, iterations, message",
    [
        ([], [1], "grid.num_samples is empty"),
        ([32, 32], [1], r"grid.num_samples repeats \[32\]"),
        ([32, 0], [1], r"ints >= 1; bad entries: \[0\]"),
        ([32], [1.5], r"grid.iterations must hold ints >= 1; bad entries: \[1.5\]"),
        ([32], [True], "bad entries"),
        (32, [1], "must be a list of ints"),
        ("32", [1], "must be a list of ints"),
    ],
)
def test_grid_rejects_bad_input(samples, iterations, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_grid(samples, iterations)


def test_budget_labels_round_trip_and_reject_garbage() -> None:
    assert Budget.parse("128x2") == Budget(128, 2) and Budget(128, 2).label == "128x2"
    for bad in ("128", "x2", "128x", "axb", "12.5x2"):
        with pytest.raises(ValueError, match="bad budget label"):
            Budget.parse(bad)
    with pytest.raises(ValueError, match="iterations must be an int >= 1"):
        Budget(32, 0)


def test_budget_config_scales_elites_and_policy_trajectories() -> None:
    # The reference budget is exactly the paper's (Table 2) MPPI settings.
    assert budget_config(REF) == MPPIConfig()
    small = budget_config(Budget(32, 2))
    assert (small.num_samples, small.iterations, small.num_elites, small.num_pi_trajs) == (
        32,
        2,
        4,
        4,
    )
    assert budget_config(Budget(256, 1)).num_pi_trajs == 24  # capped at max_pi_trajs
    tiny = budget_config(Budget(8, 1))
    assert (tiny.num_elites, tiny.num_pi_trajs) == (2, 1)  # min_elites floor
    assert budget_config(Budget(64, 1), policy_prior=False).num_pi_trajs == 0
    base = MPPIConfig(horizon=5, temperature=0.25)
    assert budget_config(Budget(64, 1), base).horizon == 5
    with pytest.raises(ValueError, match="fewer than min_elites=2"):
        budget_config(Budget(1, 1))
    with pytest.raises(ValueError, match="elite_fraction must be in"):
        BudgetScaling(elite_fraction=0.0)


# -------------------------------------------------------------------- the 95% rule
def test_smallest_budget_takes_the_cheapest_that_keeps_95_percent() -> None:
    returns = budgets(
        {"512x6": 100.0, "32x1": 80.0, "32x2": 95.0, "64x1": 94.9, "128x2": 99.0, "64x4": 97.0}
    )
    # 32x2 keeps exactly 95% (the boundary counts); 64x1 costs the same but misses it.
    assert smallest_budget(returns, REF) == Budget(32, 2)
    assert smallest_budget(returns, REF, fraction=0.99) == Budget(128, 2)


def test_smallest_budget_breaks_cost_ties_by_fewer_iterations() -> None:
    returns = budgets({"512x6": 100.0, "32x2": 99.0, "64x1": 98.0, "16x4": 100.0})
    assert smallest_budget(returns, REF) == Budget(64, 1)


def test_no_cheaper_budget_keeps_the_return() -> None:
    # A budget dearer than the reference never counts, however good.
    returns = budgets({"512x6": 100.0, "32x1": 50.0, "256x6": 94.0, "1024x6": 150.0})
    assert smallest_budget(returns, REF) is None
    with pytest.raises(ValueError, match="no return at the reference budget 512x6"):
        smallest_budget(budgets({"32x1": 1.0}), REF)
    with pytest.raises(ValueError, match="fraction must be in"):
        smallest_budget(returns, REF, fraction=1.5)


def test_keeps_return_reads_negative_returns_as_losses() -> None:
    assert keeps_return(-104.0, -100.0, 0.95) and not keeps_return(-106.0, -100.0, 0.95)
    assert keeps_return(0.0, 0.0, 0.95) and not keeps_return(float("nan"), 1.0, 0.95)


def test_select_budgets_per_task_mean_and_all_tasks() -> None:
    returns = {
        "a": budgets({"512x6": 100.0, "32x1": 100.0, "64x1": 50.0, "128x2": 96.0}),
        "b": budgets({"512x6": 100.0, "32x1": 50.0, "64x1": 100.0, "128x2": 96.0}),
    }
    chosen = select_budgets(returns, REF)
    assert chosen["a"] == Budget(32, 1) and chosen["b"] == Budget(64, 1)
    # Task means of 32x1 and 64x1 are 75: only 128x2 keeps the mean and both tasks.
    assert chosen["mean"] == Budget(128, 2) and chosen["all_tasks"] == Budget(128, 2)

    returns["a"][Budget(128, 2)] = 90.0  # mean 93 < 95 and task a < 95
    chosen = select_budgets(returns, REF)
    assert chosen["mean"] is None and chosen["all_tasks"] is None


def cell(mean: float, ms: float) -> dict:
    return {"mean": mean, "std": 0.0, "plan_ms": ms}


def test_selection_summary_reports_ratio_and_speedup() -> None:
    cells = {
        "512x6": {"a": cell(100.0, 60.0), "b": cell(200.0, 40.0)},
        "32x1": {"a": cell(97.0, 3.0), "b": cell(100.0, 2.0)},
        "128x2": {"a": cell(99.0, 12.0), "b": cell(196.0, 8.0)},
    }
    summary = selection_summary(cells, ["a", "b"], REF)
    assert summary["budgets"] == {"a": "32x1", "b": "128x2", "mean": "128x2", "all_tasks": "128x2"}
    a = summary["rows"]["a"]
    assert a["ratio"] == pytest.approx(0.97) and a["speedup"] == pytest.approx(20.0)
    mean = summary["rows"]["mean"]
    assert mean["return"] == pytest.approx(147.5) and mean["reference_return"] == 150.0
    assert mean["speedup"] == pytest.approx(50.0 / 10.0)
    with pytest.raises(ValueError, match=r"no result at the reference budget 512x6 for \['c'\]"):
        selection_summary(cells, ["a", "c"], REF)


def test_latency_plot_frontier_keeps_points_that_beat_every_faster_one() -> None:
    ms = np.array([3.0, 1.0, 2.0, 4.0, 5.0])
    ret = np.array([5.0, 1.0, 3.0, 2.0, 5.0])
    assert frontier(ms, ret).tolist() == [1, 2, 0]  # 4 ms is worse, 5 ms only ties


# --------------------------------------------------------------------- resume file
SETTINGS = {"episodes": 2, "seed": 0, "planning": {"horizon": 3}}


def test_sweep_file_resumes_and_refuses_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "sweep" / "results.json"
    sweep = SweepFile(path, SETTINGS)
    sweep.add_model("student", {"kind": "student", "path": "a.ckpt"})
    sweep.put("student", Budget(32, 1), "cartpole-balance", cell(10.0, 1.0))
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp files left

    again = SweepFile(path, SETTINGS)
    assert again.has("student", Budget(32, 1), "cartpole-balance")
    assert not again.has("student", Budget(32, 2), "cartpole-balance")
    assert not again.has("expert", Budget(32, 1), "cartpole-balance")
    assert again.cell("student", Budget(32, 1), "cartpole-balance")["mean"] == 10.0
    assert again.returns("student", ["cartpole-balance"]) == {
        "cartpole-balance": {Budget(32, 1): 10.0}
    }

    with pytest.raises(SweepMismatchError, match=r"episodes: 2 -> 3"):
        SweepFile(path, {**SETTINGS, "episodes": 3})
    with pytest.raises(SweepMismatchError, match="model 'student' was 'a.ckpt', now 'b.ckpt'"):
        again.add_model("student", {"kind": "student", "path": "b.ckpt"})


# ------------------------------------------------------------------------ end to end
def sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli("mt_factored.budget_sweep", *args, cwd=cwd)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    student = write_tiny_student(root / "student", agent_dim=4, mlp_dim=16)
    return student, write_tiny_expert(root / "expert.pt")


def common_args(models: tuple[Path, Path], out_dir: Path) -> list[str]:
    student, expert = models
    return [
        f"students={{tiny: {student}}}",
        f"expert={expert}",
        "expert_model_size=auto",
        "tasks=[cartpole-balance,reacher-easy]",
        "episodes=2",
        "max_steps=4",
        "latency_repeats=1",
        "reference.num_samples=16",
        "reference.iterations=2",
        "grid.iterations=[1,2]",
        f"out_dir={out_dir}",
    ]


def test_sweep_writes_table_json_plots_and_resumes(models, tmp_path: Path) -> None:
    full = sweep(*common_args(models, tmp_path / "full"), "grid.num_samples=[8,16]", cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]
    assert "smallest budget keeping >= 95% of the return at 16x2" in full.stdout
    assert "| **16x2** |" in full.stdout
    data = json.loads((tmp_path / "full" / "budget_sweep.json").read_text())
    assert set(data["models"]) == {"tiny", "expert"}
    for model in ("tiny", "expert"):
        assert set(data["cells"][model]) == {"8x1", "16x1", "8x2", "16x2"}
        for by_task in data["cells"][model].values():
            assert set(by_task) == {"cartpole-balance", "reacher-easy"}
            for c in by_task.values():
                assert len(c["returns"]) == 2 and c["plan_ms"] > 0
        assert set(data["selection"][model]["budgets"]) == {
            "cartpole-balance",
            "reacher-easy",
            "mean",
            "all_tasks",
        }
    assert data["cells"]["tiny"]["8x1"]["reacher-easy"]["num_elites"] == 2
    for name in ("budget_return_vs_ms.png", "budget_grid.png"):
        with Image.open(tmp_path / "full" / name) as image:
            assert image.size[0] > 300 and image.size[1] > 200

    # Stop after part of the grid, tamper with a finished cell, then finish the sweep.
    part_dir = tmp_path / "part"
    part = sweep(
        *common_args(models, part_dir),
        "grid.num_samples=[8,16]",
        "grid.iterations=[1]",
        "reference.iterations=1",
        cwd=tmp_path,
    )
    assert part.returncode == 0, part.stderr[-3000:]
    results = part_dir / "budget_sweep.json"
    saved = json.loads(results.read_text())
    saved["cells"]["tiny"]["8x1"]["cartpole-balance"]["mean"] = -123.0
    results.write_text(json.dumps(saved))
    rest = sweep(*common_args(models, part_dir), "grid.num_samples=[8,16]", cwd=tmp_path)
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "8 cells already done, 8 to run" in rest.stdout + rest.stderr
    resumed = json.loads(results.read_text())
    assert resumed["cells"]["tiny"]["8x1"]["cartpole-balance"]["mean"] == -123.0  # skipped
    # Every cell is seeded on its own: resumed cells equal the uninterrupted sweep's.
    for model in ("tiny", "expert"):
        for label, by_task in data["cells"][model].items():
            for task, c in by_task.items():
                if (model, label, task) != ("tiny", "8x1", "cartpole-balance"):
                    assert resumed["cells"][model][label][task]["returns"] == c["returns"]


def compose_sweep(*overrides: str):
    return cli.compose(config_name="budget_sweep", overrides=["out_dir=/nonexistent", *overrides])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["grid.num_samples=[]"], "grid.num_samples is empty"),
        (["grid.iterations=[1,1]"], r"grid.iterations repeats \[1\]"),
        (["grid.num_samples=[32,64]"], "the grid must contain the reference budget 512x6"),
        (["grid.num_samples=[1,512]"], "1 samples is fewer than min_elites=2"),
        (["tasks=[]"], "tasks must be a non-empty list"),
        ([], "nothing to sweep: pass students=... and/or expert=..."),
        (["students=[a.ckpt,b.ckpt]"], "students must be a path or {label: path, ...}"),
        (["students={expert: a.ckpt}", "expert=b.pt"], "'expert' is the expert's label"),
    ],
)
def test_bad_sweep_input_fails_before_running(overrides, message) -> None:
    from mt_factored.budget_sweep import run

    with pytest.raises(ValueError, match=message):
        run(compose_sweep(*overrides))

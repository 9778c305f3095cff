"""One command-line convention: Hydra's key=value grammar, one --help with every key's
documentation, one error format (one line, exit status 2; HYDRA_FULL_ERROR=1: the
traceback), a misspelt key refused when the config is composed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny import run_cli

from mt_factored import cli
from mt_factored.constants import RECIPES_DIR
from mt_factored.distill import DistillConfig
from mt_factored.errors import InputError
from mt_factored.schema import COMMANDS
from mt_factored.student.config import StudentSpec
from mt_factored.training.config import TrainConfig

ERROR = "error: "


def one_error_line(stderr: str) -> str:
    """The error line of a failed command; it must be the only line that says error."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith(ERROR)]
    assert len(lines) == 1, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


# ---------------------------------------------------------------------- compose time
@pytest.mark.parametrize(
    "override, key",
    [
        ("student.latnet_dim=64", "latnet_dim"),
        ("distill.rhoo=1", "rhoo"),
        ("student={latnet_dim: 64}", "latnet_dim"),
        ("trainer.max_step=10", "max_step"),
        ("eval.student_planning={num_sample: 32}", "num_sample"),
    ],
)
def test_a_misspelt_key_fails_at_compose_time(override: str, key: str) -> None:
    with pytest.raises(Exception) as failure:
        cli.compose("train", ["name=x", override])
    assert f"Key '{key}' not in" in cli.config_error(failure.value)


def test_a_misspelt_key_in_a_recipe_fails_at_compose_time(tmp_path: Path) -> None:
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "typo.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /recipe/smoke\n  - _self_\nstudent:\n  latnet_dim: 64\n"
    )
    search = f"hydra.searchpath=[file://{tmp_path}]"
    with pytest.raises(Exception) as failure:
        cli.compose("train", ["name=x", search, "recipe=typo"])
    message = cli.config_error(failure.value)
    assert "Key 'latnet_dim' not in 'StudentSpec'" in message and "student.latnet_dim" in message


@pytest.mark.parametrize(
    "override, words",
    [
        ("loader.batch_size=abc", "could not be converted to Integer"),
        ("distill.normalize=batch", "Invalid value 'batch'"),
        ("eval.episodes=two", "could not be converted to Integer"),
        ("student.partitions={walker-stand: [[a]]}", "incompatible with type hint 'int'"),
    ],
)
def test_a_value_of_the_wrong_type_fails_at_compose_time(override: str, words: str) -> None:
    with pytest.raises(Exception) as failure:
        cli.compose("train", ["name=x", override])
    assert words in cli.config_error(failure.value)


def test_typed_dicts_take_new_keys_without_plus() -> None:
    cfg = cli.compose(
        "train",
        [
            "name=x",
            "student.partitions={walker-stand: [[0, 3], [1], [2], [4], [5]]}",
            "distill.terms.consistency=0.5",
            "loader.task_weights={cartpole-balance: 2.0}",
        ],
    )
    assert cfg.student.partitions["walker-stand"] == [[0, 3], [1], [2], [4], [5]]
    assert cfg.distill.terms == {
        "reward_kl": 0.5,
        "value_kl": 0.1,
        "policy": 1.0,
        "consistency": 0.5,
    }
    assert cfg.loader.task_weights == {"cartpole-balance": 2.0}


def test_the_yaml_holds_only_what_differs_from_the_dataclasses() -> None:
    """The default options of the groups are the dataclasses themselves."""
    cfg = cli.compose("train", ["name=x", "recipe=dmcontrol30"])
    assert dict(cfg.student) == dataclasses.asdict(StudentSpec())
    distill = {**dataclasses.asdict(DistillConfig()), "normalize": DistillConfig().normalize}
    assert {k: cfg.distill[k] for k in distill} == {
        **distill,
        "noise_std": list(distill["noise_std"]),
    }
    yamls = {p.relative_to(RECIPES_DIR).as_posix() for p in RECIPES_DIR.rglob("*.yaml")}
    assert not {"model/default.yaml", "distill/paper.yaml", "planning/default.yaml"} & yamls


def test_every_command_composes_against_its_schema() -> None:
    for name, cls in COMMANDS.items():
        overrides = ["name=x"] if issubclass(cls, TrainConfig) else []
        assert OmegaConf.get_type(cli.compose(name, overrides)) is cls, name


# ------------------------------------------------------------------------- help
def test_help_lists_every_key_with_its_default_and_meaning() -> None:
    text = cli.help_text("mt_factored.train", "train", ["recipe=quickstart"], "Distill.")
    assert text.startswith("usage: python -m mt_factored.train")
    assert "recipe: quickstart  (options: " in text and "smoke" in text
    assert "  batch_size: 256\n" in text  # the recipe's value, not the default
    assert "# Windows per optimizer step (per process)." in text  # the field's docstring
    assert "# K: noisy copies of each window's action sequence." in text
    assert "  num_noise_samples: 10" in text
    assert "HYDRA_FULL_ERROR=1" in text


def test_field_docs_are_read_from_the_dataclasses() -> None:
    docs = cli.field_docs(TrainConfig)
    assert docs["seed"].startswith("Seeds torch")
    eval_docs = cli.field_docs(type(TrainConfig().eval))
    assert "Episodes per task" in eval_docs["episodes"]  # inherited from EpisodeConfig
    planning = cli.field_docs(type(TrainConfig().eval.student_planning))
    assert planning["num_samples"].startswith("Trajectories sampled")  # a partial config


# ------------------------------------------------------------------ one error format
def test_project_errors_become_one_line() -> None:
    error = InputError("a value that cannot be used\nover two lines", "give another one")
    assert error.one_line() == "a value that cannot be used over two lines — give another one"
    assert cli.project_error(RuntimeError("wrapped")) is None
    try:
        try:
            raise error
        except InputError as inner:
            raise ValueError("resolving ${asset:x}") from inner
    except ValueError as outer:
        assert cli.project_error(outer) is error


@pytest.mark.slow
def test_train_and_evaluate_fail_with_one_line(tmp_path: Path) -> None:
    typo = run_cli("mt_factored.train", "student.latnet_dim=64", cwd=tmp_path)
    assert typo.returncode == 2
    line = one_error_line(typo.stderr)
    assert "Key 'latnet_dim' not in 'StudentSpec'" in line and " — " in line
    assert "python -m mt_factored.train --help" in line

    missing = run_cli(
        "mt_factored.train", f"expert={tmp_path / 'none.pt'}", f"run_dir={tmp_path}", cwd=tmp_path
    )
    assert missing.returncode == 2
    assert "does not exist — The public multi-task experts live" in one_error_line(missing.stderr)

    nothing = run_cli("mt_factored.evaluate", f"out_dir={tmp_path}", cwd=tmp_path)
    assert nothing.returncode == 2
    assert "nothing to evaluate: pass expert=... and/or student=..." in one_error_line(
        nothing.stderr
    )

    full = run_cli(
        "mt_factored.evaluate", f"out_dir={tmp_path}", cwd=tmp_path, env={cli.FULL_ERROR: "1"}
    )
    assert full.returncode != 0 and "Traceback" in full.stderr

    helped = run_cli("mt_factored.evaluate", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "# Episodes per task" in helped.stdout
    assert "latency_repeats: 20" in helped.stdout  # evaluate.yaml's value


@pytest.mark.slow
def test_data_and_hub_fail_with_one_line(tmp_path: Path) -> None:
    bad = run_cli("mt_factored.data", "prepare", "sorce=hub", cwd=tmp_path)
    assert bad.returncode == 2
    assert "Key 'sorce' not in 'PrepareConfig'" in one_error_line(bad.stderr)
    gone = run_cli("mt_factored.data", "info", str(tmp_path / "none"), cwd=tmp_path)
    assert gone.returncode == 2 and "does not exist" in one_error_line(gone.stderr)
    push = run_cli(
        "mt_factored.hub", "push", f"checkpoint={tmp_path / 'x.ckpt'}", "repo_id=me/x", "--dry-run",
        cwd=tmp_path,
    )  # fmt: skip
    assert push.returncode == 2 and "does not exist" in one_error_line(push.stderr)
    repo = run_cli("mt_factored.hub", "push", "checkpoint=x", "repo_id=noslash", cwd=tmp_path)
    assert repo.returncode == 2 and "repo_id must be ORG/NAME" in one_error_line(repo.stderr)
    helped = run_cli("mt_factored.hub", "push", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "dry_run: false" in helped.stdout
    assert "# Write the folder and list the files of the commit" in helped.stdout
    assert not list(tmp_path.iterdir())  # data and hub commands write no run folder or log

"""The short cases of benchmarks/faults.py, on the real commands (subprocesses, one thread).

The kill -9 cases, the full disk, a read-only folder, a corrupt last.ckpt, concurrent runs and
the tampered experts take longer than a test should (several trainings each): they run in
``python benchmarks/faults.py`` (README "Faults"); their in-process counterparts are in
tests/test_reliability.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from benchmarks import faults


@pytest.fixture
def workspace(tmp_path: Path) -> faults.Workspace:
    return faults.Workspace(tmp_path)


@pytest.mark.parametrize("case", ["pickle_payload", "nan_shard"])
def test_fault_is_survived(workspace: faults.Workspace, case: str) -> None:
    row = faults.CASES[case](workspace, 1, random.Random(0))
    assert row.tries == 1 and row.survived == 1 and row.lost == 0, row.notes


@pytest.mark.parametrize("name", list(faults.BAD_INPUTS))
def test_bad_input_gets_one_error_line(workspace: faults.Workspace, name: str) -> None:
    assert faults.check_bad_input(workspace, name) is None

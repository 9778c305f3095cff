"""Shared test set-up: small thread counts, offline Hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests run on 2-core CI machines; keep every process to one intra-op thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Reference TD-MPC2 test vectors (see tests/fixtures/README.md)."""
    return FIXTURES

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


@pytest.fixture(scope="module")
def expert():
    """A tiny random mt30 expert whose reward and value heads are not zero (TD-MPC2 zero-
    initialises them), frozen. Modules that need another expert define their own."""
    from tiny import tiny_expert_config

    from mt_factored.expert import TDMPC2Expert

    torch.manual_seed(0)
    model = TDMPC2Expert(tiny_expert_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="session", autouse=True)
def _arrow_cache(tmp_path_factory) -> None:
    """Parquet datasets convert to Arrow in a per-run folder, never in ~/.cache."""
    os.environ.setdefault("MT_FACTORED_CACHE", str(tmp_path_factory.mktemp("mt_factored_cache")))

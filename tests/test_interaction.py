"""The interaction score: additive returns score 0, planted products are found, and
``partition method=interaction`` groups an expert's joints by it."""

from __future__ import annotations

import json

import pytest
import torch
from test_partition import planted_chunk, write_planted_chunk  # noqa: F401 (fixture)

from mt_factored import cli
from mt_factored.analysis.partition.interaction import (
    expert_interaction,
    interaction_matrix,
    propose_groups,
)
from mt_factored.errors import InputError


def _draws(states: int = 512, horizon: int = 2, dims: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(states, horizon, dims, generator=gen) * 2 - 1
    other = torch.rand(states, horizon, dims, generator=gen) * 2 - 1
    return base, other


def test_an_additive_return_scores_zero() -> None:
    def additive(a: torch.Tensor) -> torch.Tensor:  # any per-joint functions, summed
        return (torch.sin(3 * a[..., 0]) + a[..., 1] ** 2 - 2 * a[..., 2] + a[..., 3].exp()).sum(1)

    score, total = interaction_matrix(additive, *_draws())
    off_diagonal = score[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 1e-5
    assert (total > 0).all()
    assert propose_groups(score, 0.2) == ((0,), (1,), (2,), (3,))


def test_a_planted_product_pair_is_found_and_grouped() -> None:
    def coupled(a: torch.Tensor) -> torch.Tensor:  # joints 0 and 2 interact, 1 and 3 add
        return (a[..., 0] * a[..., 2] + 0.5 * a[..., 1] + a[..., 3] ** 2).sum(1)

    score, _ = interaction_matrix(coupled, *_draws(states=4096))
    assert score[0, 2] > 0.8  # a pure product scores ~1
    for i, j in [(0, 1), (0, 3), (1, 2), (1, 3), (2, 3)]:
        assert score[i, j] < 0.02
    assert propose_groups(score, 0.2) == ((0, 2), (1,), (3,))


def test_groups_are_connected_components() -> None:
    score = torch.eye(5)
    score[0, 1] = score[1, 0] = 0.5
    score[1, 4] = score[4, 1] = 0.3
    assert propose_groups(score, 0.2) == ((0, 1, 4), (2,), (3,))
    with pytest.raises(InputError, match="threshold"):
        propose_groups(score, 1.5)


def test_expert_interaction_is_symmetric_and_seeded() -> None:
    from tiny import tiny_expert_config

    from mt_factored.expert import TDMPC2Expert

    torch.manual_seed(0)
    expert = TDMPC2Expert(tiny_expert_config()).eval()
    with torch.no_grad():
        for p in expert.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs, task = torch.randn(32, expert.obs_dim), torch.zeros(32, dtype=torch.long)  # walker
    first = expert_interaction(expert, obs, task, 6, generator=torch.Generator().manual_seed(1))
    again = expert_interaction(expert, obs, task, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first[0], again[0])
    assert torch.allclose(first[0], first[0].T) and (first[0].diagonal() == 1).all()
    q_only = expert_interaction(expert, obs, task, 6, horizon=0)
    assert q_only[0].shape == (6, 6)


def test_partition_command_with_interaction_writes_the_recipe(planted_chunk, tmp_path) -> None:  # noqa: F811
    from tiny import write_tiny_expert

    from mt_factored.partition import run

    expert = write_tiny_expert(tmp_path / "expert.pt")
    cfg = cli.compose(
        "partition",
        [
            f"data={planted_chunk}",
            "task=walker-stand",
            "method=interaction",
            f"expert={expert}",
            "expert_model_size=auto",
            "interaction_states=16",
            "base=smoke",
            f"recipe_dir={tmp_path / 'recipe'}",
            f"out_dir={tmp_path / 'out'}",
        ],
    )
    results = run(cfg)
    groups = results["walker-stand"].partition
    assert sorted(j for g in groups for j in g) == list(range(6))
    report = json.loads((tmp_path / "out" / "partition.json").read_text())
    assert len(report["walker-stand"]["affinity"]) == 6
    assert report["_settings"]["interaction_threshold"] == 0.2
    assert (
        "method=interaction"
        in (tmp_path / "recipe" / "smoke-walker-stand-partition.yaml").read_text()
    )


def test_interaction_needs_an_expert(planted_chunk, tmp_path) -> None:  # noqa: F811
    from mt_factored.partition import run

    cfg = cli.compose(
        "partition",
        [f"data={planted_chunk}", "task=walker-stand", "method=interaction", f"out_dir={tmp_path}"],
    )
    with pytest.raises(InputError, match="no expert given"):
        run(cfg)

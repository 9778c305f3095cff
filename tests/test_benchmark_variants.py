"""The quality ablation's variants are valid training configs that change what they name.

``benchmarks/quickstart_ablation.py`` trains each variant for about 10 minutes before it
measures anything, so a misspelt override would cost a run; composing them here catches it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from mt_factored import cli
from mt_factored.artifacts.configs import as_object

ROOT = Path(__file__).resolve().parents[1]


def _ablation():
    spec = importlib.util.spec_from_file_location(
        "quickstart_ablation", ROOT / "benchmarks" / "quickstart_ablation.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


ABLATION = _ablation()


@pytest.mark.parametrize("variant", sorted(ABLATION.VARIANTS))
def test_every_variant_composes(variant):
    cfg = cli.compose("train", [*ABLATION.VARIANTS[variant], "seed=2"], hydra_config=True)
    assert as_object(cfg).seed == 2  # built into the typed config: values checked too


def test_recipe_variant_is_the_shipped_recipe():
    shipped = cli.compose("train", ["recipe=quickstart"])
    assert cli.compose("train", ABLATION.VARIANTS["recipe"]) == shipped
    assert shipped.closed_loop.every_n_steps > 0  # so "baseline" (closed loop off) differs


def test_central_variant_puts_each_task_in_one_agent():
    cfg = cli.compose("train", ABLATION.VARIANTS["central"])
    partitions = cfg.student.partitions
    assert [list(g) for g in partitions["walker-stand"]] == [[0, 1, 2, 3, 4, 5]]
    assert [list(g) for g in partitions["reacher-easy"]] == [[0, 1]]
    assert [list(g) for g in partitions["cup-catch"]] == [[0, 1]]


def test_prior_weights_have_their_own_measurement_files(tmp_path):
    args = ABLATION.argparse.Namespace(seed=10000, episodes=10)
    unanchored = ABLATION.fvr.returns_path(args, tmp_path, 0.0)
    anchored = ABLATION.fvr.returns_path(args, tmp_path, 3.0)
    # the unanchored name is the one measured before the anchor existed: read back as before
    assert unanchored.name == "evaluate-seed10000-episodes10.json"
    assert anchored != unanchored and "prior3" in anchored.name

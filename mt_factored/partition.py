"""Propose agents for a task from its data and write a train recipe that uses them.

    python -m mt_factored.partition data=data/quickstart/walker-stand.pt task=walker-stand
    python -m mt_factored.train recipe=quickstart-walker-stand-partition

Settings and their meaning: ``--help`` (:class:`mt_factored.analysis.config.PartitionConfig`);
the method: :mod:`mt_factored.analysis.partition.discover`.
Prints, per task, each action dim's strongest state influences, the affinity matrix and
the partition; writes ``<out_dir>/partition.json`` and the recipe.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.analysis.partition.discover import PartitionResult
from mt_factored.analysis.partition.report import run_partition
from mt_factored.artifacts.configs import as_object


def run(cfg: DictConfig) -> dict[str, PartitionResult]:
    """Discover a partition per task of ``cfg.task``; write the JSON report and the recipe."""
    return run_partition(as_object(cfg))


def main() -> int:
    return cli.main("mt_factored.partition", "partition", run, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())

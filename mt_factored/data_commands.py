"""``python -m mt_factored.data``: prepare, inspect and verify the public TD-MPC2 data.

    python -m mt_factored.data prepare source=hub task_set=mt30 out=data/mt30
    python -m mt_factored.data prepare source=/path/to/chunks task_set=mt30 out=data/mt30
    python -m mt_factored.data export source=data/mt30 out=runs/mt30-parquet   (Hub dataset folder)
    python -m mt_factored.data export source=runs/mt30-parquet out=chunks format=chunks
    python -m mt_factored.data info data/mt30     (tasks, episodes, transitions, rewards)
    python -m mt_factored.data verify data/mt30   (recompute every shard / Parquet file checksum)

Arguments are Hydra's ``key=value`` (a bare PATH stands for ``path=PATH``); ``--help`` after a
command lists its keys, their defaults and what they mean.
"""

from __future__ import annotations

import dataclasses
import sys

from mt_factored import cli
from mt_factored.artifacts.configs import as_object
from mt_factored.data.config import DatasetPathConfig, ExportConfig, PrepareConfig
from mt_factored.data.export import export
from mt_factored.data.info import dataset_summary, format_summary
from mt_factored.data.parquet import ParquetFormatError, is_parquet_dataset, read_info, verify_files
from mt_factored.data.prepare import prepare
from mt_factored.data.shards import ShardedDataset


def run_prepare(cfg: PrepareConfig) -> None:
    cfg = as_object(cfg)
    prepare(**dataclasses.asdict(cfg))  # PrepareConfig is the signature of `prepare`


def run_export(cfg: ExportConfig) -> None:
    cfg = as_object(cfg)
    result = export(**dataclasses.asdict(cfg))  # ExportConfig is the signature of `export`
    if cfg.format == "chunks":
        print(f"{len(result)} chunk files in {cfg.out}")
    else:
        print(
            f"{cfg.out}: {len(result['files'])} Parquet files, {result['num_episodes']:,} "
            f"episodes, {len(result['tasks'])} tasks"
        )


def run_info(cfg: DatasetPathConfig) -> None:
    print(format_summary(dataset_summary(as_object(cfg).path)))


def run_verify(cfg: DatasetPathConfig) -> None:
    path = as_object(cfg).path
    if is_parquet_dataset(path):
        if bad := verify_files(path):
            raise ParquetFormatError(f"{path}: {bad} missing or changed", "export it again")
        print(f"{path}: {len(read_info(path)['files'])} Parquet files, checksums ok")
        return
    ds = ShardedDataset(path, verify=True)
    print(f"{path}: {ds.num_shards} shards, {ds.num_episodes} episodes, checksums ok")


COMMANDS = {
    "prepare": cli.Subcommand("data_prepare", run_prepare, PrepareConfig.__doc__),
    "export": cli.Subcommand("data_export", run_export, ExportConfig.__doc__),
    "info": cli.Subcommand(
        "data_info", run_info, "Tasks, episodes, transitions and rewards.", positional="path"
    ),
    "verify": cli.Subcommand(
        "data_verify", run_verify, "Recompute every shard checksum.", positional="path"
    ),
}


def main(argv: list[str] | None = None) -> int:
    return cli.main_with_subcommands("mt_factored.data", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m mt_factored.hub push-dataset``: a dataset folder (``python -m mt_factored.data
export``) -> ONE commit to a Hub dataset repo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from mt_factored import __version__
from mt_factored.data.parquet import CARD_NAME, read_info, verify_files
from mt_factored.errors import InputError, MismatchError
from mt_factored.hub.push import push_in_one_commit
from mt_factored.hub.upload import (
    commit_operations,
    describe_operations,
    refuse_offline,
    repo_url,
)

REPO_TYPE = "dataset"


@dataclass
class PushDatasetConfig:
    """``python -m mt_factored.hub push-dataset``: a dataset folder -> ONE commit to a Hub
    dataset repo (every file of the folder: it lands whole or not at all).

    Authentication: HF_TOKEN or `hf auth login`.
    """

    folder: str = MISSING
    """The dataset folder written by ``python -m mt_factored.data export`` (README.md,
    meta/info.json, data/<task>/*.parquet)."""
    repo_id: str = MISSING
    """The dataset repo, ORG/NAME."""
    private: bool | None = None
    """Visibility of a repo created now (null: the account's default)."""
    revision: str | None = None
    """Branch to commit to (created if missing; null: main)."""
    message: str | None = None
    """The commit message (null: "Upload dataset with mt_factored <version>")."""
    dry_run: bool = False
    """Check the folder and list the files of the commit; upload nothing (``--dry-run``)."""

    def __post_init__(self) -> None:
        repo = str(self.repo_id).split("/")
        if self.repo_id != MISSING and (len(repo) != 2 or not all(repo)):
            raise InputError(f"repo_id must be ORG/NAME, got {self.repo_id!r}")


def push_dataset(cfg: PushDatasetConfig) -> int:
    """Check the folder's files against meta/info.json, list them and (unless a dry run)
    upload them as one commit; prints what it does."""
    if not cfg.dry_run:
        refuse_offline()
    folder = Path(cfg.folder)
    info = read_info(folder)
    if bad := verify_files(folder, info):
        raise MismatchError(
            f"{folder}: {bad} missing or not what meta/info.json records",
            "re-run the export command that wrote the folder",
        )
    if not (folder / CARD_NAME).is_file():
        raise MismatchError(f"{folder} has no {CARD_NAME} (the dataset card)", "re-run the export")
    operations = commit_operations(folder)
    target = f"{repo_url(cfg.repo_id, cfg.revision, REPO_TYPE)} (revision {cfg.revision or 'main'})"
    print(f"dataset {folder}: {info['num_episodes']:,} episodes, {len(info['tasks'])} tasks")
    print(describe_operations(operations))
    if cfg.dry_run:
        print(f"dry run: one commit of {len(operations)} files to {target}; nothing uploaded")
        return 0
    message = cfg.message or f"Upload dataset with mt_factored {__version__}"
    commit = push_in_one_commit(
        operations,
        cfg.repo_id,
        target,
        private=cfg.private,
        revision=cfg.revision,
        commit_message=message,
        repo_type=REPO_TYPE,
    )
    print(f"published {len(operations)} files: {commit.commit_url}")
    print(f"dataset page: {repo_url(cfg.repo_id, cfg.revision, REPO_TYPE)}")
    return 0

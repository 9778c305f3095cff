"""Upload a model folder to the Hub as ONE commit (all files or none).

``commit_operations`` builds the ``CommitOperationAdd`` list (``--dry-run`` prints it,
tests inspect it); ``push_operations`` creates the repo (and branch) if needed and sends
those operations with a single ``HfApi.create_commit``, so a failure leaves the repo's
files as they were. ``push_folder`` does both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi

from mt_factored.errors import MissingError, MtFactoredError


class HubOfflineError(MtFactoredError, ConnectionError):
    """A push was asked for while ``HF_HUB_OFFLINE`` is set."""


def commit_operations(folder: str | os.PathLike) -> list[CommitOperationAdd]:
    """One ``CommitOperationAdd`` per file of ``folder`` (hidden files and folders skipped).

    ``op.upload_info`` holds the file size, and its SHA-256 once first read (the upload
    and :func:`describe_operations` read it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingError(f"{folder} is not a folder to upload")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise MissingError(f"{folder} has no files to upload")
    return [
        CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
        for p in files
    ]


def describe_operations(operations: list[CommitOperationAdd]) -> str:
    """A Markdown table: path in the repo, size, SHA-256 of every file of the commit."""
    lines = ["| file | bytes | sha256 |", "|---|---:|---|"]
    lines += [
        f"| {op.path_in_repo} | {op.upload_info.size:,} | {op.upload_info.sha256.hex()} |"
        for op in operations
    ]
    return "\n".join(lines)


def repo_url(repo_id: str, revision: str | None = None, repo_type: str = "model") -> str:
    """The web page of a model (or dataset) repo (at ``revision`` when it is not main)."""
    from huggingface_hub import constants

    kind = "datasets/" if repo_type == "dataset" else ""
    url = f"{constants.ENDPOINT}/{kind}{repo_id}"
    return f"{url}/tree/{revision}" if revision and revision != "main" else url


def refuse_offline(what: str = "push to the Hub") -> None:
    """Raise :class:`HubOfflineError` when ``HF_HUB_OFFLINE`` is set (checked at call time)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise HubOfflineError(
            f"cannot {what}: HF_HUB_OFFLINE is set. Unset it on a machine with network, "
            "or use --dry-run to write the folder and list what would be uploaded."
        )


def push_folder(folder: str | os.PathLike, repo_id: str, **options: Any) -> CommitInfo:
    """Upload every file of ``folder`` to the model repo ``repo_id`` in one commit
    (:func:`push_operations` of :func:`commit_operations`; ``options`` as there)."""
    refuse_offline()
    return push_operations(commit_operations(folder), repo_id, **options)


def push_operations(
    operations: list[CommitOperationAdd],
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload with mt_factored",
    token: str | None = None,
    repo_type: str = "model",
) -> CommitInfo:
    """Send ``operations`` to the model (or dataset) repo ``repo_id`` as one commit.

    Args:
        repo_type: "model" or "dataset".
        private: visibility of a repo created now (an existing repo keeps its own); None:
            the account's default.
        revision: branch to commit to (created from main if missing); None: main.
        token: Hub token; None: ``HF_TOKEN`` or the one saved by ``hf auth login``.

    Returns:
        The commit (``.commit_url``, ``.oid``).

    Raises:
        HubOfflineError: ``HF_HUB_OFFLINE`` is set.
    """
    refuse_offline()
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type).repo_id
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message,
        revision=revision,
        repo_type=repo_type,
    )

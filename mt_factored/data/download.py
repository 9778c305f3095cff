"""The public TD-MPC2 datasets on the Hugging Face Hub (a transport; the HF cache is the truth).

Facts of the published artifact (`/work/shared/specs/tdmpc2-formats.md`): dataset repo
`nicklashansen/tdmpc2`, files `<task_set>/chunk_<i>.pt`; mt30 has 4 chunks, mt80 has 20.
"""

from __future__ import annotations

import os
from pathlib import Path

from mt_factored.artifacts.remote import hub_file
from mt_factored.errors import InputError, MissingError

HUB_REPO = "nicklashansen/tdmpc2"
PUBLIC_CHUNKS: dict[str, int] = {"mt30": 4, "mt80": 20}


class DatasetDownloadError(MissingError):
    """A public chunk that is neither in the HF cache nor downloadable now."""


def hub_chunk_names(task_set: str) -> list[str]:
    """File names (in the repo, without the folder) of a public dataset's chunks."""
    if task_set not in PUBLIC_CHUNKS:
        raise InputError(
            f"no public dataset for task set {task_set!r} on {HUB_REPO}",
            f"public ones: {', '.join(PUBLIC_CHUNKS)} (or pass source=/path/to/chunks)",
        )
    return [f"chunk_{i}.pt" for i in range(PUBLIC_CHUNKS[task_set])]


def hub_chunk_file(
    task_set: str,
    name: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Local path of one public chunk: from the HF cache, else downloaded into it (resumable).

    Args:
        task_set: "mt30" or "mt80".
        name: chunk file name, e.g. "chunk_0.pt".
        revision: repo revision (branch, tag or commit); None: main.
        cache_dir: HF cache folder; None: the default (HF_HOME / HF_HUB_CACHE).

    Returns:
        The file's path inside the HF cache.
    """
    return hub_file(
        HUB_REPO,
        f"{task_set}/{name}",
        repo_type="dataset",
        revision=revision,
        cache_dir=cache_dir,
        error=DatasetDownloadError,
        offline_fix=f"on a machine with a network run `hf download {HUB_REPO} --repo-type dataset "
        f'--include "{task_set}/*"` (or `huggingface-cli download ...` with the same arguments) '
        "and bring its HF cache here (HF_HOME), or pass source=/path/to/folder/with/chunk_*.pt",
    )

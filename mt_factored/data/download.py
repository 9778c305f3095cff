"""The public TD-MPC2 datasets on the Hugging Face Hub (a transport; the HF cache is the truth).

Facts of the published artifact (`/work/shared/specs/tdmpc2-formats.md`): dataset repo
`nicklashansen/tdmpc2`, files `<task_set>/chunk_<i>.pt`; mt30 has 4 chunks, mt80 has 20.
"""

from __future__ import annotations

import os
from pathlib import Path

HUB_REPO = "nicklashansen/tdmpc2"
PUBLIC_CHUNKS: dict[str, int] = {"mt30": 4, "mt80": 20}


class DatasetDownloadError(FileNotFoundError):
    """A public chunk that is neither in the HF cache nor downloadable now."""


def hub_chunk_names(task_set: str) -> list[str]:
    """File names (in the repo, without the folder) of a public dataset's chunks."""
    if task_set not in PUBLIC_CHUNKS:
        raise ValueError(
            f"no public dataset for task set {task_set!r} on {HUB_REPO}; "
            f"public ones: {', '.join(PUBLIC_CHUNKS)} (or pass source=/path/to/chunks)"
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
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    filename = f"{task_set}/{name}"
    try:
        return Path(
            hf_hub_download(
                HUB_REPO, filename, repo_type="dataset", revision=revision, cache_dir=cache_dir
            )
        )
    except LocalEntryNotFoundError as err:
        raise DatasetDownloadError(
            f"{HUB_REPO} (dataset) {filename} is not in the HF cache"
            f"{f' {cache_dir}' if cache_dir else ''} and the Hub cannot be reached (offline). "
            f"On a machine with a network run `hf download {HUB_REPO} --repo-type dataset "
            f'--include "{task_set}/*"` (or `huggingface-cli download ...` with the same '
            "arguments) and bring its HF cache here (HF_HOME), or pass "
            "source=/path/to/folder/with/chunk_*.pt"
        ) from err
    except EntryNotFoundError as err:
        raise DatasetDownloadError(f"{HUB_REPO} (dataset) has no file {filename}") from err

"""Files from the Hugging Face Hub, through its cache (the local truth; ``HF_HUB_OFFLINE=1``
reads only the cache), and model files from a local folder or a Hub repo.

One resolution path serves the expert (``expert=hub:ORG/NAME/file.pt``), the student and
expert folders (``from_pretrained``) and the public datasets (``data prepare source=hub``);
each caller names what to do when a file cannot be had.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mt_factored.errors import MissingError


class ArtifactNotFoundError(MissingError):
    """A model folder or file that is neither on disk nor in the HF cache (nor downloadable)."""


def hub_file(
    repo_id: str,
    filename: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    offline_fix: str | None = None,
    error: type[MissingError] = ArtifactNotFoundError,
    **download: Any,
) -> Path:
    """Local path of ``filename`` of a Hub repo: from the HF cache when it has the revision,
    else downloaded into it (``hf_hub_download``).

    Args:
        repo_type: "model" or "dataset".
        revision: branch, tag or commit (None: main).
        offline_fix: what to do when the file is not cached and the Hub cannot be reached
            (default: the ``hf download`` command that fills the cache).
        error: the exception class raised (a :class:`MissingError`).
        download: more of ``hf_hub_download``'s keywords (``cache_dir``, ``force_download``,
            ``local_files_only``, ``token``).

    Raises:
        ``error``: not cached while offline, no such file in the repo, an invalid repo id, or
            the Hub refused the request.
    """
    from huggingface_hub import hf_hub_download  # huggingface_hub loads only to download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
    )

    kind = "dataset " if repo_type == "dataset" else ""
    at = f" at revision {revision}" if revision else ""
    try:
        return Path(
            hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision, **download)
        )
    except HFValidationError as err:
        raise error(f"{repo_id!r} is not a valid Hub repo id ({err})", "give ORG/NAME") from err
    except LocalEntryNotFoundError as err:
        typed = " --repo-type dataset" if repo_type == "dataset" else ""
        raise error(
            f"{filename} of the Hub {kind}repo {repo_id}{at} is not in the Hugging Face cache"
            f"{f' {cache_dir}' if (cache_dir := download.get('cache_dir')) else ''} and the Hub "
            "cannot be reached "
            "(HF_HUB_OFFLINE=1, local_files_only or no network)",
            offline_fix
            or f"on a machine with network run `hf download {repo_id} {filename}{typed}` (it "
            "fills the same cache), or unset HF_HUB_OFFLINE",
        ) from err
    except EntryNotFoundError as err:
        raise error(f"the Hub {kind}repo {repo_id}{at} has no file {filename}") from err
    except HfHubHTTPError as err:
        raise error(f"cannot fetch {filename} of the Hub {kind}repo {repo_id}{at}: {err}") from err


def fetch_file(model_id: str, filename: str, **fetch: Any) -> Path:
    """Local path of ``filename`` of a model folder or Hub model repo.

    ``model_id`` is a folder (``hf download ORG/NAME --local-dir X`` makes one) or a repo id,
    resolved through :func:`hub_file` (``fetch``: ``revision`` and its download keywords).
    """
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        path = folder / filename
        if not path.is_file():
            raise ArtifactNotFoundError(
                f"{folder} has no {filename}: not a complete model folder",
                "write one with save_pretrained or fetch one with "
                "`hf download ORG/NAME --local-dir X`",
            )
        return path
    if folder.exists():
        raise ArtifactNotFoundError(
            f"{model_id} is a file", f"pass the folder that holds {filename} or a Hub repo id"
        )
    try:
        return hub_file(
            model_id,
            filename,
            **fetch,
            offline_fix=f"with network: `hf download {model_id} --local-dir X` and pass X, or "
            "unset HF_HUB_OFFLINE",
        )
    except ArtifactNotFoundError as err:
        raise ArtifactNotFoundError(
            f"{model_id!r} is not a folder here, and {err.what}", err.fix
        ) from err

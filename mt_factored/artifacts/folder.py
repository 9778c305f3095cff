"""The files of a published model folder: atomic writes, checksums, format versions, and
fetching one file from a local folder or through the Hugging Face cache.

Shared by the student (``mt_factored.student.pretrained``) and the expert (``mt_factored.expert.pretrained``).
A folder holds ``config.json`` (with ``format_version`` and the SHA-256 of the weights),
``model.safetensors`` and ``README.md``; ``hf download ORG/NAME --local-dir X``
gives the same folder back, and the HF cache holds it as ``models--ORG--NAME/snapshots/<rev>/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from mt_factored import __version__
from mt_factored.constants import CONFIG_NAME, WEIGHTS_NAME

FORMAT_KEY = "format_version"
MODEL_TYPE_KEY = "model_type"
WEIGHTS_HASH_KEY = "weights_sha256"

ConfigT = TypeVar("ConfigT")
ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


class ArtifactNotFoundError(FileNotFoundError):
    """A model folder or file that is neither on disk nor in the HF cache (nor downloadable)."""


class ArtifactFormatError(ValueError):
    """A model folder that exists but cannot be read: version, config or weights are wrong."""


class NewerFormatWarning(UserWarning):
    """``config.json`` has fields this version does not know (written by a newer minor version)."""


# ------------------------------------------------------------------------------- writing
def atomic_write(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temp file next to ``path``, then rename it onto ``path``."""
    # A unique name rather than mkstemp: the file gets the umask's permissions, not 0600.
    tmp = str(path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"))
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Atomically write ``data`` as indented JSON."""
    return atomic_write(path, lambda p: Path(p).write_text(json.dumps(data, indent=2) + "\n"))


@contextlib.contextmanager
def staged_files(folder: str | os.PathLike) -> Iterator[Path]:
    """A staging folder inside ``folder``; on success every file in it is moved into ``folder``.

    Each file appears in ``folder`` by one rename, so a reader never sees a half-written
    file. ``config.json`` is moved last: it carries the checksum of the weights, so a
    crash between renames leaves a folder whose mismatch :func:`check_weights_hash` reports.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".staging-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        yield staging
        names = sorted(p.name for p in staging.iterdir())
        for name in sorted(names, key=lambda n: n == CONFIG_NAME):
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------- reading
def read_config(path: Path) -> dict[str, Any]:
    """``config.json`` as a dict, with a clear error for a file that is not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactFormatError(
            f"{path} is not valid JSON ({err}); re-download or re-save it"
        ) from err
    if not isinstance(data, dict):
        raise ArtifactFormatError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def format_major(value: Any) -> int | None:
    """``1`` and ``"1.2"`` -> 1 (MAJOR of ``MAJOR[.MINOR]``); anything else -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.split(".")[0].isdigit():
        return int(value.split(".")[0])
    return None


def check_format(data: Mapping[str, Any], model_type: str, supported: int, source: str) -> None:
    """Refuse a config of another kind of model or of an incompatible ``format_version``.

    A newer MINOR (``"1.3"`` read by a package writing ``1``) is compatible: it may only
    add fields, which :func:`split_fields` ignores with a warning.
    """
    found_type = data.get(MODEL_TYPE_KEY, model_type)
    if found_type != model_type:
        raise ArtifactFormatError(f"{source} describes a {found_type!r}, not a {model_type!r}")
    if FORMAT_KEY not in data:
        raise ArtifactFormatError(
            f"{source} has no {FORMAT_KEY!r}: it was not written by mt_factored's save_pretrained"
        )
    value = data[FORMAT_KEY]
    major = format_major(value)
    if major is None:
        raise ArtifactFormatError(f"{source}: {FORMAT_KEY} {value!r} is not MAJOR or 'MAJOR.MINOR'")
    if major > supported:
        raise ArtifactFormatError(
            f"{source}: {FORMAT_KEY} {value} is newer than mt_factored {__version__} reads "
            f"({supported}); upgrade mt_factored (pip install -U mt_factored) to load it"
        )
    if major < supported:
        raise ArtifactFormatError(
            f"{source}: {FORMAT_KEY} {value} is older than mt_factored {__version__} reads "
            f"({supported}); load it with the mt_factored release that wrote it and re-save"
        )


def split_fields(
    data: Mapping[str, Any], fields: Iterable[str], metadata: Iterable[str], source: str
) -> dict[str, Any]:
    """The entries of ``data`` named in ``fields``; unknown ones are dropped with a warning."""
    fields, metadata = set(fields), set(metadata)
    unknown = sorted(set(data) - fields - metadata)
    if unknown:
        warnings.warn(
            f"{source} has fields this mt_factored does not know (written by a newer minor "
            f"version?); ignoring them: {unknown}",
            NewerFormatWarning,
            stacklevel=3,
        )
    return {k: v for k, v in data.items() if k in fields}


def check_weights_hash(path: Path, expected: str | None, source: str) -> None:
    """Compare the weights file with the checksum its ``config.json`` recorded."""
    if expected is None:
        return
    found = sha256_file(path)
    if found != expected:
        raise ArtifactFormatError(
            f"{path} does not match {source} (sha256 {found[:12]}..., config.json records "
            f"{expected[:12]}...): the weights were modified, truncated or come from another "
            "save. Re-download the folder or save the model again."
        )


def load_weights_exact(module: torch.nn.Module, path: Path, source: str) -> None:
    """Load a safetensors file into ``module``; every key and shape must match exactly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ArtifactFormatError(f"{path} is not a readable safetensors file: {err}") from err
    load_state_exact(module, state, f"{path} (config {source})")


def load_state_exact(
    module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """``module.load_state_dict(state)`` with one error naming every key or shape mismatch."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{what} {items[:8]}{' ...' if len(items) > 8 else ''}"
            for what, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
            if items
        ]
        raise ArtifactFormatError(
            f"weights do not match the architecture of {source}: "
            + "; ".join(parts)
            + ". The config and the weights come from different models."
        )
    module.load_state_dict(state, strict=True)


def fetch_file(
    model_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """Local path of ``filename`` of a model folder or Hub model repo.

    ``model_id`` is a folder (``hf download ORG/NAME --local-dir X`` makes one)
    or a repo id, resolved through ``hf_hub_download``: from the HF cache when it has the
    revision (always with ``HF_HUB_OFFLINE=1``), else downloaded into it.
    """
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        path = folder / filename
        if not path.is_file():
            raise ArtifactNotFoundError(
                f"{folder} has no {filename}: not a complete model folder (write one with "
                "save_pretrained or fetch one with `hf download ORG/NAME --local-dir X`)"
            )
        return path
    if folder.exists():
        raise ArtifactNotFoundError(
            f"{model_id} is a file; pass the folder that holds {filename} or a Hub repo id"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
    )

    at = f" at revision {revision}" if revision else ""
    try:
        return Path(
            hf_hub_download(
                model_id,
                filename,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
            )
        )
    except HFValidationError as err:
        raise ArtifactNotFoundError(
            f"{model_id!r} is neither an existing folder nor a valid Hub repo id (ORG/NAME): {err}"
        ) from err
    except LocalEntryNotFoundError as err:
        raise ArtifactNotFoundError(
            f"{model_id!r} is not a folder here, and {filename} of the Hub repo {model_id}{at} is "
            "not in the Hugging Face cache while the Hub cannot be reached (HF_HUB_OFFLINE=1, "
            f"local_files_only or no network). With network: `hf download "
            f"{model_id} --local-dir X` and pass X, or unset HF_HUB_OFFLINE."
        ) from err
    except EntryNotFoundError as err:
        raise ArtifactNotFoundError(
            f"the Hub repo {model_id}{at} has no {filename}: not a model saved by mt_factored"
        ) from err
    except HfHubHTTPError as err:
        raise ArtifactNotFoundError(
            f"cannot fetch {filename} of the Hub repo {model_id}{at} (not a folder here either): {err}"
        ) from err


def write_weights_and_config(
    folder: Path, module: torch.nn.Module, config: Mapping[str, Any]
) -> None:
    """``model.safetensors`` (``module``'s state dict), then ``config.json`` = ``config`` plus
    the weights' SHA-256; each file appears atomically."""
    from safetensors.torch import save_file

    weights = Path(folder) / WEIGHTS_NAME
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(weights, lambda p: save_file(state, p, metadata={"format": "pt"}))
    write_json(Path(folder) / CONFIG_NAME, {**config, WEIGHTS_HASH_KEY: sha256_file(weights)})


def config_from_json(
    data: Mapping[str, Any],
    config_cls: Any,
    *,
    model_type: str,
    format_version: int,
    metadata_keys: Iterable[str],
    source: str,
) -> Any:
    """``config_cls.from_dict`` of a ``config.json`` dict after the format check; metadata
    keys are skipped, unknown keys warned about (:func:`split_fields`)."""
    check_format(data, model_type, format_version, source)
    names = [f.name for f in dataclasses.fields(config_cls)]
    try:
        return config_cls.from_dict(split_fields(data, names, metadata_keys, source))
    except (TypeError, ValueError) as err:
        raise ArtifactFormatError(f"{source}: not a valid {model_type} config: {err}") from err


def load_folder_model(
    model_id: str,
    decode_config: Callable[[dict[str, Any], str], ConfigT],
    build: Callable[[ConfigT], ModuleT],
    *,
    map_location: str | torch.device = "cpu",
    **fetch_kwargs: Any,
) -> ModuleT:
    """Fetch ``config.json`` and ``model.safetensors`` (:func:`fetch_file`), decode and check
    them, build the module and load its weights exactly; returned in eval mode on
    ``map_location``."""
    config_path = fetch_file(model_id, CONFIG_NAME, **fetch_kwargs)
    data = read_config(config_path)
    config = decode_config(data, str(config_path))
    weights = fetch_file(model_id, WEIGHTS_NAME, **fetch_kwargs)
    check_weights_hash(weights, data.get(WEIGHTS_HASH_KEY), str(config_path))
    module = build(config)
    load_weights_exact(module, weights, str(config_path))
    return module.to(map_location).eval()

"""The files of a model folder: ``config.json`` + ``model.safetensors`` written with the
weights' checksum, read back with format-version, checksum and exact-shape checks.

Shared by the student (``mt_factored.student.pretrained``) and the expert (``mt_factored.expert.pretrained``).
A folder holds ``config.json`` (with ``format_version`` and the SHA-256 of the weights),
``model.safetensors`` and ``README.md``; ``hf download ORG/NAME --local-dir X``
gives the same folder back, and the HF cache holds it as ``models--ORG--NAME/snapshots/<rev>/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mt_factored import __version__
from mt_factored.artifacts.atomic import atomic_write, write_json
from mt_factored.artifacts.checksums import sha256_file
from mt_factored.artifacts.finite import require_finite
from mt_factored.artifacts.remote import fetch_file
from mt_factored.constants import CONFIG_NAME, LIBRARY_NAME, WEIGHTS_NAME
from mt_factored.errors import MismatchError

FORMAT_KEY = "format_version"
MODEL_TYPE_KEY = "model_type"
WEIGHTS_HASH_KEY = "weights_sha256"
BASE_METADATA_KEYS = (
    FORMAT_KEY,
    MODEL_TYPE_KEY,
    "library_name",
    "library_version",
    WEIGHTS_HASH_KEY,
)
"""Keys of every ``config.json`` that are not fields of its config."""

ConfigT = TypeVar("ConfigT")
ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


class ArtifactFormatError(MismatchError):
    """A model folder that exists but cannot be read: version, config or weights are wrong."""


class NewerFormatWarning(UserWarning):
    """``config.json`` has fields this version does not know (written by a newer minor version)."""


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


def write_weights_and_config(
    folder: Path, module: torch.nn.Module, config: Mapping[str, Any]
) -> None:
    """``model.safetensors`` (``module``'s state dict), then ``config.json`` = ``config`` plus
    the weights' SHA-256; each file appears atomically. Weights holding NaN/Inf are refused
    (:class:`~mt_factored.errors.NonFiniteError`, naming the tensors) before anything is
    written."""
    weights = Path(folder) / WEIGHTS_NAME
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    require_finite(state, f"{WEIGHTS_NAME} in {folder}")  # nothing non-finite is saved/pushed
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


@dataclass(frozen=True)
class FolderKind:
    """One kind of model folder: the ``model_type`` and ``format_version`` its ``config.json``
    records, the config dataclass it holds, and the metadata keys written beside the config's
    fields (:data:`BASE_METADATA_KEYS` plus ``extra_metadata``; loading skips them)."""

    model_type: str
    format_version: int
    config_cls: type
    extra_metadata: tuple[str, ...] = ()

    @property
    def metadata_keys(self) -> tuple[str, ...]:
        return (*BASE_METADATA_KEYS, *self.extra_metadata)

    def header(self) -> dict[str, Any]:
        """The first keys of ``config.json``: format, model type, library and its version."""
        return {
            FORMAT_KEY: self.format_version,
            MODEL_TYPE_KEY: self.model_type,
            "library_name": LIBRARY_NAME,
            "library_version": __version__,
        }

    def decode(self, data: Mapping[str, Any], source: str) -> Any:
        """The config of a ``config.json`` dict, after the version check."""
        return config_from_json(
            data,
            self.config_cls,
            model_type=self.model_type,
            format_version=self.format_version,
            metadata_keys=self.metadata_keys,
            source=source,
        )

    def load(
        self,
        model_id: str | os.PathLike,
        build: Callable[[Any], ModuleT],
        map_location: str | torch.device = "cpu",
        **fetch: Any,
    ) -> ModuleT:
        """A model of this kind from a folder or a Hub repo (:func:`load_folder_model`)."""
        return load_folder_model(
            str(model_id), self.decode, build, map_location=map_location, **fetch
        )


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
    ``map_location``. ``fetch_kwargs``: ``revision`` and huggingface_hub's ``cache_dir``,
    ``force_download``, ``local_files_only``, ``token``.

    Raises:
        ArtifactNotFoundError: no such folder / file, or not in the cache while offline.
        ArtifactFormatError: another MAJOR ``format_version``, an invalid config, weights
            that do not match the config or their checksum.
    """
    config_path = fetch_file(model_id, CONFIG_NAME, **fetch_kwargs)
    data = read_config(config_path)
    config = decode_config(data, str(config_path))
    weights = fetch_file(model_id, WEIGHTS_NAME, **fetch_kwargs)
    check_weights_hash(weights, data.get(WEIGHTS_HASH_KEY), str(config_path))
    module = build(config)
    load_weights_exact(module, weights, str(config_path))
    return module.to(map_location).eval()

"""Reading and writing TD-MPC2 checkpoint files (both public key layouts).

Layouts (see /work/shared/specs/tdmpc2-formats.md):

- new: `_Qs.params.{layer}.{weight,bias,ln.weight,ln.bias}` plus the same under
  `_detach_Qs_params.` and `_target_Qs_params.`, `__batch_size`/`__device` entries,
  `_action_masks`, `log_std_min`, `log_std_dif`;
- old (the published checkpoints): flat `_Qs.params.N` / `_target_Qs.params.N` with
  `N // 4` the layer and `N % 4` one of weight, bias, ln.weight, ln.bias, and no
  masks or log-std buffers.

`TDMPC2Expert.state_dict()` is the new layout without the `_detach_Qs_params` copy
and the tensordict entries; `module_state_dict` converts a file's dict to it and
`public_state_dict` converts back for saving.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from mt_factored.artifacts.atomic import save_torch
from mt_factored.artifacts.safe_pickle import PickleRefusedError, load_torch
from mt_factored.errors import MismatchError, MissingError
from mt_factored.expert.config import ExpertConfig
from mt_factored.expert.shapes import Q_PREFIX, SIZE_FIELDS, infer_architecture, infer_hint


class ConfiguredModel(Protocol):
    """What these functions need of a model: its config and its state dict (a
    :class:`~mt_factored.expert.model.TDMPC2Expert`, which calls them)."""

    @property
    def config(self) -> ExpertConfig: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any: ...


ModelT = TypeVar("ModelT", bound=ConfiguredModel)

log = logging.getLogger(__name__)

DETACH_PREFIX, TARGET_PREFIX = "_detach_Qs_params.", "_target_Qs_params."
OLD_TARGET_PREFIX = "_target_Qs.params."
TD_META_KEYS = ("__batch_size", "__device")  # tensordict bookkeeping in new-layout files
OLD_Q_FIELDS = ("weight", "bias", "ln.weight", "ln.bias")  # N % 4 in the old layout
BUFFERS_FROM_CONFIG = ("_action_masks", "log_std_min", "log_std_dif")
_OLD_Q_KEY = re.compile(r"^_(?:target_)?Qs\.params\.(\d+)$")
_COMPONENT = r"_(?:encoder\.state|dynamics|reward|pi)"
_NESTED_SEQUENTIAL = re.compile(rf"^{_COMPONENT}\.\d+\.\d+\.")
_TOP_WEIGHT = re.compile(rf"^{_COMPONENT}\.\d+\.weight$")
_MAX_LISTED = 16


class CheckpointError(MismatchError, RuntimeError):
    """A checkpoint file that cannot be read or is of an unsupported layout."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose tensors do not fit the model built for it.

    Attributes:
        missing: keys the model needs that the file lacks.
        unexpected: keys in the file the model does not have.
        mismatched: key -> (shape in file, shape in model).
        hint: what the file's shapes suggest instead (may be empty).
    """

    def __init__(
        self,
        source: str,
        missing: Iterable[str] = (),
        unexpected: Iterable[str] = (),
        mismatched: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
        hint: str = "",
        detail: str = "",
    ) -> None:
        self.missing, self.unexpected = sorted(missing), sorted(unexpected)
        self.mismatched = dict(mismatched or {})
        self.hint = hint
        shapes = {k: f"{k}: {list(a)} vs {list(b)}" for k, (a, b) in self.mismatched.items()}
        lines = [f"Checkpoint {source} does not fit the model. {detail}".rstrip()]
        for title, keys, rows in (
            ("shape mismatch (checkpoint vs model)", self.mismatched, shapes),
            ("missing from checkpoint", self.missing, {}),
            ("unexpected in checkpoint", self.unexpected, {}),
        ):
            if keys:
                lines.append(f"  {title}:")
                # Most telling keys first (the Q copies repeat what the heads say).
                ordered = sorted(keys, key=lambda k: (_key_rank(k), k))
                lines += [f"    {rows.get(k, k)}" for k in ordered[:_MAX_LISTED]]
                if len(ordered) > _MAX_LISTED:
                    lines.append(f"    ... and {len(ordered) - _MAX_LISTED} more")
        super().__init__("\n".join(lines), hint or None)  # the hint is what to do


_KEY_ORDER = ("_task_emb", "_action_masks", "_encoder", "_dynamics", "_reward", "_pi", "log_std")


def _key_rank(key: str) -> int:
    return next((i for i, p in enumerate(_KEY_ORDER) if key.startswith(p)), len(_KEY_ORDER))


# ---------------------------------------------------------------- reading
def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", trust_pickle: bool = False
) -> dict[str, Any]:
    """The raw state dict of a TD-MPC2 file (`{"model": sd}` or a bare `sd`).

    Read with :func:`mt_factored.artifacts.safe_pickle.load_torch`: weights only, or the
    restricted unpickler (tensordict/omegaconf stand-ins); a file that names any other
    callable is refused before it runs, unless ``trust_pickle`` (full unpickling: only for
    files from a source you trust).

    Raises:
        FileNotFoundError: no such file.
        PickleRefusedError: the file's pickle names a callable outside the allowlist.
        CheckpointError: truncated or corrupt file, or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingError(f"TD-MPC2 checkpoint {path} does not exist")
    try:
        obj = load_torch(path, map_location, trust_pickle=trust_pickle)
    except PickleRefusedError:
        raise
    except Exception as err:  # torch raises RuntimeError, EOFError, zip errors, ...
        raise CheckpointError(
            f"Could not read TD-MPC2 checkpoint {path} ({path.stat().st_size} bytes): the "
            f"file is truncated or corrupt ({type(err).__name__}: {err})"
        ) from err
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a TD-MPC2 state dict "
            "(expected {'model': state_dict} or a bare state dict)"
        )
    return dict(obj)


def detect_layout(state: Mapping[str, Any], source: str = "checkpoint") -> str:
    """The key layout, "new" or "old"; raises `CheckpointError` for the flat-Sequential one."""
    for key, value in state.items():
        one_d = isinstance(value, torch.Tensor) and value.dim() == 1
        if _NESTED_SEQUENTIAL.match(key) or (_TOP_WEIGHT.match(key) and one_d):
            raise CheckpointError(
                f"{source} uses the flat-Sequential layout of very early TD-MPC2 single-task "
                f"files (LayerNorm stored as separate numbered modules, e.g. {key!r}). Those "
                "files are known not to reproduce their published scores and are not "
                "supported; use another seed's file or train an expert with "
                "mt_factored.train_expert."
            )
    if DETACH_PREFIX + "0.weight" in state:
        return "new"
    if any(_OLD_Q_KEY.match(k) for k in state):
        return "old"
    if Q_PREFIX + "0.weight" in state:
        return "new"  # new layout without the detach copy (e.g. a bare module state dict)
    raise CheckpointMismatchError(
        source, hint=infer_hint(state), detail="It holds no Q-ensemble keys of either layout."
    )


def _strip_meta(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k.rpartition(".")[2] not in TD_META_KEYS}


def module_state_dict(
    state: Mapping[str, Any], model: ConfiguredModel, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Converts a file's state dict (either layout) to `model.state_dict()`'s keys.

    Buffers the old layout lacks (`_action_masks`, `log_std_*`) come from the model
    (i.e. from its config). Keys are not checked here; see `load_into`.
    """
    layout = detect_layout(state, source)
    state = _strip_meta(state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _OLD_Q_KEY.match(key) if layout == "old" else None
        if match:
            num = int(match.group(1))
            prefix = TARGET_PREFIX if key.startswith(OLD_TARGET_PREFIX) else Q_PREFIX
            key = f"{prefix}{num // 4}.{OLD_Q_FIELDS[num % 4]}"
        elif key.startswith(DETACH_PREFIX):
            online = state.get(Q_PREFIX + key[len(DETACH_PREFIX) :])
            if online is not None and not _same(online, value):
                log.warning("%s: %s differs from the _Qs copy; using _Qs", source, key)
            continue
        out[key] = value
    own = model.state_dict()
    for name in BUFFERS_FROM_CONFIG:
        if name in own and name not in out:
            out[name] = own[name].clone()
    return out


def _same(a: Any, b: Any) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == b.shape
        and torch.equal(a, b.to(a.device))
    )


def load_into(model: ModelT, state: Mapping[str, Any], source: str = "checkpoint") -> ModelT:
    """Loads a file's state dict (either layout) into `model`, strictly.

    Raises:
        CheckpointMismatchError: missing, unexpected or differently shaped tensors,
            or masks / log-std bounds that disagree with the model's config; the
            message names them and suggests the configuration the file fits.
    """
    converted = module_state_dict(state, model, source)
    own = model.state_dict()
    missing = set(own) - set(converted)
    unexpected = set(converted) - set(own)
    mismatched = {
        k: (tuple(converted[k].shape), tuple(own[k].shape))
        for k in set(own) & set(converted)
        if tuple(converted[k].shape) != tuple(own[k].shape)
    }
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(
            source,
            missing,
            unexpected,
            dict(sorted(mismatched.items())),
            infer_hint(state),
            detail=f"Model: {model.config.describe()}.",
        )
    wrong = [k for k in BUFFERS_FROM_CONFIG if k in own and not _same(own[k], converted[k])]
    if wrong:
        raise CheckpointMismatchError(
            source,
            hint=infer_hint(state),
            detail=f"Its {', '.join(wrong)} disagree with the config ({model.config.describe()}): "
            "action_dims or log_std bounds differ.",
        )
    model.load_state_dict(converted, strict=True)
    return model


def load_state_dict_any_layout(
    path: str | Path,
    model: ModelT,
    map_location: str | torch.device = "cpu",
    trust_pickle: bool = False,
) -> ModelT:
    """Reads `path` (either layout) into `model` and returns it."""
    return load_into(model, read_checkpoint(path, map_location, trust_pickle), str(path))


def config_for_state(
    state: Mapping[str, Any],
    task_set: str = "mt30",
    model_size: int | float | str | None = 5,
    source: str = "checkpoint",
) -> ExpertConfig:
    """The config a multi-task state dict is loaded into: the published `task_set` model of
    `model_size`, or with `model_size="auto"` (or None) the sizes read off the file (multi-task
    experts of custom sizes).

    Raises:
        CheckpointMismatchError: ``auto`` on a single-task file (the hint says how to name its
            task)."""
    if model_size in ("auto", None):
        arch = infer_architecture(state)
        if arch.get("task_dim", 0) == 0:
            raise CheckpointMismatchError(
                source, hint=infer_hint(state), detail="It is a single-task model."
            )
        sizes = {k: arch[k] for k in (*SIZE_FIELDS, "task_dim", "num_bins") if k in arch}
        return ExpertConfig.custom(task_set, **sizes)
    return ExpertConfig.from_size(model_size, task_set)


def single_task_config(state: Mapping[str, Any], task: str) -> ExpertConfig:
    """The single-task config of `task` with the sizes read off a state dict's shapes.

    Lets files of experts trained here (any size) load without naming their size.
    """
    arch = infer_architecture(state)
    if arch.get("task_dim", 0) != 0:
        raise CheckpointMismatchError(
            task, hint=infer_hint(state), detail="It is a multi-task model, not a single-task one."
        )
    base = ExpertConfig.single_task(task)
    sizes = {k: arch[k] for k in (*SIZE_FIELDS, "num_bins") if k in arch}
    for name in ("log_std_min", "log_std_dif"):
        if isinstance(state.get(name), torch.Tensor):
            sizes[name] = state[name].item()
    if "log_std_dif" in sizes:
        sizes["log_std_max"] = sizes.get("log_std_min", base.log_std_min) + sizes.pop("log_std_dif")
    return dataclasses.replace(base, **sizes)


# ---------------------------------------------------------------- writing
def public_state_dict(model: ConfiguredModel) -> dict[str, Any]:
    """`model`'s state in the public new layout, as TD-MPC2's own `state_dict()` has it."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    batch = {"__batch_size": torch.Size([model.config.num_q]), "__device": None}
    online = {k: v for k, v in state.items() if k.startswith(Q_PREFIX)}
    target = {k: v for k, v in state.items() if k.startswith(TARGET_PREFIX)}
    out = {k: v for k, v in state.items() if k not in online and k not in target}
    for prefix, tensors in (
        (Q_PREFIX, online),
        (DETACH_PREFIX, {DETACH_PREFIX + k[len(Q_PREFIX) :]: v for k, v in online.items()}),
        (TARGET_PREFIX, target),
    ):
        out.update(tensors)
        out.update({prefix + name: value for name, value in batch.items()})
    return out


def save_checkpoint(model: ConfiguredModel, path: str | Path) -> Path:
    """Atomically writes `{"model": public_state_dict(model)}` to `path`; returns the path."""
    return save_torch({"model": public_state_dict(model)}, path)

"""Turn an ``expert=`` recipe value into a loaded expert.

Accepted forms:
- ``/path/to/mt30-5M.pt``: a TD-MPC2 checkpoint file (either key layout);
- ``hub:ORG/NAME/path/in/repo.pt`` (optionally ``@revision``): downloaded once into the
  Hugging Face cache with ``hf_hub_download``; with ``HF_HUB_OFFLINE=1`` the cache is used;
- ``{task-name: checkpoint}``: one single-task expert per task (:class:`PerTaskExperts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mt_factored.artifacts.checksums import verify_hub_blob, verify_listed
from mt_factored.artifacts.remote import hub_file
from mt_factored.errors import InputError, MissingError
from mt_factored.expert.interface import Expert
from mt_factored.expert.model import TDMPC2Expert
from mt_factored.expert.per_task import PerTaskExperts

HUB_PREFIX = "hub:"
PUBLIC_EXPERT_HINT = (
    "The public multi-task experts live in the Hugging Face model repo nicklashansen/tdmpc2: "
    "`hf download nicklashansen/tdmpc2 multitask/mt30-5M.pt --local-dir checkpoints/` (`huggingface-cli download` before huggingface_hub 1.0) "
    "then pass expert=checkpoints/multitask/mt30-5M.pt, or pass "
    "expert=hub:nicklashansen/tdmpc2/multitask/mt30-5M.pt to download into the HF cache."
)


class ExpertNotFoundError(MissingError):
    """The expert named in a recipe cannot be found locally or in the HF cache."""


def parse_hub_spec(spec: str) -> tuple[str, str, str | None]:
    """``hub:ORG/NAME/path/file.pt[@rev]`` -> (repo_id, filename, revision)."""
    body = spec[len(HUB_PREFIX) :]
    revision = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
    parts = body.split("/")
    if len(parts) < 3 or not all(parts):
        raise InputError(
            f"bad hub expert spec {spec!r}",
            "expected hub:ORG/NAME/path/in/repo.pt[@revision], "
            "e.g. hub:nicklashansen/tdmpc2/multitask/mt30-5M.pt",
        )
    return "/".join(parts[:2]), "/".join(parts[2:]), revision


def resolve_checkpoint_path(spec: str) -> Path:
    """Local path of a checkpoint spec (downloading ``hub:`` specs into the HF cache)."""
    if spec.startswith(HUB_PREFIX):
        repo_id, filename, revision = parse_hub_spec(spec)
        path = hub_file(
            repo_id,
            filename,
            revision=revision,
            error=ExpertNotFoundError,
            offline_fix=f"on a machine with network run `hf download {repo_id} {filename}` (it "
            f"fills the same cache), or download it and pass expert=/path/to/{Path(filename).name}",
        )
        verify_hub_blob(path)  # the cached file still has the hash the Hub recorded
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ExpertNotFoundError(f"expert checkpoint {path} does not exist", PUBLIC_EXPERT_HINT)
    verify_listed(path)  # a shipped expert (listed in a SHA256SUMS beside it) must be intact
    return path


def expert_files(spec: str | Mapping[str, str]) -> dict[str, Path]:
    """The checkpoint file(s) an ``expert=`` value names: ``{"expert": path}`` or ``{task:
    path}`` (for recording their hashes in a run)."""
    if isinstance(spec, Mapping):
        return {str(task): resolve_checkpoint_path(str(p)) for task, p in spec.items()}
    return {"expert": resolve_checkpoint_path(str(spec))}


def load_expert(
    spec: str | Mapping[str, str],
    task_set: str = "mt30",
    model_size: int | float = 5,
    map_location: str = "cpu",
    trust_pickle: bool = False,
) -> Expert:
    """Load the expert a recipe names (see the module docstring for the forms).

    A shipped file listed in a ``SHA256SUMS`` manifest beside it is checked against it; every
    file is read without running code from it unless ``trust_pickle`` (see
    :func:`mt_factored.artifacts.safe_pickle.load_torch`)."""
    if isinstance(spec, Mapping):
        if not spec:
            raise InputError("expert mapping is empty: give {task-name: checkpoint, ...}")
        paths = {task: resolve_checkpoint_path(str(p)) for task, p in spec.items()}
        return PerTaskExperts(
            paths, task_set=task_set, map_location=map_location, trust_pickle=trust_pickle
        )
    if not isinstance(spec, str) or not spec:
        raise InputError(f"expert must be a path, a hub: spec or a mapping, got {spec!r}")
    path = resolve_checkpoint_path(spec)
    return TDMPC2Expert.from_checkpoint(
        path,
        task_set=task_set,
        model_size=model_size,
        map_location=map_location,
        trust_pickle=trust_pickle,
    )

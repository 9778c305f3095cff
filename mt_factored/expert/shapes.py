"""What a TD-MPC2 state dict's shapes say: its architecture, and the published size it fits.

Used to build a model for a file of unknown size (`model_size="auto"`, experts trained here)
and to turn a mismatch into a hint that names the configuration the file fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mt_factored.expert.config import MODEL_SIZES, SIZE_OVERRIDES, TASK_DIMS
from mt_factored.tasks import get_task_set

Q_PREFIX = "_Qs.params."
"""Prefix of the online Q ensemble's tensors (both layouts)."""


def infer_architecture(state: Mapping[str, Any]) -> dict[str, int]:
    """Architecture fields read off a state dict's shapes (either layout; fields it
    cannot tell are left out)."""
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    arch: dict[str, int] = {}
    if "_task_emb.weight" in shapes:
        arch["num_tasks"], arch["task_dim"] = shapes["_task_emb.weight"]
    else:
        arch["num_tasks"], arch["task_dim"] = 1, 0
    enc: list[tuple[int, ...]] = []  # encoder weight shapes, layer by layer
    while len(shapes.get(f"_encoder.state.{len(enc)}.weight", ())) == 2:
        enc.append(shapes[f"_encoder.state.{len(enc)}.weight"])
    if enc:
        first, last = enc[0], enc[-1]
        arch["num_enc_layers"] = len(enc)
        arch["enc_dim"], arch["obs_dim"] = first[0], first[1] - arch["task_dim"]
        arch["latent_dim"] = last[0]
    dyn = shapes.get("_dynamics.0.weight")
    if dyn is not None and len(dyn) == 2 and "latent_dim" in arch:
        arch["mlp_dim"] = dyn[0]
        arch["action_dim"] = dyn[1] - arch["latent_dim"] - arch["task_dim"]
    q = shapes.get(Q_PREFIX + "0.weight") or shapes.get(Q_PREFIX + "0")
    if q is not None:
        arch["num_q"] = q[0]
    if "_reward.2.weight" in shapes:
        arch["num_bins"] = shapes["_reward.2.weight"][0]
    return arch


SIZE_FIELDS = ("enc_dim", "mlp_dim", "latent_dim", "num_enc_layers", "num_q")


SINGLE_TASK_USE = (
    "on the command line name its task: 'expert={<task>: <path>}' (one file per task; "
    "sizes are read off the file), in Python load_single_task_expert(<path>, <task>)."
)


def infer_hint(state: Mapping[str, Any]) -> str:
    """A sentence naming the published configuration a state dict fits, if any."""
    arch = infer_architecture(state)
    if not {"latent_dim", "mlp_dim", "num_q"} <= set(arch):
        return ""
    facts = ", ".join(f"{k} {v}" for k, v in arch.items())
    for size, sizes in MODEL_SIZES.items():
        if arch["task_dim"] == 0:
            if all(arch.get(f) == sizes[f] for f in SIZE_FIELDS):
                return _single_task_hint(arch, size, facts)
            continue
        for set_name, dims in TASK_DIMS.items():
            want = {**sizes, **SIZE_OVERRIDES.get(set_name, {}).get(size, {})}
            if dims[size] != arch["task_dim"] or any(arch.get(f) != want[f] for f in SIZE_FIELDS):
                continue
            try:
                n_tasks = len(get_task_set(set_name))
            except ValueError:
                n_tasks = None
            if n_tasks not in (None, arch["num_tasks"]):
                continue
            return (
                f"this looks like {set_name}-{size}M; pass model_size={size}"
                + (f", task_set={set_name!r}" if set_name != "mt30" else "")
                + f" (file: {facts})."
            )
    if arch["task_dim"] == 0:
        return f"this looks like a single-task model ({facts}); {SINGLE_TASK_USE}"
    return (
        f'the file\'s shapes say {facts}; pass model_size="auto" (recipes: '
        "expert_model_size=auto) to read the sizes off the file, or build an ExpertConfig "
        "with these and pass config=."
    )


def _single_task_hint(arch: dict[str, int], size: int, facts: str) -> str:
    dims = (arch.get("obs_dim"), arch.get("action_dim"))
    fits = [t.name for t in get_task_set("mt30") if (t.obs_dim, t.action_dim) == dims]
    which = f" (mt30 tasks with these dims: {', '.join(fits)})" if fits else ""
    return f"this looks like a single-task {size}M model{which} (file: {facts}); {SINGLE_TASK_USE}"

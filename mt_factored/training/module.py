"""LightningModule that distills an expert world model into the factored student."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from mt_factored.distill import DistillConfig, distill_losses
from mt_factored.expert.interface import Expert
from mt_factored.student import FactoredStudent, StudentConfig

# Distinct streams for the noise generator: seed, global step and rank are mixed with
# large odd multipliers so that nearby (step, rank) pairs never share a seed.
_STEP_MIX = 1_000_003
_RANK_MIX = 7_919


class DistillModule(L.LightningModule):
    """Trains a :class:`FactoredStudent` to rank actions like ``expert`` (Fac-TDMPC Alg. 1).

    The expert is held outside the module's registered children: it is frozen, it
    is not part of the checkpoint (it is rebuilt from its own file on resume) and
    DDP does not wrap it. The noise of each step is drawn from a generator seeded
    by (seed, global step, rank), so an interrupted and resumed run draws exactly
    the noise an uninterrupted run would.

    Args:
        student: student architecture (dict form of :class:`StudentConfig`).
        distill: distillation settings (dict form of :class:`DistillConfig`).
        optim: ``lr``, ``enc_lr_scale``, ``weight_decay``, ``betas``, ``eps``.
        seed: base seed of the noise stream.
        expert: the frozen teacher; may be attached later with :meth:`attach_expert`.
    """

    def __init__(
        self,
        student: dict[str, Any],
        distill: dict[str, Any],
        optim: dict[str, Any],
        seed: int = 0,
        expert: Expert | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["expert"])
        self.student = FactoredStudent(StudentConfig.from_dict(student))
        self.distill_config = DistillConfig(**distill)
        self.optim = dict(optim)
        self.seed = int(seed)
        self._expert: list[Expert] = []
        if expert is not None:
            self.attach_expert(expert)

    # -- expert ---------------------------------------------------------------------
    def attach_expert(self, expert: Expert) -> None:
        """Use ``expert`` as the (frozen) teacher."""
        if isinstance(expert, torch.nn.Module):
            expert.eval().requires_grad_(False)
        self._expert[:] = [expert]

    @property
    def expert(self) -> Expert:
        if not self._expert:
            raise RuntimeError(
                "DistillModule has no expert attached; build it with expert=... or call "
                "attach_expert() before training"
            )
        return self._expert[0]

    def on_fit_start(self) -> None:
        if isinstance(self.expert, torch.nn.Module):
            self.expert.to(self.device)

    # -- training -------------------------------------------------------------------
    def _noise_generator(self) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed + _STEP_MIX * self.global_step + _RANK_MIX * self.global_rank)
        return gen

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = distill_losses(
            self.student, self.expert, batch, self.distill_config, self._noise_generator()
        )
        batch_size = batch["task"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=batch_size)
        self.log_dict(
            {f"train/{k}": v.detach() for k, v in losses.items() if k != "loss"},
            batch_size=batch_size,
        )
        return losses["loss"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        lr = float(self.optim["lr"])
        return torch.optim.Adam(
            self.student.param_groups(lr, float(self.optim.get("enc_lr_scale", 1.0))),
            lr=lr,
            betas=tuple(self.optim.get("betas", (0.9, 0.999))),
            eps=float(self.optim.get("eps", 1e-8)),
            weight_decay=float(self.optim.get("weight_decay", 0.0)),
        )

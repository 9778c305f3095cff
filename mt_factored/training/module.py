"""LightningModule that distills an expert world model into the factored student."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from mt_factored.distill import DistillConfig, distill_losses, terms_of
from mt_factored.errors import InputError, NonFiniteError
from mt_factored.expert.interface import Expert
from mt_factored.planning.base import MPPIConfig
from mt_factored.student import FactoredStudent, StudentConfig
from mt_factored.training.closed_loop import (
    ClosedLoopBuffer,
    ClosedLoopConfig,
    Timer,
    batch_generator,
    collect_round,
    mix_into_batch,
)

# Distinct streams for the noise generator: seed, global step and rank are mixed with
# large odd multipliers so that nearby (step, rank) pairs never share a seed.
_STEP_MIX = 1_000_003
_RANK_MIX = 7_919
CLOSED_LOOP_RANKS = "closed_loop_ranks"
"""Checkpoint key of every rank's closed-loop buffer (DDP)."""


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
        compile: compile the student's side of each step (``TrainConfig.compile``).
    """

    def __init__(
        self,
        student: dict[str, Any],
        distill: dict[str, Any],
        optim: dict[str, Any],
        seed: int = 0,
        expert: Expert | None = None,
        closed_loop: dict[str, Any] | None = None,
        closed_loop_tasks: dict[str, int] | None = None,
        planning: dict[str, Any] | None = None,
        expert_planning: dict[str, Any] | None = None,
        horizon: int = 3,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["expert"])
        self.student = FactoredStudent(StudentConfig.from_dict(student))
        self.distill_config = DistillConfig(**distill)
        self.optim = dict(optim)
        self.seed = int(seed)
        self.compile = bool(compile)
        self._expert: list[Expert] = []
        if expert is not None:
            self.attach_expert(expert)
        self.closed_loop = ClosedLoopConfig(**closed_loop) if closed_loop else ClosedLoopConfig()
        self.closed_loop_tasks = dict(closed_loop_tasks or {})
        self.closed_loop_planning = self.closed_loop.mppi(MPPIConfig(**(planning or {})))
        self.closed_loop_expert_planning = self.closed_loop.expert_mppi(
            MPPIConfig(**(expert_planning or {}))
        )
        self.collect_timer = Timer()
        if self.closed_loop.enabled:
            if not self.closed_loop_tasks:
                raise InputError("closed_loop needs the tasks to run (closed_loop_tasks)")
            if any(t.data_action for t, _ in terms_of(self.student, self.distill_config)):
                raise InputError(
                    "closed_loop rows have no recorded next observations, which "
                    "the selected terms read (consistency)",
                    "turn closed_loop off or give those terms a coefficient of 0",
                )
            cfg = self.student.config
            self.closed_loop_buffer = ClosedLoopBuffer(
                self.closed_loop.capacity, cfg.obs_dim, horizon, cfg.action_dim
            )

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

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        step = self.global_step
        if not self.closed_loop.due(step):
            return
        round_index = step // self.closed_loop.every_n_steps
        if int(self.closed_loop_buffer.rounds) >= round_index:
            return  # this round is in the buffer already (restored from a checkpoint)
        was_training = self.student.training
        self.student.eval()
        try:
            with self.collect_timer:
                rows = collect_round(
                    self.student,
                    self.closed_loop_tasks,
                    self.student.config.obs_dim,
                    self.closed_loop_planning,
                    self.closed_loop,
                    self.seed,
                    round_index,
                    self.global_rank,
                    self.device,
                    expert=self.expert if self.closed_loop.expert_planned else None,
                    expert_planning=self.closed_loop_expert_planning,
                )
        finally:
            self.student.train(was_training)
        self.closed_loop_buffer.add(*rows)
        self.closed_loop_buffer.rounds.fill_(round_index)
        self.log("closed_loop/collect_seconds", self.collect_timer.seconds, rank_zero_only=True)
        self.log("closed_loop/states", float(len(self.closed_loop_buffer)), rank_zero_only=True)

    def _with_closed_loop_rows(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.closed_loop.enabled or len(self.closed_loop_buffer) == 0:
            return batch
        num = int(round(self.closed_loop.share * batch["task"].shape[0]))
        if num == 0:
            return batch
        gen = batch_generator(self.seed, self.global_step, self.global_rank, self.device)
        rows = self.closed_loop_buffer.sample(num, gen)
        return mix_into_batch(batch, rows, expert_planned=self.closed_loop.expert_planned)

    # Under DDP each rank has its own buffer; the checkpoint (written by rank 0) carries all.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.closed_loop.enabled or self.trainer.world_size <= 1:
            return
        state = dict(self.closed_loop_buffer.state_dict())
        gathered = self.all_gather(state)  # {name: [world, ...]}
        checkpoint[CLOSED_LOOP_RANKS] = {k: v.cpu() for k, v in gathered.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ranks = checkpoint.get(CLOSED_LOOP_RANKS)
        if ranks is None:
            return
        rank = self.trainer.global_rank if self._trainer is not None else 0
        for name, value in ranks.items():
            checkpoint["state_dict"][f"closed_loop_buffer.{name}"] = value[rank]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        batch = self._with_closed_loop_rows(batch)
        losses = distill_losses(
            self.student,
            self.expert,
            batch,
            self.distill_config,
            self._noise_generator(),
            compile=self.compile,
        )
        self._require_finite_loss(losses, batch_idx)
        batch_size = batch["task"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=batch_size)
        self.log_dict(
            {f"train/{k}": v.detach() for k, v in losses.items() if k != "loss"},
            batch_size=batch_size,
        )
        return losses["loss"]

    def _require_finite_loss(self, losses: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Stop training at a NaN/Inf loss, naming the step, the terms and where the batch's
        windows come from (before the optimizer step: the weights stay as they were)."""
        if bool(torch.isfinite(losses["loss"].detach())):
            return
        terms = ", ".join(
            f"{k}={float(v):g}" for k, v in losses.items() if not bool(torch.isfinite(v.detach()))
        )
        where = "a batch of unknown origin"
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if hasattr(datamodule, "describe_batch"):
            accumulate = self.trainer.accumulate_grad_batches
            stream_batch = self.global_step * accumulate + batch_idx % accumulate
            where = f"stream batch {stream_batch} from {datamodule.describe_batch(stream_batch)}"
        raise NonFiniteError(
            f"non-finite loss at step {self.global_step} ({terms}) on {where}; training "
            "stopped before the optimizer step, no checkpoint of it was written"
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        lr = float(self.optim["lr"])
        return torch.optim.Adam(
            self.student.param_groups(lr, float(self.optim.get("enc_lr_scale", 1.0))),
            lr=lr,
            betas=tuple(self.optim.get("betas", (0.9, 0.999))),
            eps=float(self.optim.get("eps", 1e-8)),
            weight_decay=float(self.optim.get("weight_decay", 0.0)),
        )

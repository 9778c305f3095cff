"""Run by tests/test_ddp.py: distill with Lightning DDP on 2 CPU processes (gloo).

    python ddp_script.py OUT EXPERT DATA MAX_STEPS RUN_NAME

Each rank records the windows it trained on and its final student weights under
OUT/RUN_NAME-rank<r>.pt, so the test can check the ranks saw different data and ended with
identical weights. Epochs are 2 batches long, so a run crosses epoch boundaries; a second
call with the same RUN_NAME and more steps resumes the first from its last.ckpt.
Lightning's DDP launcher re-runs this same command for rank 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

from mt_factored import cli
from mt_factored.artifacts.configs import as_object
from mt_factored.training import build, resume


class RecordWindows(L.Callback):
    def __init__(self) -> None:
        self.obs: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.obs.append(batch["obs"][:, 0].detach().cpu().clone())


def main(out: Path, expert: str, data: str, max_steps: int, name: str) -> None:
    torch.set_num_threads(1)
    cfg = as_object(
        cli.compose(
            "train",
            overrides=[
                "recipe=smoke",
                "name=ddp",
                f"expert={expert}",
                "expert_model_size=auto",
                f"data={data}",
                "tasks=[cartpole-balance,reacher-easy]",
                f"run_dir={out / name}",
                "logger=none",
                "trainer=ddp",
                "trainer.accelerator=cpu",
                "trainer.devices=2",
                f"trainer.max_steps={max_steps}",
                "trainer.limit_train_batches=2",
                "checkpoint.every_n_steps=100",
                "trainer.enable_progress_bar=false",
                "eval.at_end=false",
            ],
        )
    )
    L.seed_everything(cfg.seed)
    task_set, tasks = build.build_task_set(cfg)
    module = build.build_module(cfg, task_set, build.build_expert(cfg))
    recorder = RecordWindows()
    trainer = build.build_trainer(cfg, Path(cfg.run_dir), callbacks=[recorder])
    trainer.fit(
        module,
        datamodule=build.build_datamodule(cfg, task_set, tasks),
        ckpt_path=resume.resolve_resume(
            cfg.resume, Path(cfg.run_dir), resume.run_record(cfg), module.hparams
        ),
    )
    rank = trainer.global_rank
    torch.save(
        {"obs": torch.cat(recorder.obs), "student": module.student.state_dict()},
        out / f"{name}-rank{rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])

"""The schema of ``python -m mt_factored.train`` and ``mt_factored.finetune``: every key a
training recipe may set, its default and what it means.

Registered as Hydra structured configs (``mt_factored.schema``), so a key that is not here
(or a value of the wrong type) fails when the config is composed, before anything runs.
Recipes (``mt_factored/recipes/recipe/*.yaml``) set only what differs from these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from mt_factored.distill import DistillConfig
from mt_factored.planning.base import MPPIConfig, MPPIOverrides
from mt_factored.planning.episodes import EpisodeConfig
from mt_factored.planning.fidelity import FidelityConfig
from mt_factored.student.config import StudentSpec
from mt_factored.training.closed_loop import ClosedLoopConfig


@dataclass
class LoaderConfig:
    """The stream of training windows."""

    batch_size: int = 512
    """Windows per optimizer step (per process)."""
    horizon: int = 3
    """H: steps of each window (observations t..t+H, the H actions between them)."""
    num_workers: int = 2
    """DataLoader worker processes, each streaming its own part of the windows (0: in the
    training process)."""
    task_weights: dict[str, float] = field(default_factory=dict)
    """``{task-name: weight}`` to oversample tasks; empty: uniform over all windows."""


@dataclass
class OptimConfig:
    """Adam on the student's parameters."""

    lr: float = 1.0e-4
    """Learning rate (Fac-TDMPC Table 2)."""
    enc_lr_scale: float = 1.0
    """The encoder's learning rate is ``lr * enc_lr_scale``."""
    weight_decay: float = 0.0
    """Adam's L2 penalty."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam's moment decay rates."""
    eps: float = 1.0e-8
    """Adam's denominator guard."""


@dataclass
class TrainEvalConfig(EpisodeConfig):
    """Planning in dm_control during and after training (the printed table comes from it).

    The student plans on the training module's device.
    """

    every_n_steps: int = 5000
    """Run the student (and the expert, once) every n optimizer steps; 0: never."""
    at_end: bool = True
    """Also evaluate when training ends."""
    tasks: list[str] | None = None
    """Task names to evaluate (null: the training tasks)."""
    compare_expert: bool = True
    """Evaluate the expert too (once, on the same seeds), for the ratio and the speedup."""
    student_planning: MPPIOverrides = field(default_factory=MPPIOverrides)  # type: ignore[valid-type]
    """MPPI settings of the student on top of ``planning`` (e.g. ``{num_samples: 128,
    iterations: 2, num_elites: 16, num_pi_trajs: 16}``); the fields left null are
    ``planning``'s, and with all of them null the student plans with the expert's budget. The
    table then also times the student at the expert's budget."""
    expert_cache: str | None = None
    """A JSON file of expert results reused across runs (:mod:`mt_factored.planning.expert_cache`:
    keyed by checkpoint SHA-256, task, seeds, episodes, planner settings, threads and library
    versions; a miss evaluates and adds the entry). The table marks cached returns. null: off."""
    refresh_expert_cache: bool = False
    """Evaluate the expert even where the cache has its entry (and overwrite it)."""
    fidelity_every_n_steps: int = 0
    """Log the planning-fidelity metric (``val/fidelity/...``, :mod:`mt_factored.planning.fidelity`)
    every n optimizer steps and at the end; 0: never. Both models plan at the student's budget."""
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    """States, candidates and seed of the fidelity metric."""
    compile: bool = False
    """Plan through ``torch.compile`` (the H-step returns; see ``mt_factored.nn.compiling``):
    the student in the evaluation, both models in the fidelity metric. Costs seconds of
    compilation per task shape, so it pays for long evaluations and large budgets, not for a
    short table at 128 x 2."""


@dataclass
class CheckpointConfig:
    """Lightning checkpoints under ``<run_dir>/checkpoints``: ``step<N>.ckpt`` and
    ``last.ckpt``, each written atomically (a temp file beside it, fsync, rename)."""

    every_n_steps: int = 1000
    """Write a checkpoint every n optimizer steps."""
    keep: int = 1
    """Step checkpoints kept (the newest; -1: all) beside ``last.ckpt``. When ``last.ckpt``
    is unreadable, a resume falls back to the newest intact one."""


@dataclass
class TrainerConfig:
    """Arguments of ``lightning.Trainer`` (``trainer=ddp``: several processes)."""

    accelerator: str = "auto"
    """cpu, gpu, mps or auto."""
    devices: Any = 1
    """Devices per node: a count, a list of indices, or auto."""
    strategy: str = "auto"
    """auto, ddp, ... (``trainer=ddp`` picks ddp on 2 devices: gloo on CPU, NCCL on GPU)."""
    num_nodes: int = 1
    """Machines taking part."""
    precision: str = "32-true"
    """Lightning precision (32-true, bf16-mixed, ...)."""
    max_steps: int = 1_000_000
    """Optimizer steps of the run (Fac-TDMPC: 1e6)."""
    gradient_clip_val: float | None = 10.0
    """Gradient-norm clip (Fac-TDMPC Table 2)."""
    log_every_n_steps: int = 50
    """Steps between two logged rows."""
    enable_progress_bar: bool = True
    """Lightning's progress bar."""
    limit_train_batches: Any = 1000
    """Batches per "epoch" (the window stream is endless: an epoch is a block of batches)."""
    max_epochs: int = -1
    """Unbounded: ``max_steps`` ends the run."""
    num_sanity_val_steps: int = 0
    """No validation loop."""


@dataclass
class WandbConfig:
    """Weights & Biases (``logger=wandb``)."""

    project: str = "mt_factored"
    """W&B project."""
    offline: bool = False
    """Log to disk only (no network; ``wandb sync`` later)."""
    log_model: bool = False
    """Upload checkpoints to W&B."""


@dataclass
class LoggerConfig:
    """Where training metrics go (under ``<run_dir>/logs``)."""

    csv: bool = True
    """CSV (a new ``version_N`` folder per start, so a resume keeps the earlier rows)."""
    tensorboard: bool = True
    """TensorBoard."""
    wandb: WandbConfig | None = None
    """Weights & Biases settings (null: off)."""


@dataclass
class PublishConfig:
    """Where the final student goes as a Hub model folder (model.safetensors, config.json and
    a model card with the final evaluation), ready for ``hf upload`` or ``hub push``."""

    dir: str | None = None
    """The folder (replaced whole at the end of the run; null: nothing is written)."""
    repo_id: str | None = None
    """The Hub id the card's commands show (null: ORG/<folder name>)."""
    datasets: list[str] | None = None
    """Hub datasets for the card's metadata (null: hf:ORG/NAME of ``data``, else none; the
    card's body names the data files anyway)."""
    base_model: list[str] | None = None
    """Hub ids of the teacher(s) for the card's ``base_model`` (null: the repo of a
    ``hub:ORG/NAME/file.pt`` expert, else none; the card names the teacher files anyway)."""


@dataclass
class TrainConfig:
    """``python -m mt_factored.train``: distill an expert into the factored student."""

    name: str = "${hydra:runtime.choices.recipe}"
    """Run name (default: the recipe's)."""
    seed: int = 1
    """Seeds torch, the window stream and the action noise."""
    threads: int | None = None
    """torch intra-op threads (null: torch's default, the machine's cores). Results depend on
    it (float reductions split differently), so a recipe whose table is quoted pins it."""
    compile: bool = False
    """Run the distillation step's student side (rollout, loss terms and their backward)
    through ``torch.compile``: Inductor's fused C++ kernels on CPU, CUDA graphs on GPU; falls
    back to eager with a warning if compiling fails. Equal to eager within fp32 round-off, so
    a run's numbers differ in the last digits; the first step pays the compile time."""
    task_set: str = "mt30"
    """Task set of the student and of the data's task ids (mt30, dmc_extra)."""
    tasks: list[str] | None = None
    """Train on these task names only (null: every task of the task set)."""
    expert: Any = MISSING
    """Teacher: a checkpoint path, ``hub:ORG/NAME/path/in/repo.pt[@revision]``, or
    ``{task-name: checkpoint}`` of single-task experts."""
    expert_model_size: int | str = 5
    """Size of the public multi-task expert (1, 5, 19, 48, 317), or auto to read the sizes
    off the file (multi-task experts of custom sizes); ignored for per-task experts."""
    data: Any = MISSING
    """Windows come from a prepared shard dir (``python -m mt_factored.data prepare ...``),
    a dir of official chunk_*.pt files, a list of chunk files, a Parquet dataset folder
    (``python -m mt_factored.data export ...``) or ``hf:ORG/NAME[@revision]`` (a Hub dataset
    repo of one, through the HF cache; converted once to Arrow in ``$MT_FACTORED_CACHE``)."""
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    resume: str | None = "auto"
    """auto: resume from ``<run_dir>/checkpoints/last.ckpt`` when it exists (the newest
    intact step checkpoint if it is unreadable); never; a ``.ckpt`` path; or force: like auto
    but also when the config or the expert's file differ from the checkpoint's (otherwise a
    difference is refused with a diff)."""
    trust_pickle: bool = False
    """Unpickle expert checkpoints fully (this runs whatever code a file contains: only for
    files from a source you trust). false: a file whose pickle names anything but tensors,
    plain containers and tensordict/omegaconf stand-ins is refused before it runs."""
    run_dir: str = "runs/${name}"
    """Checkpoints, logs and the Hydra record of the run."""
    student: StudentSpec = field(default_factory=StudentSpec)
    """The student's sizes and agents (``model@student=<name>`` picks another set of sizes)."""
    closed_loop: ClosedLoopConfig = field(default_factory=ClosedLoopConfig)
    """States the student's own planner reaches, mixed into the batches (off by default)."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """The distillation loss (``distill=mse``: the regression ablation)."""
    planning: MPPIConfig = field(default_factory=MPPIConfig)
    """MPPI settings of the evaluation (the student's own on top: eval.student_planning)."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    """The final student as a Hub model folder (``publish.dir=...``; the quickstart writes
    checkpoints/students/quickstart)."""
    profile: str | None = None
    """A JSON file for the time of each step split into data / expert / student / backward /
    optimiser, the windows seen per task, a digest of every batch and the peak memory of the
    process and its loader workers (:mod:`mt_factored.training.profile`; one file per rank).
    null: off."""


@dataclass
class FinetuneConfig(TrainConfig):
    """``python -m mt_factored.finetune``: extend a pretrained student to new tasks (and
    embodiments) and distill them; ``task_set`` names the set the new tasks' data and expert
    were recorded in (their task ids), ``tasks`` the tasks to finetune on."""

    pretrained: str | None = None
    """The student to start from: a folder written by save_pretrained (or ``hf download``), a
    Hub id ORG/NAME (the HF cache when offline), or a Lightning .ckpt of mt_factored.train.
    null: no pretrained weights (a fresh student over ``base_task_set`` with the ``student``
    sizes)."""
    from_scratch: bool = False
    """Train the same extended architecture from fresh weights on the same data and steps
    (the baseline to compare a finetuned student with)."""
    base_task_set: str = "mt30"
    """Tasks of a fresh student when pretrained is null (they come first, as in a pretrained
    one)."""
    init_from: str = "nearest"
    """First task-embedding row of each new task: nearest (same body, then closest joint and
    observation counts; mt_factored.student.extend.nearest_task), random, or a task name."""
    freeze_shared: bool = False
    """Freeze the shared per-joint networks (dynamics+reward, value, policy) and the
    pretrained task/joint embedding rows: only the encoder and the new rows train."""

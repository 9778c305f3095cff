"""The schema of the analysis commands: ``python -m mt_factored.evaluate``, ``budget_sweep``,
``viz`` and ``partition``. Every key, its default and what it means.

The commands that plan in dm_control share one :class:`~mt_factored.planning.episodes.
EpisodeConfig` (episodes, seed, eval_mode, max_steps, latency_repeats) at their top level,
as training's evaluation has it under ``eval``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from mt_factored.analysis.budget.grid import BudgetScaling
from mt_factored.analysis.partition.discover import Discovery
from mt_factored.errors import InputError
from mt_factored.planning.base import MPPIConfig
from mt_factored.planning.episodes import EpisodeConfig
from mt_factored.planning.fidelity import FidelityConfig


@dataclass(kw_only=True)
class ModelsConfig(EpisodeConfig):
    """Which expert runs, on which tasks, where (what every analysis command that plans shares)."""

    expert: Any = None
    """Expert: a checkpoint path, ``hub:ORG/NAME/path.pt``, or ``{task-name: checkpoint}``.
    null: none."""
    expert_model_size: int | str = 5
    """Size of a public multi-task expert (1, 5, 19, 48, 317) or auto (sizes off the file)."""
    trust_pickle: bool = False
    """Unpickle the expert's file fully (runs whatever code it contains: only for files from a
    source you trust); false: refused when its pickle names more than tensors and containers."""
    task_set: str = "mt30"
    """Task set of the expert's task ids (a student uses its own)."""
    tasks: list[str] = field(default_factory=lambda: ["cartpole-balance"])
    """Tasks to run (every cell's, in the budget sweep)."""
    device: str = "cpu"
    """torch device of the models (cpu, cuda, cuda:1, mps)."""
    threads: int | None = None
    """torch intra-op threads (null: torch's default). The budget sweep does not mix
    latencies of different thread counts in one results file."""
    compile: bool = False
    """Plan through ``torch.compile`` (the H-step returns of every model: fused C++ kernels
    on CPU, CUDA graphs on GPU; falls back to eager with a warning if compiling fails).
    Equal to eager within fp32 round-off; costs seconds of compilation per model and plan
    shape, so it pays for long evaluations and large budgets."""


@dataclass(kw_only=True)
class ModelRunConfig(ModelsConfig):
    """An expert and one student, with the MPPI settings of both."""

    student: str | None = None
    """Student to run: a Lightning checkpoint (.ckpt), a saved student folder or a Hub id.
    null: none."""
    planning: MPPIConfig = field(default_factory=MPPIConfig)
    """MPPI settings of every model."""


@dataclass(kw_only=True)
class EvaluateConfig(ModelRunConfig):
    """``python -m mt_factored.evaluate``: returns and planning latency in dm_control."""

    video: bool = False
    """Write an mp4 of each model's first episode per task, ``<model>-<task>.mp4`` in out_dir
    (every model's first episode has the same env seed; needs MUJOCO_GL=egl or osmesa)."""
    video_layout: str = "separate"
    """separate (one mp4 per model and task) or side_by_side (also ``<task>.mp4``: student and
    expert next to each other, same seed). Needs video=true."""
    filmstrip: int = 0
    """Also write ``<task>-filmstrip.png`` in out_dir: a row per model of this many evenly
    spaced frames (0: none). Needs video=true."""
    progress_bar: bool = True
    """Progress bars (control steps per task, rate, ETA)."""
    mpc: bool = True
    """false: every model acts with its policy prior alone, no planning (TD-MPC2's ``mpc``
    switch; ``planning`` is then unused). A student whose prior scores well alone but
    poorly under MPPI ranks the planner's candidates wrongly."""
    out: str | None = None
    """Also write the results as JSON here (``hub push ... results=`` reads it)."""
    perturb: Any = None
    """Robustness (Fac-TDMPC 5.5): a spec or a list of specs applied to the planned action
    before the env steps: ``dummy:<joint>`` (that entry becomes uniform noise in [-1, 1]),
    ``scale:<joint>:<factor>`` (that entry times factor); ``<joint>`` = 0-based action index,
    the actuator name (walker: right_hip ... left_ankle) or ``*`` for every joint, one run
    each. Every model runs unperturbed too (same seeds); prints a table and writes
    robustness.json + robustness.png to out_dir (the JSON also to ``out``); no latency or
    video. null: off."""
    perturb_plot: str | None = None
    """Also write the robustness plot here, e.g. docs/robustness_walker-stand.png."""
    out_dir: str = "runs/evaluate/${now:%Y-%m-%d_%H-%M-%S}"
    """Folder of the videos, the robustness results and the Hydra record."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.video_layout not in ("separate", "side_by_side"):
            raise InputError(
                f"video_layout must be separate or side_by_side, got {self.video_layout!r}"
            )
        if (self.video_layout != "separate" or self.filmstrip) and not self.video:
            raise InputError("video_layout and filmstrip need video=true")


@dataclass(kw_only=True)
class VizConfig(ModelRunConfig):
    """``python -m mt_factored.viz``: t-SNE of per-joint latents and per-joint H-step returns.

    ``student`` is required; with ``expert`` its H-step return of the student's plans is
    added to the returns plot.
    """

    stride: int = 1
    """t-SNE input: every stride-th visited state."""
    max_points: int = 4000
    """At most this many latents in the t-SNE (a random subset)."""
    perplexity: float = 30.0
    """t-SNE perplexity."""
    returns_task: str | None = None
    """Task of the returns plot (null: the first of ``tasks`` with the most joints)."""
    out: str = "${out_dir}"
    """Folder of the PNGs: tsne_joints.png, tsne_embodiments.png, returns_<task>.png."""
    dpi: float = 120
    """Resolution of the PNGs."""
    out_dir: str = "runs/viz/${now:%Y-%m-%d_%H-%M-%S}"
    """Folder of the Hydra record (and of the PNGs unless ``out`` says otherwise)."""


@dataclass
class GridConfig:
    """The MPPI budgets of the sweep: every (samples, iterations) pair."""

    num_samples: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    """Trajectories sampled per iteration."""
    iterations: list[int] = field(default_factory=lambda: [1, 2, 4, 6])
    """Optimisation iterations per control step."""


@dataclass
class ReferenceBudget:
    """The budget the others are compared with (the paper's default); must be in the grid."""

    num_samples: int = 512
    """Its samples."""
    iterations: int = 6
    """Its iterations."""


@dataclass(kw_only=True)
class BudgetSweepConfig(ModelsConfig):
    """``python -m mt_factored.budget_sweep``: return and latency over MPPI budgets.

    Results go to ``out`` after every cell; re-running with the same ``out`` skips finished
    cells.
    """

    progress_bar: bool = True
    """Progress bars (cells, control steps, rate, ETA)."""

    students: Any = None
    """Students: a Lightning .ckpt, a student folder or a Hub id, or ``{label: path, ...}`` to
    compare several (e.g. students of different sizes). null: none."""
    grid: GridConfig = field(default_factory=GridConfig)
    scaling: BudgetScaling = field(default_factory=BudgetScaling)
    """Elites and policy trajectories per budget: elites = max(min_elites,
    floor(elite_fraction * samples)), policy trajectories = min(max_pi_trajs,
    floor(pi_fraction * samples)); at 512 samples Table 2's 64 elites and 24 trajectories."""
    reference: ReferenceBudget = field(default_factory=ReferenceBudget)
    keep_fraction: float = 0.95
    """Report the smallest budget keeping at least this share of the reference return."""
    out_dir: str = "runs/budget_sweep/${now:%Y-%m-%d_%H-%M-%S}"
    """Folder of the results, the plots (unless ``plot_dir``) and the Hydra record."""
    out: str = "${out_dir}/budget_sweep.json"
    """Results JSON (pass the same path again to resume)."""
    plot_dir: str = "${out_dir}"
    """Where the plots go (budget_return_vs_ms.png, budget_grid.png); e.g. plot_dir=docs."""
    plot_prefix: str = "budget_"
    """File-name prefix of the plots."""
    planning: MPPIConfig = field(default_factory=MPPIConfig)
    """Horizon, std bounds and temperature (samples and elites come from the grid)."""


@dataclass(kw_only=True)
class PartitionConfig(Discovery):
    """``python -m mt_factored.partition``: sub-dynamics discovery (after ED2). Groups a
    task's action dims into agents by the state changes they drive, prints the evidence and
    writes a train recipe ``recipe/<name>.yaml`` (= ``<base>`` + ``student.partitions``)."""

    data: Any = MISSING
    """Transitions: a prepared shard dir, official chunk file(s), or a folder of chunks."""
    task: Any = MISSING
    """A task name, or a list of names (one partition each, all in one recipe)."""
    task_set: str = "mt30"
    """Task set of the data's task ids."""
    max_episodes: int | None = 1000
    """Episodes per task used (a seeded random subset when there are more); null: all."""
    seed: int = 0
    """Seed of that subset."""
    base: str = "quickstart"
    """The written recipe extends this recipe (``recipe/<base>.yaml``)."""
    name: str | None = None
    """Recipe name (null: ``<base>-<task>-partition``). Only generated recipes are
    overwritten."""
    recipe_dir: str | None = None
    """Folder of the written recipe (null: the package's recipes/recipe)."""
    write_recipe: bool = True
    """Write the recipe (false: only print and write partition.json)."""
    out_dir: str = "runs/partition/${now:%Y-%m-%d_%H-%M-%S}"
    """partition.json (influence, affinity, merges, partition per task) goes here."""
    expert: Any = None
    """``method=interaction``: the expert whose planning return is measured (a checkpoint,
    ``hub:...`` or ``{task-name: checkpoint}``)."""
    expert_model_size: int | str = 5
    """Size of a public multi-task expert (1, 5, 19, 48, 317) or auto."""
    interaction_states: int = 256
    """``method=interaction``: data states per task at which the score is averaged."""
    interaction_horizon: int = 3
    """``method=interaction``: steps of the measured return (0: the expert's Q of the first
    action alone; 3: MPPI's planning return)."""
    interaction_threshold: float = 0.2
    """``method=interaction``: joints whose pair score exceeds this share an agent (the score
    is 0 for an additive pair and about 1 for a pure product a_i * a_j)."""


@dataclass(kw_only=True)
class FidelityCommandConfig(ModelsConfig):
    """``python -m mt_factored.fidelity``: does the student's MPPI pick what the expert's would?

    At fixed states per task (from the data and from the student's own episodes) both models
    plan at the same budget and the expert's H-step return scores both plans
    (:mod:`mt_factored.planning.fidelity`). Seconds per task instead of an evaluation run.
    """

    student: str = MISSING
    """The student: a Lightning .ckpt, a saved student folder or a Hub id."""
    data: Any = None
    """The training data (a prepared shard dir or official chunks) for the data states;
    null: only the student's own states."""
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    """States, candidates and seed of the metric."""
    planning: MPPIConfig = field(
        default_factory=lambda: MPPIConfig(
            num_samples=128, iterations=2, num_elites=16, num_pi_trajs=16
        )
    )
    """MPPI settings of BOTH planners (the same budget; default the quickstart student's)."""
    out: str | None = None
    """Also write the results as JSON here."""
    out_dir: str = "runs/fidelity/${now:%Y-%m-%d_%H-%M-%S}"
    """Folder of the Hydra record."""

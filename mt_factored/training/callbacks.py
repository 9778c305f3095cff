"""Callbacks: periodic evaluation of the student (and the expert) in dm_control, and the
planning-fidelity metric."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from mt_factored.planning.base import MPPIConfig
from mt_factored.planning.episodes import (
    EpisodeConfig,
    EpisodeStats,
    evaluate_tasks,
    single_env_latency_ms,
)
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.expert_cache import ExpertResultCache, cache_key
from mt_factored.planning.fidelity import (
    METRICS,
    FidelityConfig,
    FidelityProbe,
    TaskFidelity,
    summary,
)
from mt_factored.planning.mppi import MPPIPlanner
from mt_factored.planning.student_adapter import StudentPlanningModel
from mt_factored.training.config import TrainEvalConfig

log = logging.getLogger(__name__)


class PlanningEvalCallback(L.Callback):
    """Every ``eval.every_n_steps`` optimizer steps (and at the end with ``eval.at_end``), plan with the student in
    dm_control and log ``eval/<task>/student_return``; the expert is evaluated once on the
    same seeds (``eval/<task>/expert_return``) so the ratio is visible while training.

    The student plans with ``student_planning`` when given (e.g. the smaller budget that
    ``python -m mt_factored.budget_sweep`` found keeps its return), else with ``planning``
    like the expert; with a different budget its single-env latency at the expert's
    ``planning`` is measured too (``extra["plan_ms_at_expert_budget"]``) so the table shows
    the speedup at equal settings beside the one at the student's own budget.

    Runs on global rank 0 only; other ranks wait at the next collective.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        task_ids: Sequence[int],
        obs_dim: int,
        planning: MPPIConfig,
        evaluation: TrainEvalConfig | None = None,
        student_planning: MPPIConfig | None = None,
        expert_checkpoints: dict[str, str] | None = None,
        expert_cache: ExpertResultCache | None = None,
    ) -> None:
        super().__init__()
        if len(tasks) != len(task_ids):
            raise ValueError("tasks and task_ids must have the same length")
        self.tasks, self.task_ids = list(tasks), list(task_ids)
        self.obs_dim, self.planning = obs_dim, planning
        self.evaluation = evaluation or TrainEvalConfig()
        self.episodes = EpisodeConfig.of(self.evaluation)
        self.student_planning = student_planning or planning
        self.expert_results: dict[str, EpisodeStats] = {}
        self.last_results: dict[str, EpisodeStats] = {}
        self._last_step_evaluated = -1
        self.expert_checkpoints = dict(expert_checkpoints or {})
        self.expert_cache = expert_cache

    def _evaluate_expert(self, planner: MPPIPlanner, device) -> dict[str, EpisodeStats]:
        """The expert's results: from the cache when it holds this evaluation (the latency
        is still measured now, beside the student's), else evaluated and cached."""
        key = None
        covered = all(t in self.expert_checkpoints for t in self.tasks)
        if self.expert_cache is not None and covered:
            files = {t: self.expert_checkpoints[t] for t in self.tasks}
            key, facts = cache_key(files, self.episodes, self.planning)
            cached = self.expert_cache.get(key)
            if cached is not None:
                log.info("expert returns from the cache %s", self.expert_cache.path)
                if self.episodes.latency_repeats > 0:
                    for task, ms in self._latencies(planner, device).items():
                        cached[task].plan_ms_single_env = ms
                return cached
        results = self._evaluate(planner, device)
        if key is not None:
            self.expert_cache.put(key, results, facts)
        return results

    def _latencies(self, planner: MPPIPlanner, device) -> dict[str, float]:
        """Single-env planning ms per task (``latency_repeats`` calls each)."""
        return {
            task: single_env_latency_ms(
                planner,
                task,
                task_id,
                self.obs_dim,
                repeats=self.episodes.latency_repeats,
                seed=self.episodes.seed,
                device=device,
            )
            for task, task_id in zip(self.tasks, self.task_ids, strict=True)
        }

    def _evaluate(self, planner: MPPIPlanner, device) -> dict[str, EpisodeStats]:
        return evaluate_tasks(
            planner,
            dict(zip(self.tasks, self.task_ids, strict=True)),
            self.obs_dim,
            self.episodes,
            device,
        )

    @rank_zero_only
    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_step_evaluated:
            return
        self._last_step_evaluated = step
        was_training = pl_module.training
        pl_module.eval()
        try:
            student_model = StudentPlanningModel(pl_module.student, compile=self.evaluation.compile)
            student_planner = MPPIPlanner(
                student_model, self.student_planning, generator=self.episodes.seed
            )
            self.last_results = self._evaluate(student_planner, pl_module.device)
            if self.student_planning != self.planning and self.episodes.latency_repeats > 0:
                at_expert_budget = MPPIPlanner(
                    student_model, self.planning, generator=self.episodes.seed
                )
                for task, ms in self._latencies(at_expert_budget, pl_module.device).items():
                    self.last_results[task].extra["plan_ms_at_expert_budget"] = ms
            if self.evaluation.compare_expert and not self.expert_results:
                expert_planner = MPPIPlanner(
                    ExpertPlanningModel(pl_module.expert),
                    self.planning,
                    generator=self.episodes.seed,
                )
                self.expert_results = self._evaluate_expert(expert_planner, pl_module.device)
        finally:
            pl_module.train(was_training)
        metrics = {}
        for task, stats in self.last_results.items():
            metrics[f"eval/{task}/student_return"] = stats.mean
            metrics[f"eval/{task}/student_plan_ms"] = stats.plan_ms_per_call
            if task in self.expert_results:
                metrics[f"eval/{task}/expert_return"] = self.expert_results[task].mean
        if self.last_results:
            metrics["eval/student_return_mean"] = sum(
                s.mean for s in self.last_results.values()
            ) / len(self.last_results)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        log.info(
            "step %d eval: %s",
            step,
            ", ".join(f"{t}={s.mean:.1f}" for t, s in self.last_results.items()),
        )

    def evaluate_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Evaluate at the current step unless already done there (e.g. after ``fit`` on a
        checkpoint that had already reached ``max_steps``: Lightning then skips the
        training loop and ``on_train_end``)."""
        self._run(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = self.evaluation.every_n_steps
        if every > 0 and trainer.global_step % every == 0:
            self._run(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.evaluation.at_end:
            self._run(trainer, pl_module)


class FidelityCallback(L.Callback):
    """Every ``every_n_steps`` optimizer steps and at the end, score the student's planning
    against the expert's (:class:`~mt_factored.planning.fidelity.FidelityProbe`) and log
    ``val/fidelity/<task>/<source>/<metric>`` and ``val/fidelity/regret``.

    The data states come from the run's data module; the expert's plans at them are computed
    at the first round and reused. Runs on global rank 0 only.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        task_ids: Sequence[int],
        obs_dim: int,
        planning: MPPIConfig,
        config: FidelityConfig,
        every_n_steps: int,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.tasks = dict(zip(tasks, task_ids, strict=True))
        self.obs_dim, self.planning, self.config = obs_dim, planning, config
        self.every_n_steps, self.compile = every_n_steps, compile
        self.probe: FidelityProbe | None = None
        self.last_results: dict[str, dict[str, TaskFidelity]] = {}
        self._last_step = -1

    @rank_zero_only
    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        if self.probe is None:
            datamodule = trainer.datamodule
            store = getattr(datamodule, "store", None) if datamodule is not None else None
            self.probe = FidelityProbe(
                pl_module.expert,
                self.tasks,
                self.obs_dim,
                self.planning,
                store=store,
                config=self.config,
                device=pl_module.device,
                compile=self.compile,
            )
        was_training = pl_module.training
        pl_module.eval()
        try:
            self.last_results = self.probe.measure(pl_module.student)
        finally:
            pl_module.train(was_training)
        metrics = {f"val/fidelity/{k}": v for k, v in summary(self.last_results).items()}
        for task, by_source in self.last_results.items():
            for source, r in by_source.items():
                for name in METRICS:
                    metrics[f"val/fidelity/{task}/{source}/{name}"] = getattr(r, name)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        log.info("step %d fidelity: regret %.3f", step, metrics.get("val/fidelity/regret", 0))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self._run(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.every_n_steps > 0:
            self._run(trainer, pl_module)

"""torch.compile paths: equal to eager within fp32 round-off, and a clean eager fallback."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny import tiny_expert_config

from mt_factored.expert import TDMPC2Expert
from mt_factored.nn import compiling
from mt_factored.nn.compiling import Compiled, compile_mode
from mt_factored.planning import ExpertPlanningModel, MPPIConfig, MPPIPlanner
from mt_factored.planning.student_adapter import StudentPlanningModel
from mt_factored.student import FactoredStudent, StudentConfig
from mt_factored.tasks import get_task_set

BUDGET = MPPIConfig(num_samples=64, iterations=3, num_elites=8, num_pi_trajs=8)
TASKS = ("walker-stand",)  # 6 joints, one agent each (one compiled graph keeps this fast)


def tiny_student() -> FactoredStudent:
    torch.manual_seed(0)
    config = StudentConfig.for_task_set(
        "mt30", latent_dim=16, mlp_dim=32, enc_dim=32, task_dim=8, agent_dim=8
    )
    student = FactoredStudent(config)
    with torch.no_grad():  # reward and value heads start at 0: make the returns informative
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return student.eval()


def plan_episode(model, task_ids: list[int], obs_dim: int, steps: int = 3) -> list[torch.Tensor]:
    """Actions of a few consecutive plans (warm-started) for two envs of each task."""
    planner = MPPIPlanner(model, BUDGET, generator=7)
    gen = torch.Generator().manual_seed(3)
    out = []
    for task_id in task_ids:
        task = torch.full((2,), task_id)
        for t in range(steps):
            obs = torch.randn(2, obs_dim, generator=gen)
            out.append(planner.plan(obs, task, t0=t == 0))
    return out


def test_compiled_student_planning_equals_eager():
    student = tiny_student()
    ids = [student.config.task_names.index(t) for t in TASKS]
    dim = student.config.obs_dim
    eager = plan_episode(StudentPlanningModel(student, generator=1), ids, dim)
    compiled = plan_episode(StudentPlanningModel(student, generator=1, compile=True), ids, dim)
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def _fused(model: StudentPlanningModel) -> StudentPlanningModel:
    model.fuses_iterations = True  # what compile=true sets, here without compiling
    return model


def test_the_students_fused_iterations_draw_what_the_generic_loop_draws():
    """``StudentPlanningModel.iterate`` (the path compile=true compiles whole) draws every
    random number the per-iteration loop draws: the same plans, bit for bit, in evaluation
    and exploration, with and without the prior anchor."""
    student = tiny_student()
    ids = [student.config.task_names.index(t) for t in ("cartpole-balance", "walker-stand")]
    for prior_weight in (0.0, 3.0):
        budget = dataclasses.replace(BUDGET, prior_weight=prior_weight)
        for eval_mode in (True, False):
            plans = []
            for model in (
                _fused(StudentPlanningModel(student, generator=1)),
                StudentPlanningModel(student, generator=1),
            ):
                planner = MPPIPlanner(model, budget, generator=7)
                gen = torch.Generator().manual_seed(3)
                obs = torch.randn(3, 4, student.config.obs_dim, generator=gen)
                task = torch.tensor(ids * 2)
                plans.append(
                    torch.stack(
                        [
                            planner.plan(o, task, t0=t == 0, eval_mode=eval_mode)
                            for t, o in enumerate(obs)
                        ]
                    )
                )
            torch.testing.assert_close(plans[0], plans[1], rtol=0, atol=0)


def test_compiled_expert_planning_equals_eager():
    torch.manual_seed(0)
    expert = TDMPC2Expert(tiny_expert_config()).eval().requires_grad_(False)
    with torch.no_grad():
        for p in expert.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids = [get_task_set("mt30").index(t) for t in TASKS]
    eager = plan_episode(ExpertPlanningModel(expert, generator=1), ids, expert.obs_dim)
    compiled = plan_episode(
        ExpertPlanningModel(expert, generator=1, compile=True), ids, expert.obs_dim
    )
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_compile_modes_per_device():
    assert compile_mode("cuda") == "reduce-overhead"  # CUDA graphs
    assert compile_mode("cpu") == "default"  # Inductor's C++ kernels
    assert compile_mode("mps") == "default"


def test_failed_compilation_warns_once_and_runs_eagerly(monkeypatch):
    """A backend that cannot compile (no C++ compiler, no CUDA toolchain) must not fail
    the command: one warning, then the eager function, with its exact result."""

    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C++ compiler found")

    real_compile = torch.compile
    modes = []

    def compile_with_broken_backend(fn, mode=None, dynamic=None):
        modes.append(mode)
        return real_compile(fn, backend=broken_backend, dynamic=dynamic)

    monkeypatch.setattr(compiling.torch, "compile", compile_with_broken_backend)
    calls = []

    def fn(x):
        calls.append(1)
        return x.sin() * 2

    compiled = Compiled(fn, "test function")
    x = torch.linspace(0, 1, 5)
    with pytest.warns(RuntimeWarning, match="torch.compile of test function failed"):
        first = compiled(x)
    torch.testing.assert_close(first, fn(x), rtol=0, atol=0)
    assert compiled.fallback is not None and "no C++ compiler" in compiled.fallback
    assert modes == ["default"]  # CPU tensors: no CUDA graphs asked for
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        torch.testing.assert_close(compiled(x), fn(x), rtol=0, atol=0)


def test_errors_of_the_function_itself_are_not_swallowed():
    def fn(x):
        if x.shape[0] != 3:
            raise ValueError("needs 3 rows")
        return x

    compiled = Compiled(fn)
    with pytest.raises(ValueError, match="needs 3 rows"):
        compiled(torch.zeros(2))
    assert compiled.fallback is None


def test_compiled_distillation_step_equals_eager(expert):
    """Losses and every gradient of one distillation step, compiled vs eager."""
    from mt_factored.constants import ACTION, OBS, TASK
    from mt_factored.distill import DistillConfig, distill_losses

    student = tiny_student().train()
    cfg = DistillConfig(num_noise_samples=4)
    names = student.config.task_names
    gen = torch.Generator().manual_seed(0)
    task = torch.tensor([names.index(t) for t in ("cartpole-balance", "walker-stand")] * 4)
    mask = student.merge_actions(student.agent_action_mask(task), task)
    batch = {
        OBS: torch.randn(8, 4, student.config.obs_dim, generator=gen),
        ACTION: (torch.rand(8, 3, student.config.action_dim, generator=gen) * 2 - 1)
        * mask[:, None],
        TASK: task,
    }

    def step(compile: bool):
        student.zero_grad(set_to_none=True)
        losses = distill_losses(
            student, expert, batch, cfg, torch.Generator().manual_seed(1), compile=compile
        )
        losses["loss"].backward()
        grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
        return {k: v.detach() for k, v in losses.items()}, grads

    eager_losses, eager_grads = step(False)
    compiled_losses, compiled_grads = step(True)
    assert eager_losses.keys() == compiled_losses.keys()
    for key in eager_losses:
        torch.testing.assert_close(compiled_losses[key], eager_losses[key], rtol=1e-5, atol=1e-6)
    assert eager_grads.keys() == compiled_grads.keys() and eager_grads
    for name, grad in eager_grads.items():
        # Sums of many terms: compare against the gradient's own scale (fp32 round-off of
        # reassociated reductions), not element by element.
        scale = float(grad.abs().max())
        err = float((compiled_grads[name] - grad).abs().max())
        assert err <= 1e-4 * scale + 1e-6, f"{name}: max error {err:g} at scale {scale:g}"


def test_compile_keys_reach_the_planners(expert):
    """``compile`` of the analysis commands (and of the fidelity metric) selects the compiled
    returns; off, the eager function (wiring only: nothing is compiled here)."""
    from mt_factored.analysis.models import LoadedModel
    from mt_factored.planning import expert_adapter, student_adapter

    student = tiny_student()
    for flag in (False, True):
        loaded = LoadedModel("student", "student", student, 0, {}, None, compile=flag)
        model = loaded.planning_model(generator=0)
        compiled = model._returns is student_adapter._COMPILED_RETURNS
        assert compiled == flag
        assert (model._iterations is student_adapter._COMPILED_ITERATIONS) == flag
        assert model.fuses_iterations == flag
        assert (model._returns is student_adapter.student_returns) == (not flag)
        expert_model = LoadedModel("expert", "expert", expert, 0, {}, None, compile=flag)
        assert (expert_model.planning_model()._compiled is not None) == flag
    assert expert_adapter._COMPILED_RETURNS.fn is expert_adapter.expert_returns

    from mt_factored.planning.fidelity import FidelityProbe

    for flag in (False, True):
        probe = FidelityProbe(expert, {"walker-stand": 0}, expert.obs_dim, BUDGET, compile=flag)
        assert (probe._expert_planner().model._compiled is not None) == flag
        assert probe.compile == flag

"""Closed-loop distillation: the buffer, its batches, and exact resume with it."""

from __future__ import annotations

import pytest
import torch
from test_train import assets, compose_train, smoke_overrides  # noqa: F401 (fixture)

from mt_factored.constants import ACTION, OBS, TASK
from mt_factored.errors import InputError
from mt_factored.training.closed_loop import ClosedLoopBuffer, ClosedLoopConfig, mix_into_batch

CLOSED_LOOP = (
    "closed_loop.every_n_steps=3",
    "closed_loop.envs=1",
    "closed_loop.steps=4",
    "closed_loop.share=0.5",
    "closed_loop.capacity=6",
    "closed_loop.planning.num_samples=16",
    "closed_loop.planning.num_elites=4",
    "closed_loop.planning.num_pi_trajs=2",
)


def test_the_buffer_is_a_ring_and_samples_with_a_generator() -> None:
    buffer = ClosedLoopBuffer(capacity=4, obs_dim=2, horizon=3, action_dim=1)
    obs = torch.arange(12.0).view(6, 2)
    buffer.add(obs[:3], torch.zeros(3, 3, 1), torch.tensor([1, 1, 1]))
    assert len(buffer) == 3
    buffer.add(obs[3:], torch.ones(3, 3, 1), torch.tensor([2, 2, 2]))
    assert len(buffer) == 4 and int(buffer.head) == 2
    assert torch.equal(buffer.obs, torch.stack([obs[4], obs[5], obs[2], obs[3]]))
    draw = lambda: buffer.sample(5, torch.Generator().manual_seed(0))  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(draw(), draw(), strict=True))
    with pytest.raises(RuntimeError, match="empty"):
        ClosedLoopBuffer(2, 2, 3, 1).sample(1, torch.Generator())


def test_rows_replace_the_first_windows_of_a_batch() -> None:
    batch = {
        OBS: torch.zeros(4, 4, 2),
        ACTION: torch.zeros(4, 3, 1),
        TASK: torch.zeros(4, dtype=torch.long),
    }
    rows = (torch.ones(2, 2), torch.full((2, 3, 1), 0.5), torch.tensor([7, 7]))
    mixed = mix_into_batch(batch, rows)
    assert (mixed[OBS][:2] == 1).all() and (mixed[OBS][2:] == 0).all()
    assert (mixed[ACTION][:2] == 0.5).all() and mixed[TASK].tolist() == [7, 7, 0, 0]
    assert (batch[OBS] == 0).all()  # the loader's batch is left alone


def test_rounds_are_due_on_schedule_and_bad_settings_are_refused() -> None:
    cfg = ClosedLoopConfig(every_n_steps=5, start_step=10)
    assert [s for s in range(26) if cfg.due(s)] == [10, 15, 20, 25]
    assert not ClosedLoopConfig().enabled
    for bad in ({"share": 1.0}, {"envs": 0}, {"every_n_steps": -1}):
        with pytest.raises(InputError):
            ClosedLoopConfig(**bad)


def _run_state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return ckpt["state_dict"]


def test_resume_with_closed_loop_matches_the_uninterrupted_run(assets, tmp_path) -> None:  # noqa: F811
    from mt_factored.train import run

    common = ("trainer.limit_train_batches=3", "eval.at_end=false", *CLOSED_LOOP)
    straight = tmp_path / "straight"
    run(compose_train(smoke_overrides(assets, straight, "trainer.max_steps=8", *common)))
    resumed = tmp_path / "resumed"
    run(compose_train(smoke_overrides(assets, resumed, "trainer.max_steps=4", *common)))
    middle = _run_state(resumed)
    assert int(middle["closed_loop_buffer.rounds"]) == 1  # the round of step 3
    assert int(middle["closed_loop_buffer.count"]) == 6  # 2 tasks x 1 env x 4 steps, capacity 6
    run(compose_train(smoke_overrides(assets, resumed, "trainer.max_steps=8", *common)))

    a, b = _run_state(straight), _run_state(resumed)
    assert int(a["closed_loop_buffer.rounds"]) == 2
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    # the rows changed training: the same run without closed loop ends elsewhere
    plain = tmp_path / "plain"
    run(compose_train(smoke_overrides(assets, plain, "trainer.max_steps=8", *common[:2])))
    c = _run_state(plain)
    assert any(not torch.equal(a[k], c[k]) for k in c if k.startswith("student."))


def test_closed_loop_refuses_terms_that_read_next_observations(assets, tmp_path) -> None:  # noqa: F811
    from mt_factored.train import run

    with pytest.raises(InputError, match="consistency"):
        run(
            compose_train(
                smoke_overrides(assets, tmp_path, "distill.terms.consistency=0.1", *CLOSED_LOOP)
            )
        )


def test_the_student_collects_with_its_evaluation_planner(assets, tmp_path) -> None:  # noqa: F811
    """Collection plans like the student is judged (eval.student_planning over planning),
    with closed_loop.planning on top: the anchor to the prior carries over."""
    from mt_factored.artifacts.configs import as_object
    from mt_factored.tasks import get_task_set
    from mt_factored.training.build import build_module

    overrides = smoke_overrides(
        assets, tmp_path, *CLOSED_LOOP, "+eval.student_planning.prior_weight=3.0"
    )
    cfg = as_object(compose_train(overrides))
    module = build_module(cfg, get_task_set(cfg.task_set), expert=None)
    planning = module.closed_loop_planning
    assert planning.prior_weight == 3.0  # from eval.student_planning
    assert planning.num_samples == 16  # closed_loop.planning wins


def test_the_expert_labels_the_states_the_student_visits() -> None:
    """With a labeller, visited_states returns the expert's plans, warm-started along the
    student's trajectory: replaying the expert's planner over the returned states gives them
    back exactly, while the actions (hence the states) are the student's."""
    from mt_factored.expert import TDMPC2Expert
    from mt_factored.planning.base import MPPIConfig
    from mt_factored.planning.episodes import last_plan, visited_states
    from mt_factored.planning.expert_adapter import ExpertPlanningModel
    from mt_factored.planning.mppi import MPPIPlanner
    from mt_factored.planning.student_adapter import StudentPlanningModel
    from mt_factored.student import FactoredStudent, StudentConfig
    from tests.tiny import SMOKE_TASK, SMOKE_TASK_ID, tiny_expert_config

    torch.manual_seed(0)
    expert = TDMPC2Expert(tiny_expert_config()).eval()
    sizes = dict(latent_dim=16, mlp_dim=32, enc_dim=32, task_dim=8, agent_dim=8)
    student = FactoredStudent(StudentConfig.for_task_set("mt30", **sizes)).eval()
    budget = MPPIConfig(num_samples=16, iterations=2, num_elites=4, num_pi_trajs=2)

    def planners():
        acting = MPPIPlanner(StudentPlanningModel(student, generator=1), budget, generator=1)
        label = MPPIPlanner(ExpertPlanningModel(expert, generator=2), budget, generator=2)
        return acting, label

    acting, label = planners()
    obs, plans = visited_states(acting, SMOKE_TASK, SMOKE_TASK_ID, 24, [5, 6], 4, labeller=label)
    own_obs, own_plans = visited_states(planners()[0], SMOKE_TASK, SMOKE_TASK_ID, 24, [5, 6], 4)
    assert torch.equal(obs, own_obs)  # the student still acts
    assert not torch.equal(plans, own_plans)
    replay = planners()[1]
    ids = torch.full((2,), SMOKE_TASK_ID)
    for step in range(4):
        replay.plan(obs[2 * step : 2 * step + 2], ids, t0=step == 0)
        assert torch.equal(last_plan(replay, ids), plans[2 * step : 2 * step + 2])


def test_expert_plans_need_a_known_source() -> None:
    with pytest.raises(InputError, match="closed_loop.plans"):
        ClosedLoopConfig(plans="teacher")
    assert ClosedLoopConfig(plans="expert").expert_planned
    rows = (torch.ones(1, 2), torch.zeros(1, 3, 1), torch.tensor([7]))
    batch = {OBS: torch.zeros(3, 4, 2), ACTION: torch.zeros(3, 3, 1), TASK: torch.zeros(3).long()}
    from mt_factored.constants import EXPERT_PLANNED

    assert EXPERT_PLANNED not in mix_into_batch(batch, rows)
    assert mix_into_batch(batch, rows, expert_planned=True)[EXPERT_PLANNED].tolist() == [
        True,
        False,
        False,
    ]

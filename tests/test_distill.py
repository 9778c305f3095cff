"""Ranking distillation: the loss terms by hand, the MSE ablation, masking, and learning."""

from __future__ import annotations

import math

import pytest
import torch

from mt_factored.constants import ACTION, OBS, REWARD, TASK
from mt_factored.distill import (
    PAPER_TERMS,
    TERMS,
    DistillConfig,
    distill_losses,
    expert_rollout,
    expert_scale,
    loss_term,
    masked_mse,
    noisy_actions,
    ranking_kl,
    student_losses,
    student_rollout,
    task_scale,
)
from mt_factored.online.distill import train_fields
from mt_factored.student import FactoredStudent, StudentConfig
from mt_factored.training.module import DistillModule

TINY = dict(latent_dim=16, mlp_dim=32, enc_dim=32, task_dim=8, agent_dim=8)
PENDULUM, REACHER, WALKER = 7, 4, 1


def make_student(seed: int = 0) -> FactoredStudent:
    torch.manual_seed(seed)
    return FactoredStudent(StudentConfig.for_task_set("mt30", **TINY))


def make_batch(tasks: list[int], horizon: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    task = torch.tensor(tasks)
    dims = torch.tensor(StudentConfig.for_task_set("mt30").action_dims)[task]
    mask = (torch.arange(6)[None] < dims[:, None]).float()
    action = (torch.rand(len(tasks), horizon, 6, generator=gen) * 2 - 1) * mask[:, None]
    return {
        OBS: torch.randn(len(tasks), horizon + 1, 24, generator=gen),
        ACTION: action,
        REWARD: torch.rand(len(tasks), horizon, generator=gen),
        TASK: task,
    }


# ------------------------------------------------------------------------ loss terms
def test_ranking_kl_by_hand() -> None:
    student = torch.tensor([[0.0, 1.0, 3.0]])
    expert = torch.tensor([[2.0, 0.0, 2.0]])
    t_s, t_e, scale = 2.0, 0.5, 2.0

    def softmax(xs):
        z = sum(math.exp(x) for x in xs)
        return [math.exp(x) / z for x in xs]

    p_s = softmax([x / (t_s * scale) for x in (0.0, 1.0, 3.0)])
    p_e = softmax([x / (t_e * scale) for x in (2.0, 0.0, 2.0)])
    by_hand = sum(pe * math.log(pe / ps) for pe, ps in zip(p_e, p_s, strict=True))
    out = ranking_kl(
        student, expert, dim=1, student_temperature=t_s, expert_temperature=t_e, scale=scale
    )
    assert out.shape == (1,)
    assert out.item() == pytest.approx(by_hand, rel=1e-6)
    # Minimal (0) exactly when the student equals the expert up to a constant (T_s = T_e).
    assert ranking_kl(expert + 7.0, expert, dim=1).abs().item() < 1e-6


def test_normalised_kl_is_scale_free() -> None:
    gen = torch.Generator().manual_seed(0)
    student, expert = torch.randn(4, 10, generator=gen), torch.randn(4, 10, generator=gen)
    kl = ranking_kl(student, expert, 1, scale=expert_scale(expert, 1, 1e-6))
    for c in (0.01, 100.0):  # rewards O(1) vs values O(100): same target sharpness
        scaled = ranking_kl(c * student, c * expert, 1, scale=expert_scale(c * expert, 1, 1e-6))
        torch.testing.assert_close(scaled, kl)
    # Below the floor the target flattens instead of amplifying noise.
    flat = ranking_kl(student, 1e-4 * expert, 1, scale=expert_scale(1e-4 * expert, 1, 1.0))
    uniform = ranking_kl(student, torch.zeros_like(expert), 1)
    torch.testing.assert_close(flat, uniform, atol=1e-3, rtol=0)


def test_task_scale_pools_the_spread_of_each_task() -> None:
    gen = torch.Generator().manual_seed(0)
    expert = torch.randn(3, 10, 6, generator=gen)  # [H, K, B]
    expert[:, :, 1] *= 1e-3  # a window whose samples the expert barely separates
    task = torch.tensor([4, 4, 1, 1, 1, 9])
    scale = task_scale(expert, 1, task, floor=1e-6)
    assert scale.shape == (3, 1, 6)
    std = expert.std(dim=1)
    for windows in ([0, 1], [2, 3, 4], [5]):
        pooled = std[:, windows].square().mean(dim=1).sqrt()
        for w in windows:
            torch.testing.assert_close(scale[:, 0, w], pooled)
    # The flat window is not stretched to unit spread: its target stays near uniform.
    target = torch.softmax(expert / scale, dim=1)[:, :, 1]
    assert (target - 0.1).abs().max() < 1e-2
    assert task_scale(1e-9 * expert, 1, task, floor=0.5).eq(0.5).all()
    with pytest.raises(ValueError, match="normalize must be"):
        DistillConfig(normalize="batch")


def test_policy_term_shapes_latents_only_when_asked(expert) -> None:
    batch = make_batch([WALKER, REACHER])
    grads = {}
    for shapes in (False, True):
        student = make_student()
        cfg = DistillConfig(terms={"policy": 1.0}, policy_shapes_latents=shapes)
        out = distill_losses(student, expert, batch, cfg, torch.Generator().manual_seed(0))
        out["loss"].backward()
        encoder = student.encoder_parameters()
        grads[shapes] = sum(p.grad.abs().sum() for p in encoder if p.grad is not None)
    assert grads[False] == 0 and grads[True] > 0


def test_policy_term_targets_the_expert_plan_where_the_expert_planned(expert) -> None:
    """Rows marked EXPERT_PLANNED: the first state's target is the row's first action (the
    expert planner's), every other target stays the expert's policy mean."""
    from mt_factored.constants import EXPERT_PLANNED
    from mt_factored.distill.registry import DistillBatch
    from mt_factored.distill.terms import policy

    batch = make_batch([WALKER, REACHER])
    student = make_student()
    cfg = DistillConfig(terms={"policy": 1.0}, num_noise_samples=4)
    actions = noisy_actions(batch[ACTION], torch.ones(2, 6), 4, 0.3, torch.Generator())
    task = batch[TASK]
    mask = student.merge_actions(student.agent_action_mask(task), task)
    actions = actions * mask[:, None]
    ex = expert_rollout(expert, batch[OBS][:, 0], actions, task, with_pi=True)
    st = student_rollout(student, batch[OBS][:, 0], actions, task, student.condition(task), 4)
    weights = cfg.rho ** torch.arange(3.0)
    marked = torch.tensor([True, False])
    inputs = DistillBatch(batch[OBS], batch[ACTION], task, mask, weights, expert_planned=marked)
    got = policy(st, ex, inputs, cfg)
    with torch.no_grad():
        pi = student.merge_actions(student.pi(st.latents[:-1], st.cond).mean, task)  # [H,K,B,A]
        target = ex.pi_mean.clone()
        target[0, :, 0] = batch[ACTION][0, 0]  # walker's row: the plan's first action
        sq = ((pi - target).square() * mask).sum(-1) / mask.sum(-1)  # [H, K, B]
        want = (weights * sq.mean(dim=(1, 2))).sum()
    torch.testing.assert_close(got, want)
    unmarked = policy(st, ex, inputs._replace(expert_planned=None), cfg)
    assert not torch.allclose(got, unmarked)
    # through distill_losses: the batch key selects the same rows
    out = distill_losses(student, expert, {**batch, EXPERT_PLANNED: marked}, cfg)
    assert torch.isfinite(out["loss/policy"])


def test_masked_mse_by_hand() -> None:
    pred = torch.tensor([[1.0, 2.0, 5.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0, -1.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(masked_mse(pred, target, mask), torch.tensor([(1 + 4) / 2, 1.0]))


def test_noisy_actions_are_masked_clamped_and_seeded() -> None:
    action = torch.tensor([[[0.9, 0.0, 0.0]], [[-0.5, 0.3, 0.0]]])  # [B=2, H=1, A=3]
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    a = noisy_actions(action, mask, 50, 0.5, torch.Generator().manual_seed(1))
    b = noisy_actions(action, mask, 50, 0.5, torch.Generator().manual_seed(1))
    assert a.shape == (50, 2, 1, 3) and torch.equal(a, b)
    assert a.abs().max() <= 1 and torch.all(a[:, 0, :, 1:] == 0) and torch.all(a[:, 1, :, 2] == 0)
    assert a[:, 0, 0, 0].std() > 0.1
    kept = noisy_actions(action, mask, 4, 0.5, keep_data_action=True)
    assert kept.shape == (5, 2, 1, 3) and torch.equal(kept[4], action * mask[:, None])


def test_noise_std_per_sample() -> None:
    cfg = DistillConfig(num_noise_samples=5, noise_std=[0.0, 2.0])
    assert cfg.sample_stds() == (0.0, 2.0, 0.0, 2.0, 0.0)
    assert DistillConfig(noise_std=0.3).sample_stds() == (0.3,) * 10
    action = torch.full((64, 1, 1), 0.2)
    a = noisy_actions(action, torch.ones(64, 1), 5, cfg.sample_stds(), torch.Generator())
    assert torch.all(a[0::2] == 0.2)  # std 0: the data action itself
    wide = a[1::2]
    assert (wide.abs() == 1).float().mean() > 0.4  # std 2: mostly clamped, like MPPI's start
    with pytest.raises(ValueError, match="one noise std per sample"):
        noisy_actions(action, torch.ones(64, 1), 5, (0.1, 0.2), torch.Generator())
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        DistillConfig(noise_std=[0.3, -1.0])


# --------------------------------------------------------------------- distill_losses
def test_kl_loss_matches_rollouts(expert) -> None:
    student = make_student()
    batch = make_batch([WALKER, REACHER, PENDULUM])
    cfg = DistillConfig(num_noise_samples=6, terms={"reward_kl": 0.5, "value_kl": 0.1})
    out = distill_losses(student, expert, batch, cfg, torch.Generator().manual_seed(3))
    assert set(out) == {
        "loss/reward_kl",
        "loss/value_kl",
        "loss",
        "metric/reward_top1",
        "metric/value_top1",
    }
    # Recompute from the rollouts with the same noise.
    task = batch[TASK]
    mask = expert.action_mask(task)
    actions = noisy_actions(
        batch[ACTION], mask, 6, cfg.sample_stds(), torch.Generator().manual_seed(3)
    )
    ex = expert_rollout(expert, batch[OBS][:, 0], actions, task, with_pi=False)
    st = student_rollout(student, batch[OBS][:, 0], actions, task, student.condition(task))
    weights = torch.tensor([1.0, 0.5, 0.25])
    reward = sum(
        w
        * ranking_kl(
            st.reward[h], ex.reward[h], 0, scale=expert_scale(ex.reward[h], 0, 0.01)
        ).mean()
        for h, w in enumerate(weights)
    )
    value = sum(  # KL of each member, averaged over members
        w
        * torch.stack(
            [
                ranking_kl(
                    st.value[h, i], ex.value[h], 0, scale=expert_scale(ex.value[h], 0, 1.0)
                ).mean()
                for i in range(2)
            ]
        ).mean()
        for h, w in enumerate(weights)
    )
    torch.testing.assert_close(out["loss/reward_kl"], reward)
    torch.testing.assert_close(out["loss/value_kl"], value)
    torch.testing.assert_close(out["loss"], 0.5 * reward + 0.1 * value)


def test_mse_variant_and_optional_terms(expert) -> None:
    student = make_student()
    batch = make_batch([WALKER, REACHER])
    mse = {"reward_mse": 0.5, "value_mse": 0.1, "policy": 1.0, "consistency": 2.0}
    cfg = DistillConfig(terms=mse, num_noise_samples=4)
    out = distill_losses(student, expert, batch, cfg, torch.Generator().manual_seed(0))
    assert {"loss/reward_mse", "loss/value_mse", "loss/policy", "loss/consistency"} <= set(out)
    actions = noisy_actions(
        batch[ACTION],
        expert.action_mask(batch[TASK]),
        4,
        cfg.sample_stds(),
        torch.Generator().manual_seed(0),
    )
    ex = expert_rollout(expert, batch[OBS][:, 0], actions, batch[TASK], with_pi=True)
    st = student_rollout(
        student, batch[OBS][:, 0], actions, batch[TASK], student.condition(batch[TASK])
    )
    weights = torch.tensor([1.0, 0.5, 0.25])
    reward = (weights * (st.reward - ex.reward).square().mean(dim=(1, 2))).sum()
    torch.testing.assert_close(out["loss/reward_mse"], reward)
    expected = (
        0.5 * reward
        + 0.1 * out["loss/value_mse"]
        + 1.0 * out["loss/policy"]
        + 2.0 * out["loss/consistency"]
    )
    torch.testing.assert_close(out["loss"], expected)
    with pytest.raises(ValueError, match=r"unknown distillation loss terms \['reward_l1'\]"):
        DistillConfig(terms={"reward_l1": 1.0})


def test_padded_agents_get_no_gradient(expert) -> None:
    student = make_student()
    batch = make_batch([PENDULUM, PENDULUM])  # one real agent of six
    out = distill_losses(
        student,
        expert,
        batch,
        DistillConfig(terms={**PAPER_TERMS, "consistency": 1.0}),
        torch.Generator().manual_seed(0),
    )
    out["loss"].backward()
    grad = student.agent_emb.weight.grad
    assert grad[0].abs().sum() > 0 and torch.all(grad[1:] == 0)


def test_distillation_steps_reduce_the_loss(expert) -> None:
    student = make_student()
    batch = make_batch([WALKER, REACHER, PENDULUM, WALKER, 3, 16], seed=1)
    cfg = DistillConfig()
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        return distill_losses(student, expert, batch, cfg, torch.Generator().manual_seed(0))["loss"]

    first = loss().item()
    for _ in range(30):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.5 * first


def test_bad_batches_raise(expert) -> None:
    student = make_student()
    batch = make_batch([WALKER])
    with pytest.raises(ValueError, match="window shapes"):
        distill_losses(student, expert, {**batch, OBS: batch[OBS][:, :2]}, DistillConfig())
    with pytest.raises(ValueError, match="expected obs"):
        distill_losses(student, expert, {**batch, TASK: batch[TASK][:, None]}, DistillConfig())


def test_shared_normalisation_keeps_rewards_in_value_units(expert) -> None:
    """ "shared" divides rewards by the value spread: a window whose rewards the expert
    barely separates keeps a near-uniform reward target (and shrinking the rewards changes
    the loss), whereas "window" stretches any reward spread back to unit scale."""
    batch = make_batch([WALKER, REACHER])
    student = make_student()
    cfg = {"reward_std_floor": 1e-9, "value_std_floor": 1e-9}
    gen = torch.Generator().manual_seed(0)
    mask = student.merge_actions(student.agent_action_mask(batch[TASK]), batch[TASK])
    actions = noisy_actions(batch[ACTION], mask, 10, 0.3, gen)
    ex = expert_rollout(expert, batch[OBS][:, 0], actions, batch[TASK], True)
    flat = ex._replace(reward=1e-4 * ex.reward)

    def reward_loss(mode: str, targets) -> float:
        out = student_losses(student, batch, actions, targets, DistillConfig(normalize=mode, **cfg))
        return out["loss/reward_kl"].item()

    # window: the reward targets are scale-free, so shrinking them changes nothing
    assert reward_loss("window", flat) == pytest.approx(reward_loss("window", ex), rel=1e-4)
    # shared: the reward targets are measured against the value spread
    assert reward_loss("shared", flat) != pytest.approx(reward_loss("shared", ex), rel=1e-2)
    with torch.no_grad():
        st = student_rollout(
            student, batch[OBS][:, 0], actions, batch[TASK], student.condition(batch[TASK])
        )
    scale = ex.value.std(dim=1, keepdim=True)
    target = torch.softmax(flat.reward / scale, dim=1)
    assert (target - 0.1).abs().max() < 1e-2  # near uniform
    weights = 0.5 ** torch.arange(3.0)
    expected = ranking_kl(st.reward, flat.reward, 1, scale=scale).mean(dim=-1)
    assert reward_loss("shared", flat) == pytest.approx(float((weights * expected).sum()), rel=1e-4)


@pytest.fixture
def spread_term():
    """A term registered the way CONTRIBUTING.md says, removed again after the test."""
    name = "test_value_spread"

    @loss_term(name)
    def value_spread(student, expert, batch, cfg):
        return (student.value.std(2) - expert.value.std(1).unsqueeze(1)).square().mean()

    yield name
    del TERMS[name]


def test_a_registered_term_is_summed_and_logged_by_both_loops(expert, spread_term) -> None:
    cfg = DistillConfig(terms={**PAPER_TERMS, spread_term: 0.3})
    batch = make_batch([WALKER, REACHER, PENDULUM])
    out = distill_losses(make_student(), expert, batch, cfg, torch.Generator().manual_seed(0))
    term = out[f"loss/{spread_term}"]
    assert term.item() > 0
    expected = (
        0.5 * out["loss/reward_kl"] + 0.1 * out["loss/value_kl"] + 1.0 * out["loss/policy"]
    ) + 0.3 * term
    torch.testing.assert_close(out["loss"], expected)

    module = DistillModule(
        student=make_student().config.to_dict(),
        distill=cfg.to_dict(),
        optim={"lr": 1e-3},
        expert=expert,
    )
    logged: dict[str, torch.Tensor] = {}
    module.log = lambda name, value, **_: logged.__setitem__(name, value)
    module.log_dict = lambda values, **_: logged.update(values)
    module.training_step(batch, 0)
    assert f"train/loss/{spread_term}" in logged  # the Lightning loop
    assert f"distill_{spread_term}" in train_fields(cfg)  # the online trainer's train.csv

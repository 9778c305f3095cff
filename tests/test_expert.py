"""TD-MPC2 expert: reference outputs, both checkpoint layouts, bad files, per-task experts."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mt_factored.expert import (
    CheckpointError,
    CheckpointMismatchError,
    Expert,
    ExpertConfig,
    PerTaskExperts,
    TDMPC2Expert,
    read_checkpoint,
)
from mt_factored.expert import model as model_module
from mt_factored.tasks import get_task_set

# The tiny mt30 model of tests/fixtures (the `config` inside the reference file is stale).
TINY = dict(task_dim=16, enc_dim=32, mlp_dim=32, latent_dim=32, num_enc_layers=2, num_q=2)
OUTPUTS = ("z", "next_z", "reward_logits", "reward", "q_logits", "q_each", "pi_mean")


@pytest.fixture(scope="module")
def tiny_config() -> ExpertConfig:
    return ExpertConfig.custom("mt30", **TINY)


@pytest.fixture(scope="module")
def reference(fixtures_dir):
    return torch.load(fixtures_dir / "tdmpc2-tiny-reference.pt", weights_only=False)


def _outputs(model: TDMPC2Expert, ref: dict) -> dict[str, torch.Tensor]:
    task, obs, action = ref["task"], ref["obs"], ref["action"]
    with torch.no_grad():
        z = model.encode(obs, task)
        return {
            "z": z,
            "next_z": model.next(z, action, task),
            "reward_logits": model.reward_logits(z, action, task),
            "reward": model.reward(z, action, task),
            "q_logits": model.q_logits(z, action, task),
            "q_each": model.q_all(z, action, task),
            "pi_mean": model.pi_mean(z, task),
        }


def _perturbed(config: ExpertConfig, seed: int = 0) -> TDMPC2Expert:
    """A model with every tensor non-trivial (TD-MPC2 starts reward/Q heads at zero)."""
    torch.manual_seed(seed)
    model = TDMPC2Expert(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        for b in model._target_Qs_params.buffers():
            b.add_(torch.randn_like(b) * 0.3)
    return model.eval()


# ------------------------------------------------------------ reference outputs
@pytest.mark.parametrize("layout", ["newlayout", "oldlayout"])
def test_fixture_reproduces_reference_outputs(fixtures_dir, tiny_config, reference, layout):
    model = TDMPC2Expert.from_checkpoint(
        fixtures_dir / f"tdmpc2-tiny-{layout}.pt", config=tiny_config
    )
    assert not model.training  # dropout off
    emb = model.state_dict()["_task_emb.weight"].clone()
    got = _outputs(model, reference)
    for name in OUTPUTS:
        assert got[name].shape == reference[name].shape, name
        torch.testing.assert_close(got[name], reference[name], rtol=0, atol=1e-5, msg=name)
    # Lookups do not renormalise the stored weights in place.
    assert torch.equal(model.state_dict()["_task_emb.weight"], emb)


def test_both_layouts_load_the_same_tensors(fixtures_dir, tiny_config):
    new = TDMPC2Expert.from_checkpoint(
        fixtures_dir / "tdmpc2-tiny-newlayout.pt", config=tiny_config
    )
    old = TDMPC2Expert.from_checkpoint(
        fixtures_dir / "tdmpc2-tiny-oldlayout.pt", config=tiny_config
    )
    for key, value in new.state_dict().items():
        assert torch.equal(value, old.state_dict()[key]), key


def test_time_major_inputs_broadcast_task(tiny_config):
    model = _perturbed(tiny_config)
    task = torch.tensor([0, 4, 7])
    z = torch.randn(4, 3, 32).softmax(-1)
    action = torch.rand(4, 3, 6) * model.action_mask(task)
    q = model.q_logits(z, action, task)
    assert q.shape == (2, 4, 3, 101)
    torch.testing.assert_close(q[:, 1], model.q_logits(z[1], action[1], task), rtol=0, atol=1e-5)
    torch.testing.assert_close(model.next(z, action, task)[2], model.next(z[2], action[2], task))


# ------------------------------------------------------------ sizes
def test_mt30_5m_has_the_published_parameter_count():
    config = ExpertConfig.from_size(5)
    model = TDMPC2Expert(config)
    assert model.num_learnable_parameters() == 5_241_066
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["_encoder.state.0.weight"] == (256, 88)
    assert shapes["_dynamics.0.weight"] == (512, 582)
    assert shapes["_pi.0.weight"] == (512, 576)
    assert shapes["_Qs.params.0.weight"] == (5, 512, 582)
    assert shapes["_target_Qs_params.2.weight"] == (5, 101, 512)
    assert shapes["_task_emb.weight"] == (30, 64) and shapes["_action_masks"] == (30, 6)
    # Target copy is state, not learnable.
    assert not any(n.startswith("_target") for n, _ in model.named_parameters())


def test_config_sizes_and_validation(tiny_config):
    assert ExpertConfig.from_size(1).task_dim == 96 and ExpertConfig.from_size("19M").task_dim == 64
    assert ExpertConfig.from_size(317).num_q == 8
    with pytest.raises(ValueError, match="published sizes"):
        ExpertConfig.from_size(7)
    with pytest.raises(NotImplementedError, match="mt80"):
        ExpertConfig.from_size(5, "mt80")
    single = ExpertConfig.single_task("cartpole-swingup")
    assert (single.obs_dim, single.action_dim, single.task_dim, single.num_tasks) == (5, 1, 0, 1)
    assert ExpertConfig.from_dict(json.loads(json.dumps(tiny_config.to_dict()))) == tiny_config
    with pytest.raises(ValueError, match="simnorm_dim"):
        dataclasses.replace(tiny_config, latent_dim=30)
    with pytest.raises(ValueError, match="action_dims"):
        dataclasses.replace(tiny_config, action_dims=(6,) * 29)


# ------------------------------------------------------------ bad checkpoints
def test_wrong_model_size_names_keys_and_suggests_size(tmp_path):
    path = tmp_path / "mt30-1M.pt"
    TDMPC2Expert(ExpertConfig.from_size(1)).save_checkpoint(path)
    with pytest.raises(CheckpointMismatchError) as info:
        TDMPC2Expert.from_checkpoint(path, model_size=5)
    msg = str(info.value)
    assert str(path) in msg
    assert "_encoder.state.0.weight: [256, 120] vs [256, 88]" in msg
    assert "_task_emb.weight: [30, 96] vs [30, 64]" in msg
    assert "this looks like mt30-1M; pass model_size=1" in msg
    assert "_encoder.state.0.weight" in info.value.mismatched
    TDMPC2Expert.from_checkpoint(path, model_size=1)  # the hint is right


def test_wrong_task_count_and_missing_keys(tmp_path, tiny_config):
    subset = get_task_set("mt30").subset(get_task_set("mt30").names[:29])
    config = dataclasses.replace(
        tiny_config,
        num_tasks=29,
        action_dims=subset.action_dims,
        discounts=subset.discounts,
        task_names=subset.names,
    )
    path = tmp_path / "29.pt"
    _perturbed(config).save_checkpoint(path)
    with pytest.raises(CheckpointMismatchError) as info:
        TDMPC2Expert.from_checkpoint(path, config=tiny_config)
    msg = str(info.value)
    assert "_task_emb.weight: [29, 16] vs [30, 16]" in msg
    assert "_action_masks: [29, 6] vs [30, 6]" in msg
    assert "num_tasks 29" in msg  # what the file's shapes say

    state = read_checkpoint(path)
    del state["_reward.2.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "keys.pt")
    with pytest.raises(CheckpointMismatchError) as info:
        TDMPC2Expert.from_checkpoint(tmp_path / "keys.pt", config=config)
    assert info.value.missing == ["_reward.2.bias"] and info.value.unexpected == ["extra.weight"]
    assert "missing from checkpoint" in str(info.value) and "extra.weight" in str(info.value)


def test_masks_that_disagree_with_config(tmp_path, tiny_config):
    path = tmp_path / "masks.pt"
    wide = dataclasses.replace(tiny_config, action_dims=(6,) * 30)
    _perturbed(wide).save_checkpoint(path)
    with pytest.raises(CheckpointMismatchError, match="_action_masks disagree"):
        TDMPC2Expert.from_checkpoint(path, config=tiny_config)


def test_single_task_file_loaded_as_multitask_gets_a_hint(tmp_path):
    path = tmp_path / "walker.pt"
    TDMPC2Expert(ExpertConfig.single_task("walker-walk", model_size=1)).save_checkpoint(path)
    with pytest.raises(CheckpointMismatchError) as info:
        TDMPC2Expert.from_checkpoint(path, model_size=1)
    msg = str(info.value)
    assert "single-task 1M model" in msg and "walker-walk" in msg and "walker-run-backwards" in msg
    assert "expert={<task>: <path>}" in msg and "load_single_task_expert" in msg


def test_truncated_and_foreign_files_name_the_file(tmp_path, fixtures_dir):
    data = (fixtures_dir / "tdmpc2-tiny-newlayout.pt").read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        TDMPC2Expert.from_checkpoint(path)
    assert str(path) in str(info.value)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a TD-MPC2 state dict"):
        TDMPC2Expert.from_checkpoint(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        TDMPC2Expert.from_checkpoint(tmp_path / "nope.pt")


def test_flat_sequential_layout_is_rejected(tmp_path):
    state = {
        "_encoder.state.1.weight": torch.zeros(256, 67),
        "_encoder.state.2.weight": torch.ones(256),
        "_dynamics.0.0.weight": torch.zeros(512, 579),
        "_dynamics.0.1.weight": torch.ones(512),
        "_Qs.params.0": torch.zeros(5, 512, 579),
    }
    torch.save({"model": state}, tmp_path / "early.pt")
    with pytest.raises(CheckpointError, match="flat-Sequential") as info:
        TDMPC2Expert.from_checkpoint(tmp_path / "early.pt")
    assert not isinstance(info.value, CheckpointMismatchError)


# ------------------------------------------------------------ saving
def test_save_load_round_trip_is_exact_and_matches_public_layout(
    tmp_path, tiny_config, fixtures_dir
):
    model = _perturbed(tiny_config)
    with torch.no_grad():
        model._task_emb.weight.mul_(10)  # norms above 1 survive a forward pass and a save
        model.encode(torch.randn(3, 24), torch.tensor([0, 1, 2]))
    path = tmp_path / "sub" / "expert.pt"
    model.save_checkpoint(path)
    assert [p.name for p in path.parent.iterdir()] == ["expert.pt"]  # no temp file left

    loaded = TDMPC2Expert.from_checkpoint(path, config=tiny_config)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)

    saved = torch.load(path, weights_only=False)["model"]
    public = torch.load(fixtures_dir / "tdmpc2-tiny-newlayout.pt", weights_only=False)["model"]
    assert list(saved) == list(public)
    for key, value in public.items():
        if isinstance(value, torch.Tensor):
            assert saved[key].shape == value.shape and saved[key].dtype == value.dtype, key
        else:
            assert saved[key] == value, key  # torch.Size([num_q]) / None
    assert torch.equal(saved["_detach_Qs_params.1.weight"], saved["_Qs.params.1.weight"])


def test_single_task_round_trip(tmp_path):
    config = dataclasses.replace(ExpertConfig.single_task("cartpole-swingup"), **_SMALL)
    model = _perturbed(config)
    model.save_checkpoint(tmp_path / "cp.pt")
    saved = torch.load(tmp_path / "cp.pt", weights_only=False)["model"]
    assert "_task_emb.weight" not in saved and "_action_masks" not in saved
    loaded = TDMPC2Expert.from_checkpoint(tmp_path / "cp.pt", config=config)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


# ------------------------------------------------------------ values and policy
def test_q_avg_runs_only_two_members(monkeypatch, tiny_config):
    model = _perturbed(dataclasses.replace(tiny_config, num_q=5))
    task = torch.arange(8) % 30
    z, action = torch.randn(8, 32).softmax(-1), torch.rand(8, 6) * model.action_mask(task)
    members_run = []
    real = model_module.ensemble_forward

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        members_run.append(out.shape[0])
        return out

    monkeypatch.setattr(model_module, "ensemble_forward", spy)
    value = model.q_avg(z, action, task, generator=torch.Generator().manual_seed(3))
    assert members_run == [2] and value.shape == (8, 1)
    chosen = torch.randperm(5, generator=torch.Generator().manual_seed(3))[:2]
    expected = model.q_all(z, action, task)[chosen].mean(0)
    torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    target = model.q_pair(z, action, task, torch.Generator().manual_seed(3), target=True)
    torch.testing.assert_close(target, model.q_all(z, action, task, target=True)[chosen])


def test_policy_masks_and_gradients(tiny_config):
    model = _perturbed(tiny_config)
    task = torch.tensor([6, 4, 0, 16])  # action dims 1, 2, 6, 5
    z = torch.randn(4, 32).softmax(-1)
    out = model.pi(z, task, generator=torch.Generator().manual_seed(0))
    mask = model.action_mask(task)
    assert torch.all(out.action[mask == 0] == 0) and torch.all(out.mean[mask == 0] == 0)
    assert torch.all(out.log_std[mask == 0] == 0)
    torch.testing.assert_close(out.mean, model.pi_mean(z, task))
    again = model.pi_sample(z, task, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, out.action)
    assert out.log_prob.shape == out.entropy.shape == out.scaled_entropy.shape == (4, 1)
    assert torch.all(out.action.abs() <= 1)

    # Policy loss as TD-MPC2: Q weights detached, gradient reaches the policy only.
    model.train()
    loss = -(0.1 * out.scaled_entropy + model.q_avg(z, out.action, task, detach=True)).mean()
    loss.backward()
    assert all(p.grad is None for p in model._Qs.parameters())
    assert all(p.grad is not None for p in model._pi.parameters())


def test_soft_update_target_and_modes(tiny_config):
    model = _perturbed(tiny_config)
    online = {k: v.clone() for k, v in model._Qs.params.state_dict().items()}
    before = {k: v.clone() for k, v in model._target_Qs_params.state_dict().items()}
    model.soft_update_target(0.25)
    for key, value in model._target_Qs_params.state_dict().items():
        torch.testing.assert_close(value, before[key] + 0.25 * (online[key] - before[key]))
    model.soft_update_target(1.0)
    for key, value in model._target_Qs_params.state_dict().items():
        assert torch.equal(value, online[key])
    # Target values never use dropout; online values do in training mode.
    model.train()
    task = torch.zeros(64, dtype=torch.long)
    z, action = torch.randn(64, 32).softmax(-1), torch.rand(64, 6)
    a, b = (
        model.q_logits(z, action, task, target=True),
        model.q_logits(z, action, task, target=True),
    )
    assert torch.equal(a, b)
    assert not torch.equal(model.q_logits(z, action, task), model.q_logits(z, action, task))


def test_task_embedding_matches_torch_max_norm_without_mutating(tiny_config):
    # The fixture's stored rows have norms < 1; scale them up to exercise the renorm.
    model = _perturbed(tiny_config)
    with torch.no_grad():
        model._task_emb.weight.mul_(40)
    stored = model._task_emb.weight.detach().clone()
    task = torch.tensor([3, 3, 0, 29, 17])
    torch_emb = torch.nn.Embedding(30, 16, max_norm=1.0)
    torch_emb.weight.data.copy_(stored)
    assert stored.norm(dim=-1).min() > 1
    torch.testing.assert_close(model.task_embedding(task), torch_emb(task), rtol=0, atol=1e-6)
    assert torch.equal(model._task_emb.weight, stored)


def test_renorm_task_emb_makes_lookup_identity(tiny_config):
    model = _perturbed(tiny_config)
    with torch.no_grad():
        model._task_emb.weight.mul_(5)
    task = torch.arange(30)
    before = model.task_embedding(task)
    model.renorm_task_emb_()
    assert model._task_emb.weight.norm(dim=-1).max() <= 1 + 1e-6
    torch.testing.assert_close(model._task_emb.weight, before)
    torch.testing.assert_close(model.task_embedding(task), before)


# ------------------------------------------------------------ per-task experts
_SMALL = dict(enc_dim=16, mlp_dim=16, latent_dim=16, num_enc_layers=2, num_q=2)


def test_per_task_experts_match_each_expert(tmp_path):
    cart = _perturbed(
        dataclasses.replace(ExpertConfig.single_task("cartpole-swingup"), **_SMALL), seed=1
    )
    walker_config = dataclasses.replace(
        ExpertConfig.single_task("walker-walk"), **{**_SMALL, "latent_dim": 24, "num_enc_layers": 3}
    )
    walker = _perturbed(walker_config, seed=2)
    walker.save_checkpoint(tmp_path / "walker.pt")  # loaded from a path, sizes read off the file
    experts = PerTaskExperts({"walker-walk": tmp_path / "walker.pt", "cartpole-swingup": cart})
    assert isinstance(experts, Expert) and experts.tasks == ("walker-walk", "cartpole-swingup")
    assert (experts.latent_dim, experts.obs_dim, experts.action_dim) == (24, 24, 6)

    mt30 = get_task_set("mt30")
    cart_id, walker_id = mt30.index("cartpole-swingup"), mt30.index("walker-walk")
    task = torch.tensor([cart_id, walker_id, walker_id, cart_id, cart_id, walker_id])
    obs = torch.randn(6, 24) * (torch.arange(24) < torch.where(task == cart_id, 5, 24)[:, None])
    action = (torch.rand(6, 6) * 2 - 1) * experts.action_mask(task)
    rows = {cart_id: task == cart_id, walker_id: task == walker_id}
    native = {cart_id: (cart, 5, 1, 16), walker_id: (walker, 24, 6, 24)}

    with torch.no_grad():
        z = experts.encode(obs, task)
        outs = {
            "next": experts.next(z, action, task),
            "reward": experts.reward(z, action, task),
            "q_all": experts.q_all(z, action, task),
            "pi_mean": experts.pi_mean(z, task),
        }
        assert z.shape == (6, 24) and outs["q_all"].shape == (2, 6, 1)
        for tid, sel in rows.items():
            expert, o_dim, a_dim, l_dim = native[tid]
            zz = expert.encode(obs[sel, :o_dim], None)
            aa = action[sel, :a_dim]
            torch.testing.assert_close(z[sel, :l_dim], zz, rtol=0, atol=0)
            assert torch.all(z[sel, l_dim:] == 0)
            torch.testing.assert_close(outs["next"][sel, :l_dim], expert.next(zz, aa, None))
            torch.testing.assert_close(outs["reward"][sel], expert.reward(zz, aa, None))
            torch.testing.assert_close(outs["q_all"][:, sel], expert.q_all(zz, aa, None))
            torch.testing.assert_close(outs["pi_mean"][sel, :a_dim], expert.pi_mean(zz, None))
            assert torch.all(outs["pi_mean"][sel, a_dim:] == 0)
        assert experts.q_avg(z, action, task).shape == (6, 1)
        assert experts.pi_sample(z, task).shape == (6, 6)

    with pytest.raises(KeyError, match="no expert for task 'pendulum-spin'.*walker-walk"):
        experts.encode(obs[:1], torch.tensor([mt30.index("pendulum-spin")]))
    with pytest.raises(ValueError, match="single-task with obs 24"):
        PerTaskExperts({"walker-walk": cart})


def test_expert_satisfies_protocol(tiny_config):
    model = TDMPC2Expert(tiny_config)
    assert isinstance(model, Expert)
    assert model.discounts.shape == (30,) and model.action_masks.shape == (30, 6)
    assert model.action_mask(torch.tensor([6])).tolist() == [[1, 0, 0, 0, 0, 0]]

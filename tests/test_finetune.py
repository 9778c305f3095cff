"""Finetuning to a new embodiment: exact extension, freezing, the end-to-end command, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from mt_factored import cli
from mt_factored.artifacts.configs import as_object
from mt_factored.constants import ACTION, OBS, TASK
from mt_factored.student import FactoredStudent, StudentConfig
from mt_factored.student.extend import (
    SHARED_MODULES,
    extend_student,
    nearest_task,
)
from mt_factored.tasks import TaskSpec, UnknownTaskError, get_task, get_task_set

OLD_TASKS = ["walker-walk", "cartpole-balance", "reacher-easy"]  # 6, 1 and 2 joints
TINY = dict(task_dim=8, agent_dim=4, enc_dim=32, latent_dim=16, mlp_dim=16, num_q=2)
# A made-up robot with 12 joints and 30 observation entries (mt30 pads to 24).
TWELVE = TaskSpec("toy-twelve", "toy", "twelve", 30, 12, (("state", 30),))


def tiny_student(tasks=OLD_TASKS, seed: int = 0) -> FactoredStudent:
    """A tiny student whose every weight is non-trivial (the reward and value heads start
    at exactly 0; a test of unchanged outputs must not compare zeros)."""
    torch.manual_seed(seed)
    student = FactoredStudent(StudentConfig.for_task_set(tasks, obs_dim=24, **TINY))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return student.eval()


def outputs(student: FactoredStudent, obs, action, task, agents: int) -> dict[str, torch.Tensor]:
    """Every per-agent output of the student for old-task inputs, on the first ``agents``."""
    cond = student.condition(task)
    z = student.encode(obs, task)
    a = student.split_actions(action, task)
    next_z, reward = student.step(z, a, cond)
    pi = student.pi(z, cond)
    per_agent_vectors = {  # [..., N, dim]
        "encode": z,
        "next": next_z,
        "pi_mean": pi.mean,
        "pi_log_std": pi.log_std,
        "cond_step": cond.step,
        "cond_q": cond.q,
    }
    per_agent_scalars = {"reward": reward, "q": student.q(z, a, cond)}  # [..., N]
    return {
        **{k: v[..., :agents, :] for k, v in per_agent_vectors.items()},
        **{k: v[..., :agents] for k, v in per_agent_scalars.items()},
    }


def old_task_inputs(batch: tuple[int, ...], obs_dim: int, action_dim: int, seed: int = 1):
    """Random observations / actions of the old tasks, zero-padded to the given sizes."""
    gen = torch.Generator().manual_seed(seed)
    task = torch.randint(0, len(OLD_TASKS), batch[-1:], generator=gen)
    obs = torch.zeros(*batch, obs_dim)
    obs[..., :24] = torch.randn(*batch, 24, generator=gen)
    action = torch.zeros(*batch, action_dim)
    action[..., :6] = torch.rand(*batch, 6, generator=gen) * 2 - 1
    return obs, action, task


# ------------------------------------------------------------------------ extension
@pytest.mark.parametrize("new", [TWELVE, "quadruped-walk"], ids=["obs30-12joints", "quadruped"])
@pytest.mark.parametrize("batch", [(64,), (3, 16)], ids=["B64", "S3xB16"])
@torch.no_grad()
def test_extension_keeps_every_old_output_bit_identical(new, batch) -> None:
    old = tiny_student()
    before = {k: v.clone() for k, v in old.state_dict().items()}
    grown = extend_student(old, [new], generator=torch.Generator().manual_seed(0)).eval()
    spec = new if isinstance(new, TaskSpec) else get_task(new)
    c = grown.config
    assert (c.obs_dim, c.action_dim, grown.num_agents) == (spec.obs_dim, 12, 12)
    assert c.task_names == (*OLD_TASKS, spec.name)  # old ids unchanged
    assert old.num_agents == 6

    obs, action, task = old_task_inputs(batch, c.obs_dim, c.action_dim)
    want = outputs(old, obs[..., :24], action[..., :6], task, old.num_agents)
    got = outputs(grown, obs, action, task, old.num_agents)
    for key in want:
        assert torch.equal(want[key], got[key]), key
    # Agents old tasks do not have stay masked: zero reward and value.
    cond = grown.condition(task)
    z = grown.encode(obs, task)
    a = grown.split_actions(action, task)
    assert torch.all(grown.reward(z, a, cond)[..., 6:] == 0)
    assert torch.all(grown.q(z, a, cond)[..., 6:] == 0)
    # The pretrained student itself is untouched.
    for key, value in old.state_dict().items():
        assert torch.equal(value, before[key]), key


@torch.no_grad()
def test_single_row_calls_agree_to_rounding() -> None:
    """One-row matmuls use a BLAS kernel whose summation order follows the input width, so
    they agree to rounding only (see mt_factored.student.extend)."""
    old = tiny_student()
    grown = extend_student(old, ["quadruped-walk"]).eval()
    for b in (1, 2, 3):
        obs, action, task = old_task_inputs((b,), 78, 12, seed=b)
        want = outputs(old, obs[..., :24], action[..., :6], task, 6)
        got = outputs(grown, obs, action, task, 6)
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=key)


@torch.no_grad()
def test_new_rows_and_nearest_rule() -> None:
    old = tiny_student()
    rows = old.task_emb.weight
    walker = OLD_TASKS.index("walker-walk")
    # Nearest: no shared body, so the closest joint count (walker's 6 for 12 joints).
    assert nearest_task(old.config, TWELVE) == walker
    near = extend_student(old, [TWELVE], init_from="nearest")
    assert torch.equal(near.task_emb.weight[3], rows[walker])
    named = extend_student(old, [TWELVE], init_from="reacher-easy")
    assert torch.equal(named.task_emb.weight[3], rows[2])
    rand = extend_student(old, [TWELVE], init_from="random")
    assert rand.task_emb.weight[3].abs().max() <= 0.02
    assert not torch.equal(rand.task_emb.weight[3], rows[walker])
    # New joint rows are distinct (each joint told apart), old rows kept.
    agents = near.agent_emb.weight
    assert torch.equal(agents[:6], old.agent_emb.weight)
    assert len({tuple(r.tolist()) for r in agents[6:]}) == 6
    # The same body wins over a closer joint count.
    quad = extend_student(old, ["quadruped-walk"])
    assert nearest_task(quad.config, get_task("quadruped-run")) == 3
    assert nearest_task(old.config, get_task("pointmass-easy")) == 2  # reacher: 2 joints


def test_extended_student_saves_and_loads_like_any_student(tmp_path) -> None:
    grown = extend_student(tiny_student(), ["quadruped-walk", "pointmass-easy"])
    grown.save_pretrained(tmp_path / "s")
    back = FactoredStudent.from_pretrained(tmp_path / "s")
    assert back.config == grown.config
    for key, value in grown.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_extension_errors_are_clear() -> None:
    old = tiny_student()
    with pytest.raises(ValueError, match="already has"):
        extend_student(old, ["cartpole-balance"])
    with pytest.raises(ValueError, match="obs_dim=40 is too small"):
        extend_student(old, ["quadruped-walk"], obs_dim=40)
    with pytest.raises(UnknownTaskError, match="Did you mean: quadruped-walk"):
        extend_student(old, ["quadruped-walkk"])
    with pytest.raises(UnknownTaskError, match="walker-walk"):
        extend_student(old, [TWELVE], init_from="walker-wlak")
    with pytest.raises(ValueError, match="at most that many joints"):
        extend_student(
            old, [TWELVE], partitions={"toy-twelve": [list(range(6)), list(range(6, 12))]}
        )


# ------------------------------------------------------------------------ batches
def test_batch_adapter_maps_ids_and_sizes() -> None:
    from mt_factored.training.finetune import BatchAdapter

    data_set = get_task_set("dmc_extra")
    grown = extend_student(tiny_student(), ["pointmass-easy", "quadruped-walk"])
    adapter = BatchAdapter(data_set, grown.config)
    ids = [data_set.index("quadruped-walk"), data_set.index("pointmass-easy")]
    batch = {
        OBS: torch.randn(2, 4, 78),
        ACTION: torch.randn(2, 3, 12),
        TASK: torch.tensor(ids),
    }
    out = adapter(batch)
    assert out[TASK].tolist() == [4, 3]
    assert torch.equal(out[OBS], batch[OBS]) and torch.equal(out[ACTION], batch[ACTION])
    narrow = BatchAdapter(data_set, extend_student(tiny_student(), ["pointmass-easy"]).config)
    small = {**batch, TASK: torch.tensor([ids[1], ids[1]])}
    out = narrow(small)
    assert out[OBS].shape[-1] == 24 and out[ACTION].shape[-1] == 6
    assert torch.equal(out[OBS], small[OBS][..., :24])
    with pytest.raises(ValueError, match="quadruped-walk"):
        narrow(batch)


# ------------------------------------------------------------------------ end to end
def write_chunk(path: Path, task_id: int, spec: TaskSpec, obs_dim: int, action_dim: int) -> Path:
    """An official-format chunk of 2 random episodes of one task, padded to the set's sizes."""
    gen = torch.Generator().manual_seed(0)
    n, frames = 2, 51
    obs = torch.zeros(n, frames, obs_dim)
    obs[..., : spec.obs_dim] = torch.randn(n, frames, spec.obs_dim, generator=gen)
    action = torch.zeros(n, frames, action_dim)
    action[..., : spec.action_dim] = torch.rand(n, frames, spec.action_dim, generator=gen) * 2 - 1
    reward = torch.rand(n, frames, generator=gen)
    action[:, 0], reward[:, 0] = float("nan"), float("nan")
    task = torch.full((n, frames), task_id, dtype=torch.int32)
    td = TensorDict(
        {OBS: obs, ACTION: action, "reward": reward, TASK: task}, batch_size=[n, frames]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(td, path)
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    """A tiny mt30 student folder, a tiny quadruped-walk expert and its dmc_extra data."""
    from mt_factored.expert import TDMPC2Expert
    from mt_factored.online.config import build_expert_config

    root = tmp_path_factory.mktemp("finetune")
    tiny_student(tasks="mt30").save_pretrained(root / "student")
    config = build_expert_config(
        "quadruped-walk", "cpu", dict(enc_dim=32, mlp_dim=32, latent_dim=32)
    )
    TDMPC2Expert(config).save_checkpoint(root / "expert.pt")
    data_set = get_task_set("dmc_extra")
    write_chunk(
        root / "data" / "chunk_0.pt",
        data_set.index("quadruped-walk"),
        get_task("quadruped-walk"),
        data_set.max_obs_dim,
        data_set.max_action_dim,
    )
    return {"student": root / "student", "expert": root / "expert.pt", "data": root / "data"}


def finetune_cfg(assets, run_dir: Path, *extra: str):
    overrides = [
        "name=test",
        f"pretrained={assets['student']}",
        f"expert={{quadruped-walk: {assets['expert']}}}",
        f"data={assets['data']}",
        f"run_dir={run_dir}",
        "logger=none",
        "loader.batch_size=16",
        "trainer.max_steps=3",
        "trainer.enable_progress_bar=false",
        "checkpoint.every_n_steps=3",
        "eval.episodes=1",
        "eval.max_steps=5",
        "eval.latency_repeats=1",
        "planning.num_samples=16",
        "planning.num_elites=2",
        "planning.num_pi_trajs=2",
        "planning.iterations=1",
        *extra,
    ]
    return cli.compose("finetune", overrides=overrides)


def test_finetune_runs_freezes_shared_modules_and_evaluates(assets, tmp_path) -> None:
    from mt_factored.finetune import run
    from mt_factored.training.finetune import load_pretrained
    from mt_factored.training.module import DistillModule

    published = tmp_path / "published"
    results = run(
        finetune_cfg(
            assets, tmp_path, "freeze_shared=true", "optim.lr=1e-2", f"publish.dir={published}"
        )
    )
    assert set(results["student"]) == {"quadruped-walk"}
    folder = FactoredStudent.from_pretrained(published)  # publish.dir: the finetuned student
    assert folder.config.task_names[-1] == "quadruped-walk"
    assert "quadruped-walk" in (published / "README.md").read_text().split("---")[1]
    assert set(results["expert"]) == {"quadruped-walk"}
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    tuned = DistillModule.load_from_checkpoint(ckpt).student
    assert tuned.config.task_names[-1] == "quadruped-walk" and tuned.num_agents == 12

    pretrained = load_pretrained(assets["student"])
    start = extend_student(pretrained, ["quadruped-walk"])
    before, after = start.state_dict(), tuned.state_dict()
    frozen = [k for k in before if k.split(".")[0] in SHARED_MODULES]
    assert frozen
    for key in frozen:
        assert torch.equal(before[key], after[key]), key
    n_tasks, n_agents = pretrained.config.num_tasks, pretrained.config.num_agent_embeddings
    assert torch.equal(after["task_emb.weight"][:n_tasks], before["task_emb.weight"][:n_tasks])
    assert torch.equal(after["agent_emb.weight"][:n_agents], before["agent_emb.weight"][:n_agents])
    # What should train did.
    for key in ("trunk.0.weight", "head.first.weight", "task_emb.weight", "agent_emb.weight"):
        assert not torch.equal(before[key], after[key]), key


def test_from_scratch_trains_the_same_architecture_fresh(assets, tmp_path) -> None:
    from mt_factored.training.finetune import prepare_student

    cfg = as_object(finetune_cfg(assets, tmp_path, "from_scratch=true"))
    scratch, _ = prepare_student(cfg, ["quadruped-walk"])
    tuned, pretrained = prepare_student(
        as_object(finetune_cfg(assets, tmp_path)), ["quadruped-walk"]
    )
    assert scratch.config == tuned.config
    assert pretrained.num_tasks == 30
    # Fresh weights: the pretrained encoder's zero columns for the new entries are gone.
    assert torch.all(tuned.state_dict()["trunk.0.weight"][:, 24:78] == 0)
    assert scratch.state_dict()["trunk.0.weight"][:, 24:78].abs().sum() > 0
    sizes = [f"student.{k}={v}" for k, v in TINY.items()]
    none, _ = prepare_student(
        as_object(finetune_cfg(assets, tmp_path, "pretrained=null", *sizes)), ["quadruped-walk"]
    )
    assert dataclasses.asdict(none.config) == dataclasses.asdict(scratch.config)


def test_missing_pretrained_and_unknown_task_are_clear(assets, tmp_path) -> None:
    from mt_factored.artifacts import ArtifactNotFoundError
    from mt_factored.finetune import run

    with pytest.raises(ArtifactNotFoundError, match="pretrained=.*no such Lightning checkpoint"):
        run(finetune_cfg(assets, tmp_path, f"pretrained={tmp_path / 'last.ckpt'}"))
    with pytest.raises(ArtifactNotFoundError, match="pretrained="):
        run(finetune_cfg(assets, tmp_path, f"pretrained={tmp_path / 'nope'}"))
    with pytest.raises(UnknownTaskError, match="Did you mean: quadruped-walk"):
        run(finetune_cfg(assets, tmp_path, "tasks=[quadruped-wlak]"))
    with pytest.raises(ValueError, match="one checkpoint for 2 tasks"):
        run(finetune_cfg(assets, tmp_path, "tasks=[quadruped-walk,quadruped-run]", "expert=x.pt"))


def test_recipe_composes_with_its_defaults() -> None:
    cfg = cli.compose("finetune", overrides=["name=x"])
    assert cfg.task_set == "dmc_extra" and list(cfg.tasks) == ["quadruped-walk"]
    assert cfg.pretrained and not cfg.from_scratch and cfg.init_from == "nearest"
    for name in cfg.tasks:
        get_task_set(cfg.task_set).index(name)

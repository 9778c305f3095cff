"""mt_factored.tasks: the mt30 table, environments, wrappers and the custom task rewards."""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mt_factored.tasks import (
    MultiTaskEnv,
    TaskSet,
    UnknownTaskError,
    dm_control_names,
    get_task_set,
    make_env,
)
from mt_factored.tasks import rewards as R

MT30 = get_task_set("mt30")


def g(x: float, bound: float, margin: float) -> float:
    """Gaussian tolerance of x >= bound by hand: 1 above, 0.1 ** (d ** 2) below."""
    d = max(bound - x, 0.0) / margin
    return 0.1 ** (d**2)


def hand_state(env, qpos=None, qvel=None):
    """Sets named joint positions/velocities (others zero), recomputes derived quantities,
    and returns the task's reward for that state."""
    physics = env.physics
    physics.data.qpos[:] = 0
    physics.data.qvel[:] = 0
    for name, value in (qpos or {}).items():
        physics.named.data.qpos[name] = value
    for name, value in (qvel or {}).items():
        physics.named.data.qvel[name] = value
    physics.forward()
    return env.task.get_reward(physics)


# ----------------------------------------------------------------------------- table
def test_mt30_table():
    assert len(MT30) == 30
    assert MT30[0].name == "walker-stand" and MT30.index("walker-stand") == 0
    assert MT30[12].name == "cup-catch"
    assert (MT30[12].domain, MT30[12].task) == ("ball_in_cup", "catch")
    assert MT30[29].name == "pendulum-spin" and MT30[29].custom
    assert MT30["pendulum-spin"] is MT30[29]
    assert MT30.obs_dims == (24, 24, 24, 17, 6, 6, 6, 3, 5, 5, 5, 5, 8, 9, 12, 12, 24, 15, 15,
                             24, 24, 17, 17, 17, 17, 15, 8, 8, 8, 3)  # fmt: skip
    assert MT30.action_dims == (6, 6, 6, 6, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 5, 4, 4,
                                6, 6, 6, 6, 6, 6, 4, 3, 3, 2, 1)  # fmt: skip
    assert (MT30.max_obs_dim, MT30.max_action_dim) == (24, 6)
    assert [s.custom for s in MT30] == [False] * 19 + [True] * 11
    assert set(MT30.episode_lengths) == {500}
    assert all(s.action_repeat == 2 for s in MT30)
    assert MT30.discounts == (0.99,) * 30
    assert MT30[0].obs_keys == (("orientations", 14), ("height", 1), ("velocity", 9))
    assert MT30["reacher-three-easy"].obs_keys == (
        ("position", 3),
        ("to_target", 2),
        ("velocity", 3),
    )


def test_name_mapping():
    assert dm_control_names("cartpole-balance-sparse") == ("cartpole", "balance_sparse")
    assert dm_control_names("reacher-three-easy") == ("reacher", "three_easy")
    assert dm_control_names("cup-spin") == ("ball_in_cup", "spin")
    for spec in MT30:
        assert dm_control_names(spec.name) == (spec.domain, spec.task)
    with pytest.raises(ValueError, match="<domain>-<task>"):
        dm_control_names("walker")


def test_action_masks_and_subset():
    masks = MT30.action_masks()
    assert masks.shape == (30, 6) and masks.dtype == torch.float32
    assert masks.sum(1).tolist() == list(MT30.action_dims)
    assert masks[7].tolist() == [1, 0, 0, 0, 0, 0]  # pendulum
    sub = MT30.subset(["pendulum-spin", "walker-walk"])
    assert sub.names == ("pendulum-spin", "walker-walk")
    assert (sub.max_obs_dim, sub.max_action_dim) == (24, 6)
    assert MT30.subset("cup-spin").names == ("cup-spin",)
    assert "walker-walk" in MT30 and "walker-wlak" not in MT30
    with pytest.raises(ValueError, match="twice"):
        MT30.subset(["cup-spin", "cup-spin"])
    with pytest.raises(IndexError):
        MT30[30]


def test_unknown_names():
    with pytest.raises(UnknownTaskError, match="walker-walk") as info:
        make_env("walker-wlak", 0)
    assert isinstance(info.value, ValueError)
    assert "walker-walk" in info.value.close_matches
    with pytest.raises(UnknownTaskError, match="walker-walk"):
        MT30.index("walker-wlak")
    with pytest.raises(UnknownTaskError, match="cheetah-run"):
        MT30.subset(["cheetah-rn"])
    with pytest.raises(ValueError, match="mt30"):
        get_task_set("mt31")


# ---------------------------------------------------------------------- environments
def test_all_tasks_build_reset_step():
    rng = np.random.default_rng(0)
    for spec in MT30:
        env = make_env(spec.name, seed=1)
        assert (env.obs_dim, env.action_dim, env.max_episode_steps) == (
            spec.obs_dim,
            spec.action_dim,
            500,
        )
        obs = env.reset()
        assert obs.shape == (spec.obs_dim,) and obs.dtype == np.float32, spec.name
        for _ in range(3):
            obs, reward, done, info = env.step(rng.uniform(-1, 1, spec.action_dim))
            assert obs.shape == (spec.obs_dim,) and obs.dtype == np.float32, spec.name
            assert np.all(np.isfinite(obs)), spec.name
            assert isinstance(reward, float) and 0.0 <= reward <= 2.0, spec.name
            assert done is False
            assert info == {"success": 0.0, "terminated": 0.0}


def test_full_episode_length():
    env = make_env("pendulum-swingup", seed=0)
    env.reset()
    action = np.zeros(1)
    dones = [env.step(action)[2] for _ in range(500)]
    assert dones == [False] * 499 + [True]
    # 500 agent steps x 2 repeats x 0.02 s = the dm_control time limit of 20 s.
    assert env.physics.data.time == pytest.approx(20.0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(action)
    assert env.reset().shape == (3,)


def test_episode_length_other_than_time_limit():
    short = dataclasses.replace(MT30["pendulum-swingup"], episode_length=10)
    env = make_env(short, seed=0)
    env.reset()
    assert [env.step(np.zeros(1))[2] for _ in range(10)] == [False] * 9 + [True]
    too_long = make_env(dataclasses.replace(short, episode_length=501), seed=0)
    too_long.reset()
    for _ in range(499):
        too_long.step(np.zeros(1))
    with pytest.raises(RuntimeError, match="time limit"):
        too_long.step(np.zeros(1))


def test_action_validation_and_clipping():
    env = make_env("cartpole-balance", seed=0)
    env.reset()
    with pytest.raises(ValueError, match=r"expected \(1,\)"):
        env.step(np.zeros(2))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.array([np.nan]))
    a, b = make_env("cartpole-balance", 5), make_env("cartpole-balance", 5)
    a.reset(), b.reset()
    out_a, out_b = a.step(np.array([7.0])), b.step(np.array([1.0]))
    np.testing.assert_array_equal(out_a[0], out_b[0])


def test_seed_determinism():
    for name in ("walker-walk", "cup-spin"):
        actions = np.random.default_rng(3).uniform(-1, 1, (20, MT30[name].action_dim))
        runs = []
        for _ in range(2):
            env = make_env(name, seed=7)
            traj = [env.reset()]
            for a in actions:
                obs, reward, *_ = env.step(a)
                traj += [obs, np.array([reward], dtype=np.float32)]
            traj.append(env.reset())  # the second episode is determined by the seed too
            runs.append(np.concatenate(traj))
        np.testing.assert_array_equal(runs[0], runs[1])
        assert not np.array_equal(make_env(name, 7).reset(), make_env(name, 8).reset())


def test_multitask_padding():
    env = MultiTaskEnv("mt30", seed=4)
    assert (env.obs_dim, env.action_dim, env.task_set) == (24, 6, MT30)
    assert env.current_task is None and not env._envs
    single = make_env("cartpole-balance", seed=4)
    idx = MT30.index("cartpole-balance")
    obs = env.reset(idx)
    assert env.current_task == idx and list(env._envs) == [idx]  # built lazily
    assert obs.shape == (24,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:5], single.reset())
    assert not obs[5:].any()
    for a in (0.3, -0.8):
        padded = np.array([a, 1e6, -1e6, 1e6, -1e6, 1e6])
        obs, reward, done, info = env.step(padded)
        s_obs, s_reward, *_ = single.step(np.array([a]))
        np.testing.assert_array_equal(obs[:5], s_obs)
        assert not obs[5:].any() and reward == s_reward
    with pytest.raises(ValueError, match=r"expected \(6,\)"):
        env.step(np.zeros(1))
    walker_obs = env.reset(0)
    assert env.current_task == 0 and walker_obs.shape == (24,)


def test_multitask_subset_keeps_model_padding():
    sub = MT30.subset(["pendulum-spin"])
    env = MultiTaskEnv(sub, seed=0, obs_dim=24, action_dim=6)
    assert env.reset(0).shape == (24,)
    assert env.step(np.zeros(6))[0].shape == (24,)
    assert MultiTaskEnv(sub).reset(0).shape == (3,)
    with pytest.raises(ValueError, match="smaller"):
        MultiTaskEnv("mt30", obs_dim=12)


def test_custom_registration_idempotent():
    from dm_control import suite

    import mt_factored.tasks.custom as custom

    importlib.reload(custom)
    custom.register_custom_tasks()
    custom.register_custom_tasks()
    for spec in MT30:
        if spec.custom:
            assert suite.ALL_TASKS.count((spec.domain, spec.task)) == 1
            assert spec.task in suite.TASKS_BY_DOMAIN[spec.domain]
    from dm_control.suite import walker

    assert set(walker.SUITE.tagged("custom")) == {"walk_backwards", "run_backwards"}
    assert suite.load("pendulum", "spin", task_kwargs={"random": 0}).reset() is not None


# ------------------------------------------------------------------- custom rewards
def test_pendulum_spin_reward():
    env = make_env("pendulum-spin", 0)
    env.reset()
    assert hand_state(env, qvel={"hinge": 4.5}) == pytest.approx(0.5)
    assert hand_state(env, qvel={"hinge": -9.0}) == pytest.approx(1.0)
    assert hand_state(env, qvel={"hinge": -20.0}) == pytest.approx(1.0)
    assert hand_state(env, qvel={"hinge": 0.0}) == 0.0
    assert R.pendulum_spin(-2.25) == pytest.approx(0.25)


def test_hopper_hop_backwards_reward():
    env = make_env("hopper-hop-backwards", 0)
    env.reset()
    upright = {"rootz": 0.0}  # the model's standing pose: torso over foot
    assert hand_state(env, upright, {"rootx": -1.0}) == pytest.approx(1.0)
    assert 0.6 <= env.physics.height() <= 2
    assert hand_state(env, upright, {"rootx": -0.25}) == pytest.approx(0.25)
    assert hand_state(env, upright, {"rootx": 2.0}) == 0.0  # forward hopping earns nothing
    fallen = {"rooty": np.pi / 2}  # lying: torso beside the foot
    assert hand_state(env, fallen, {"rootx": -1.0}) == 0.0
    assert env.physics.height() < 0.6
    assert R.hopper_hop_backwards(height=2.5, speed=-3) == 0.0


def test_cheetah_rewards():
    env = make_env("cheetah-run-backwards", 0)
    env.reset()
    assert hand_state(env, qvel={"rootx": -8.0}) == pytest.approx(1.0)
    assert hand_state(env, qvel={"rootx": -4.0}) == pytest.approx(0.5)
    assert hand_state(env, qvel={"rootx": 4.0}) == 0.0

    # Pitched up by 90 degrees with the back end on top: torso 1.2, bfoot 1.82, ffoot 0.71.
    on_front_leg = {"rootz": 0.5, "rooty": np.pi / 2}
    front, back = make_env("cheetah-run-front", 0), make_env("cheetah-run-back", 0)
    front.reset(), back.reset()
    assert hand_state(front, on_front_leg, {"rootx": 6.0}) == pytest.approx(1.0)
    xpos = front.physics.named.data.xpos
    torso, bfoot, ffoot = xpos["torso", "z"], xpos["bfoot", "z"], xpos["ffoot", "z"]
    assert torso == pytest.approx(1.2) and bfoot > 1.2 and ffoot < 1.2
    assert hand_state(front, on_front_leg, {"rootx": 3.0}) == pytest.approx((5 * 0.5 + 1) / 6)
    up_back = (3 * g(ffoot, 1.2, 0.6) + 2 * 1.0) / 5
    assert hand_state(back, on_front_leg, {"rootx": 3.0}) == pytest.approx(up_back * 3.5 / 6)

    jump = make_env("cheetah-jump", 0)
    jump.reset()
    high = {"rootz": 1.0}  # level, everything above 1.2
    assert hand_state(jump, high) == pytest.approx(1.0)
    assert hand_state(jump, high, {"rootx": 0.75}) == pytest.approx((5 + 0.5) / 6)
    assert hand_state(jump, high, {"rootx": -2.0}) == pytest.approx(5 / 6)
    expected = np.mean([(5 * g((torso + f) / 2, 1.2, 0.6) + 1) / 6 for f in (bfoot, ffoot)])
    assert hand_state(jump, on_front_leg) == pytest.approx(expected)


def test_walker_backwards_rewards():
    walk = make_env("walker-walk-backwards", 0)
    walk.reset()
    # Zero pose: torso upright at 1.3 m, so the stand term is 1.
    assert hand_state(walk, qvel={"rootx": -1.0}) == pytest.approx(1.0)
    assert hand_state(walk, qvel={"rootx": -0.5}) == pytest.approx((5 * 0.5 + 1) / 6)
    assert hand_state(walk, qvel={"rootx": 1.0}) == pytest.approx(1 / 6)
    run = make_env("walker-run-backwards", 0)
    run.reset()
    assert hand_state(run, qvel={"rootx": -8.0}) == pytest.approx(1.0)
    assert hand_state(run, qvel={"rootx": -2.0}) == pytest.approx((5 * 0.25 + 1) / 6)
    # Lying flat (torso horizontal at 0.3 m): stand = (3 G(0.3) + 0.5) / 4.
    stand = (3 * g(0.3, 1.2, 0.6) + 0.5) / 4
    got = hand_state(run, {"rootz": -1.0, "rooty": np.pi / 2}, {"rootx": -8.0})
    assert run.physics.torso_height() == pytest.approx(0.3)
    assert got == pytest.approx(stand)


def test_cup_spin_reward():
    env = make_env("cup-spin", 0)
    env.reset()
    # Ball at the cup's target site (world z 0.55): in the cup, so no reward at any speed.
    assert hand_state(env, {"ball_z": 0.35}, {"ball_x": 10.0}) == 0.0
    assert env.physics.in_target() == 1.0
    # Ball 0.2 m below the target at speed 5: (clip(2 * 0.2) + 2 clip(5 / 6)) / 3.
    got = hand_state(env, {"ball_z": 0.15}, {"ball_x": 3.0, "ball_z": 4.0})
    assert got == pytest.approx((0.4 + 2 * 5 / 6) / 3)
    assert hand_state(env, {"ball_z": 0.15}, {"ball_x": 7.0}) == pytest.approx((0.4 + 2) / 3)
    assert R.cup_spin(in_target=0.0, ball_to_target_dist=0.6, ball_speed=6.0) == 1.0


def test_cup_spin_starts_mostly_in_cup():
    env = make_env("cup-spin", 0)
    starts = []
    for _ in range(100):
        env.reset()
        starts.append(env.physics.in_target())
        assert env.physics.data.ncon == 0 and not env.physics.data.qvel.any()
    assert 0.8 <= np.mean(starts) < 1.0  # 90% in the cup by design (10% may start anywhere)


def test_reacher_three():
    env = make_env("reacher-three-easy", 0)
    physics = env.physics
    model = physics.model
    assert (model.njnt, model.nu) == (3, 3)
    assert [model.joint(i).name for i in range(3)] == ["shoulder0", "shoulder1", "wrist"]
    assert [model.actuator(i).name for i in range(3)] == ["shoulder0", "shoulder1", "wrist"]
    assert list(model.actuator_trnid[:, 0]) == [0, 1, 2]
    assert list(model.jnt_limited) == [0, 1, 1]
    np.testing.assert_allclose(model.jnt_range[1:], np.deg2rad([[-80, 80], [-80, 80]]))
    assert env.reset().shape == (8,)
    assert physics.named.model.geom_size["target", 0] == 0.05

    hand_state(env)  # arm straight along x: finger at the 0.27 m reach
    np.testing.assert_allclose(physics.named.data.geom_xpos["finger"], [0.27, 0, 0.01], atol=1e-12)
    target = physics.named.model.geom_pos["target"]
    target[:2] = [0.27, 0.0]
    assert hand_state(env) == 1.0
    target[:2] = [0.27 + 0.05, 0.0]  # within target + finger radius (0.06)
    assert hand_state(env) == 1.0
    target[:2] = [0.0, 0.2]
    assert hand_state(env) == 0.0
    obs = env.task.get_observation(physics)
    np.testing.assert_allclose(obs["to_target"], [-0.27, 0.2], atol=1e-12)

    hard = make_env("reacher-three-hard", 0)
    hard.reset()
    assert hard.physics.named.model.geom_size["target", 0] == 0.015
    hard.physics.named.model.geom_pos["target"][:2] = [0.27 + 0.03, 0.0]
    assert hand_state(hard) == 0.0  # beyond 0.015 + 0.01


def test_reward_formulas_closed_forms():
    for v in np.linspace(-12, 12, 49):
        assert R.cheetah_run_backwards(v) == pytest.approx(np.clip(-v / 8, 0, 1))
        assert R.hopper_hop_backwards(1.0, v) == pytest.approx(np.clip(-v, 0, 1))
        assert R.pendulum_spin(v) == pytest.approx(np.clip(abs(v) / 9, 0, 1))
        spd = np.clip(v / 6, 0, 1)
        assert R.cheetah_run_lifted(v, 2.0, 2.0) == pytest.approx((5 * spd + 1) / 6)
        jump_spd = 1.0 if abs(v) <= 0.5 else np.clip(2 - 2 * abs(v), 0, 1)
        assert R.cheetah_jump(v, 2.0, 2.0, 2.0) == pytest.approx((5 + jump_spd) / 6)
        move = np.clip(-v / 8, 0, 1)
        assert R.walker_backwards(1.3, 1.0, v, 8) == pytest.approx((5 * move + 1) / 6)
    for d in np.linspace(0, 0.8, 17):
        expected = (np.clip(2 * d, 0, 1) + 2 * np.clip(4.0 / 6, 0, 1)) / 3
        assert R.cup_spin(0.0, d, 4.0) == pytest.approx(expected)


def test_render_headless():
    """Rendering with MUJOCO_GL=egl in a fresh process (skipped without an EGL device)."""
    script = textwrap.dedent(
        """
        try:
            import mujoco.egl
            mujoco.egl.GLContext(8, 8).make_current()
        except Exception:
            print("NOGL"); raise SystemExit(0)
        from mt_factored.tasks import MultiTaskEnv, make_env
        env = make_env("reacher-three-easy", 0)
        env.reset()
        frame = env.render(height=48, width=64)
        assert frame.shape == (48, 64, 3) and frame.dtype.name == "uint8" and frame.any()
        mt = MultiTaskEnv("mt30", 0)
        mt.reset(7)
        assert mt.render(height=24, width=32, camera_id=0).shape == (24, 32, 3)
        print("OK")
        """
    )
    env = dict(os.environ, MUJOCO_GL="egl", PYOPENGL_PLATFORM="egl")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    if "NOGL" in out.stdout:
        pytest.skip("no EGL device")
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr


def test_taskset_validation():
    with pytest.raises(ValueError, match="empty"):
        TaskSet("none", ())
    assert isinstance(hash(MT30), int)

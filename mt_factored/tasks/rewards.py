"""Reward formulas of the custom mt30 tasks, as functions of plain physical quantities.

Each function follows the public TD-MPC2 task of the same name; the task classes in
`mt_factored.tasks.custom` read the quantities off the physics and call these. All
rewards lie in [0, 1]. `tolerance` is dm_control's (1 inside the bounds; outside,
`gaussian` decays to 0.1 at one margin, `linear` to `value_at_margin`).
"""

from __future__ import annotations

from dm_control.utils.rewards import tolerance

INF = float("inf")

# Torso (and foot) height above which the walker/cheetah "up" terms are 1; margin is half.
STAND_HEIGHT = 1.2


def _at_least(x: float, bound: float, margin: float) -> float:
    """Gaussian tolerance of `x >= bound`: 1 above, 0.1 at `bound - margin`."""
    return float(tolerance(x, bounds=(bound, INF), margin=margin))


def walker_backwards(
    torso_height: float, torso_upright: float, horizontal_velocity: float, move_speed: float
) -> float:
    """walker-walk-backwards (move_speed 1) / walker-run-backwards (8).

    Stock walker walk/run with the speed goal negated: stand * (5 move + 1) / 6 with
    stand = (3 standing + upright) / 4 and move = clip(-v / move_speed, 0, 1).
    """
    standing = _at_least(torso_height, STAND_HEIGHT, STAND_HEIGHT / 2)
    upright = (1 + torso_upright) / 2
    stand = (3 * standing + upright) / 4
    move = tolerance(
        horizontal_velocity,
        bounds=(-INF, -move_speed),
        margin=move_speed / 2,
        value_at_margin=0.5,
        sigmoid="linear",
    )
    return float(stand * (5 * move + 1) / 6)


def cheetah_run_backwards(speed: float) -> float:
    """cheetah-run-backwards: clip(-speed / 8, 0, 1)."""
    return float(tolerance(speed, bounds=(-INF, -8), margin=8, value_at_margin=0, sigmoid="linear"))


def cheetah_run_lifted(speed: float, torso_z: float, lifted_foot_z: float) -> float:
    """cheetah-run-front (lifted foot = bfoot) / cheetah-run-back (lifted foot = ffoot).

    up = (3 foot_up + 2 torso_up) / 5 with gaussian height terms at 1.2 (margin 0.6);
    reward = up * (5 clip(speed / 6, 0, 1) + 1) / 6.
    """
    torso_up = _at_least(torso_z, STAND_HEIGHT, STAND_HEIGHT / 2)
    foot_up = _at_least(lifted_foot_z, STAND_HEIGHT, STAND_HEIGHT / 2)
    up = (3 * foot_up + 2 * torso_up) / 5
    spd = tolerance(speed, bounds=(6, INF), margin=6, value_at_margin=0, sigmoid="linear")
    return float(up * (5 * spd + 1) / 6)


def cheetah_jump(speed: float, torso_z: float, bfoot_z: float, ffoot_z: float) -> float:
    """cheetah-jump: stay in place (|speed| <= 0.5) with torso and each foot high.

    stand_F = (5 G((torso_z + F_z) / 2 >= 1.2, 0.6) + spd) / 6 for F in (bfoot, ffoot),
    spd = clip(2 - 2 |speed|, 0, 1); reward = mean of the two stand_F.
    """
    spd = tolerance(speed, bounds=(-0.5, 0.5), margin=0.5, value_at_margin=0, sigmoid="linear")
    stands = [
        (5 * _at_least((torso_z + foot_z) / 2, STAND_HEIGHT, STAND_HEIGHT / 2) + spd) / 6
        for foot_z in (bfoot_z, ffoot_z)
    ]
    return float(sum(stands) / 2)


def hopper_hop_backwards(height: float, speed: float) -> float:
    """hopper-hop-backwards: indicator(0.6 <= height <= 2) * clip(-speed, 0, 1)."""
    standing = tolerance(height, bounds=(0.6, 2))
    hopping = tolerance(speed, bounds=(-INF, -1), margin=0.5, value_at_margin=0.5, sigmoid="linear")
    return float(standing * hopping)


def cup_spin(in_target: float, ball_to_target_dist: float, ball_speed: float) -> float:
    """cup-spin: swing the ball fast and far from the cup; 0 while it is in the cup.

    (1 - in_target) * (clip(2 dist, 0, 1) + 2 clip(speed / 6, 0, 1)) / 3.
    """
    dist_r = tolerance(
        ball_to_target_dist, bounds=(0.5, INF), margin=0.25, value_at_margin=0.5, sigmoid="linear"
    )
    vel_r = tolerance(ball_speed, bounds=(6, INF), margin=3, value_at_margin=0.5, sigmoid="linear")
    return float((1 - in_target) * (dist_r + 2 * vel_r) / 3)


def pendulum_spin(angular_velocity: float) -> float:
    """pendulum-spin: clip(|w| / 9, 0, 1) for hinge angular velocity w (rad/s), either way."""
    return float(
        tolerance(
            abs(angular_velocity),
            bounds=(9, INF),
            margin=4.5,
            value_at_margin=0.5,
            sigmoid="linear",
        )
    )

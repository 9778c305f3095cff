"""`DistillConfig`: every constant of the ranking distillation (Fac-TDMPC Alg. 1, Table 2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from mt_factored.artifacts.configs import DictRoundTrip
from mt_factored.distill.registry import check_terms
from mt_factored.errors import InputError


class Normalize(str, Enum):
    """What divides the returns before the softmax over the K noise samples."""

    window = "window"
    """Each window's own expert spread (per step, per kind of return)."""
    task = "task"
    """The root mean square of that spread over the batch's windows of the same task."""
    shared = "shared"
    """Rewards and values both by the expert's value spread of the window."""
    none = "none"
    """Nothing: the temperatures act on raw returns."""


class Noise(str, Enum):
    """How the K action sequences of each window are drawn."""

    gaussian = "gaussian"
    """The paper's: the data actions plus Gaussian noise of ``noise_std``."""
    planner = "planner"
    """What MPPI tries: around several centers (``planner_centers``) with a std drawn
    log-uniformly in ``planner_std`` per sequence, and, for a share
    ``single_agent_fraction`` of them, moving one agent only (the question decentralized
    planning asks each agent)."""


class Center(str, Enum):
    """A sequence the planner-like candidates are drawn around."""

    data = "data"
    """The window's recorded actions."""
    expert_policy = "expert_policy"
    """The expert's policy-mean rollout from the window's first state (near the expert's plan)."""
    student_policy = "student_policy"
    """The student's policy-mean rollout (where the student's own planner starts)."""


PAPER_TERMS = {"reward_kl": 0.5, "value_kl": 0.1, "policy": 1.0}
"""Fac-TDMPC's loss (Table 2): reward and value ranking, policy-prior regression."""


@dataclass(kw_only=True)
class DistillConfig(DictRoundTrip):
    """Settings of :func:`~mt_factored.distill.distill_losses` (keyword-only, JSON-serialisable).

    Temperatures. Rewards are O(1) per step and values O(100) (discount 0.99), and both
    vary by orders of magnitude across the 30 tasks, so no single temperature makes
    both softmaxes over the K noise samples informative. With ``normalize`` (default
    ``window``) the returns of each window and step are divided, for the student and the
    expert alike, by the expert's standard deviation over the K samples (floored, detached);
    the temperatures are then unit-free. The same divisor on both sides and
    ``student_temperature == expert_temperature`` make the KL minimal exactly when the
    student's returns equal the expert's up to a constant per window, so the
    student's scale tracks the expert's (MPPI's temperature acts on raw returns).
    """

    terms: dict[str, float] = field(default_factory=lambda: dict(PAPER_TERMS))
    """Loss terms and their coefficients, ``{name: coefficient}``: reward_kl, value_kl
    (ranking, the paper), reward_mse, value_mse (regression ablation, ``distill=mse``),
    policy (the policy prior from the expert's policy mean), consistency (TD-MPC2's latent
    consistency, found harmful by the paper), or one registered with
    ``mt_factored.distill.loss_term``. 0 leaves a term out; the total sums the rest in
    registration order. E.g. ``distill.terms.consistency=0.5``."""
    num_noise_samples: int = 10
    """K: noisy copies of each window's action sequence."""
    noise_std: tuple[float, ...] = (0.3,)
    """Standard deviation of the Gaussian action noise (actions then clamped to [-1, 1]),
    one per noise sample, cycled over the K samples: e.g. ``[0.3, 2.0]`` ranks half the
    samples near the data actions and half as spread as MPPI's first iteration (std 2,
    mostly clamped to the bounds), so the student also learns how the expert rates the
    far-off actions a planner will try."""
    rho: float = 0.5
    """Weight decay over the horizon: step h weighs rho^h."""
    policy_shapes_latents: bool = False
    """Let the policy term's gradient reach the student's latents (encoder and dynamics).
    TD-MPC2 detaches its policy from the latents because its policy loss maximises Q; here
    the term is a regression onto the expert's actions, a dense signal about the state that
    the ranking terms (differences between noise samples only) give the encoder slowly."""
    student_temperature: float = 1.0
    """T_s of the student's softmax (unit-free with ``normalize``)."""
    expert_temperature: float = 1.0
    """T_e of the expert's softmax (unit-free with ``normalize``)."""
    normalize: Normalize = Normalize.window
    """window: divide each window's returns by the expert's std over the K samples (see the
    class doc); task: by that std's root mean square over the batch's windows of the same
    task, so windows where the expert barely separates the samples keep near-uniform targets
    instead of amplified noise; shared: rewards and values of each window and step both
    divided by the expert's value std over the K samples, so a reward error costs what it
    costs the planned return (reward + value) instead of being stretched by the often tiny
    reward spread; none: temperatures act on raw returns."""
    reward_std_floor: float = 0.01
    """Smallest divisor for rewards (reward units), so a window whose K rewards the
    expert cannot tell apart gives a near-uniform target, not amplified noise."""
    value_std_floor: float = 1.0
    """Smallest divisor for values (value units, ~1/(1-discount) times the reward floor)."""
    return_std_floor: float = 0.01
    """Smallest divisor of the H-step returns of ``return_kl`` (value units)."""
    noise: Noise = Noise.gaussian
    """gaussian: the paper's noise around the data actions; planner: candidates like MPPI's
    (see :class:`Noise`)."""
    planner_centers: tuple[str, ...] = ("data", "expert_policy", "student_policy")
    """Centers of the planner-like candidates (sample k uses center k mod their count): data,
    expert_policy, student_policy (:class:`Center`)."""
    planner_std: tuple[float, float] = (0.05, 2.0)
    """(min, max) of the log-uniform std of the planner-like candidates (MPPI's std bounds)."""
    single_agent_fraction: float = 0.5
    """Share of the planner-like candidates that move one real agent only."""
    group_agents: bool = False
    """Run the student's rollout per group of windows with the same number of real agents,
    only those agents (no work on padded agents; equal up to float rounding, so off by
    default to keep recorded results reproducible; ``benchmarks/distill_throughput.py``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", {str(k): float(v) for k, v in dict(self.terms).items()})
        check_terms(self.terms)
        negative = {k: v for k, v in self.terms.items() if v < 0}
        if negative:
            raise InputError(f"DistillConfig.terms: coefficients must be >= 0, got {negative}")
        if not any(self.terms.values()):
            raise InputError(
                "DistillConfig.terms selects no loss term (every coefficient is 0)",
                "give at least one term a coefficient, e.g. distill.terms.reward_kl=0.5",
            )
        stds = self.noise_std
        if isinstance(stds, int | float):  # a single std, from Python
            stds = (stds,)
        if not isinstance(stds, Sequence) or not stds or any(float(s) < 0 for s in stds):
            raise InputError(
                f"noise_std must be >= 0 (a non-empty list of them), got {self.noise_std}"
            )
        object.__setattr__(self, "noise_std", tuple(float(s) for s in stds))
        try:
            object.__setattr__(self, "normalize", Normalize(self.normalize))
        except ValueError:
            raise InputError(
                f"DistillConfig.normalize must be one of {[n.value for n in Normalize]}, "
                f"got {self.normalize!r}"
            ) from None
        try:
            object.__setattr__(self, "noise", Noise(self.noise))
            centers = tuple(Center(c) for c in self.planner_centers)
        except ValueError as err:
            raise InputError(
                f"DistillConfig: {err}",
                f"noise is one of {[n.value for n in Noise]}, planner_centers a list of "
                f"{[c.value for c in Center]}",
            ) from None
        if not centers:
            raise InputError("DistillConfig.planner_centers is empty", "name at least one center")
        object.__setattr__(self, "planner_centers", centers)
        low, high = (float(x) for x in self.planner_std)
        if not 0 < low <= high:
            raise InputError(
                f"DistillConfig.planner_std must be 0 < min <= max, got {self.planner_std}"
            )
        object.__setattr__(self, "planner_std", (low, high))
        if not 0 <= self.single_agent_fraction <= 1:
            raise InputError(
                f"DistillConfig.single_agent_fraction must be in [0, 1], got {self.single_agent_fraction}"
            )
        if self.num_noise_samples < 2:
            raise InputError(
                f"num_noise_samples must be >= 2 to rank, got {self.num_noise_samples}"
            )
        if not 0 < self.rho <= 1:
            raise InputError(f"rho must be in (0, 1], got {self.rho}")
        for name in (
            "student_temperature",
            "expert_temperature",
            "reward_std_floor",
            "value_std_floor",
            "return_std_floor",
        ):
            if getattr(self, name) <= 0:
                raise InputError(f"DistillConfig.{name} must be > 0, got {getattr(self, name)}")

    def sample_stds(self) -> tuple[float, ...]:
        """The noise std of each of the K samples (``noise_std`` cycled)."""
        stds = self.noise_std
        return tuple(stds[k % len(stds)] for k in range(self.num_noise_samples))

"""`DistillConfig`: every constant of the ranking distillation (Fac-TDMPC Alg. 1, Table 2)."""

from __future__ import annotations

from dataclasses import dataclass

from mt_factored.artifacts.configs import DictRoundTrip

LOSSES = ("kl", "mse")


@dataclass(frozen=True, kw_only=True)
class DistillConfig(DictRoundTrip):
    """Settings of :func:`~mt_factored.distill.distill_losses` (keyword-only, JSON-serialisable).

    Temperatures. Rewards are O(1) per step and values O(100) (discount 0.99), and both
    vary by orders of magnitude across the 30 tasks, so no single temperature makes
    both softmaxes over the K noise samples informative. With ``normalize`` (default)
    the returns of each window and step are divided, for the student and the expert
    alike, by the expert's standard deviation over the K samples (floored, detached);
    the temperatures are then unit-free. The same divisor on both sides and
    ``student_temperature == expert_temperature`` make the KL minimal exactly when the
    student's returns equal the expert's up to a constant per window, so the
    student's scale tracks the expert's (MPPI's temperature acts on raw returns).
    """

    loss: str = "kl"
    """"kl": match the softmax rankings over noise samples (the paper); "mse": regress the
    expert's rewards and values directly (ablation, raw scale)."""
    num_noise_samples: int = 10
    """K: perturbed copies of each window's action sequence."""
    noise_std: float | tuple[float, ...] = 0.3
    """Standard deviation of the Gaussian action noise (actions then clamped to [-1, 1]).
    A list gives one std per noise sample, cycled over the K samples: e.g. ``[0.3, 2.0]``
    ranks half the samples near the data actions and half as spread as MPPI's first
    iteration (std 2, mostly clamped to the bounds), so the student also learns how the
    expert rates the far-off actions a planner will try."""
    rho: float = 0.5
    """Weight decay over the horizon: step h weighs rho^h."""
    reward_coef: float = 0.5
    """Weight of the reward term."""
    value_coef: float = 0.1
    """Weight of the value term."""
    policy_coef: float = 1.0
    """Weight of the policy-prior term: MSE between the student's and the expert's
    deterministic actions along the rollouts (0 disables)."""
    policy_shapes_latents: bool = False
    """Let the policy term's gradient reach the student's latents (encoder and dynamics).
    TD-MPC2 detaches its policy from the latents because its policy loss maximises Q; here
    the term is a regression onto the expert's actions, a dense signal about the state that
    the ranking terms (differences between noise samples only) give the encoder slowly."""
    consistency_coef: float = 0.0
    """Weight of a TD-MPC2 latent consistency term (0 = off, as the paper finds it harmful):
    the student's next latents under the data actions vs its encoding of the next obs."""
    student_temperature: float = 1.0
    """T_s of the student's softmax (unit-free with ``normalize``)."""
    expert_temperature: float = 1.0
    """T_e of the expert's softmax (unit-free with ``normalize``)."""
    normalize: bool | str = True
    """True or "window": divide each window's returns by the expert's std over the K samples
    (see class doc); "task": by that std's root mean square over the batch's windows of the
    same task, so windows where the expert barely separates the samples keep near-uniform
    targets instead of amplified noise; "shared": rewards and values of each window and step
    both divided by the expert's value std over the K samples, so a reward error costs what
    it costs the planned return (reward + value) instead of being stretched by the often
    tiny reward spread; False or "none": temperatures act on raw returns."""
    reward_std_floor: float = 0.01
    """Smallest divisor for rewards (reward units), so a window whose K rewards the
    expert cannot tell apart gives a near-uniform target, not amplified noise."""
    value_std_floor: float = 1.0
    """Smallest divisor for values (value units, ~1/(1-discount) times the reward floor)."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"DistillConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.num_noise_samples < 2:
            raise ValueError(
                f"num_noise_samples must be >= 2 to rank, got {self.num_noise_samples}"
            )
        if self.normalize not in (True, False, "window", "task", "shared", "none"):
            raise ValueError(
                "DistillConfig.normalize must be true, false, 'window', 'task', 'shared' or "
                f"'none', got {self.normalize!r}"
            )
        stds = self.noise_stds
        if not stds or any(std < 0 for std in stds):
            raise ValueError(
                f"noise_std must be >= 0 (or a non-empty list of them), got {self.noise_std}"
            )
        if not 0 < self.rho <= 1:
            raise ValueError(f"rho must be in (0, 1], got {self.rho}")
        for name in ("reward_coef", "value_coef", "policy_coef", "consistency_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"DistillConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "student_temperature",
            "expert_temperature",
            "reward_std_floor",
            "value_std_floor",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"DistillConfig.{name} must be > 0, got {getattr(self, name)}")

    @property
    def noise_stds(self) -> tuple[float, ...]:
        """``noise_std`` as a tuple (one entry when it is a single number)."""
        if isinstance(self.noise_std, int | float):
            return (float(self.noise_std),)
        return tuple(float(std) for std in self.noise_std)

    def sample_stds(self) -> tuple[float, ...]:
        """The noise std of each of the K samples (``noise_std`` cycled)."""
        stds = self.noise_stds
        return tuple(stds[k % len(stds)] for k in range(self.num_noise_samples))

"""One MPPI planner with an explicit agent axis.

Every (env, agent) pair runs its own MPPI: its own sampling distribution, its own
elites, its own returns. A centralized model is 1 agent x A dims, a factored one
N agents x G dims; all pairs are planned in the same batched tensor ops, so the
only Python loop is over the optimisation iterations.

Shapes (E envs, N agents, S samples, P policy trajectories, K elites, H horizon,
G dims per agent): actions ``[E, N, S, H, G]``, returns ``[E, N, S]``, sampling
mean/std ``[E, N, H, G]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mt_factored.planning.base import MPPIConfig, PlanningModel

GeneratorLike = torch.Generator | int | None


def make_generator(generator: GeneratorLike, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device``.

    Args:
        generator: an existing generator (must live on ``device``), an int seed, or
            None for a generator seeded from torch's global RNG (so
            ``torch.manual_seed`` makes it reproducible).
        device: where the random numbers will be drawn.
    """
    _check_generator_arg(generator)
    device = torch.device(device)
    if isinstance(generator, torch.Generator):
        if generator.device.type != device.type:
            raise ValueError(
                f"generator lives on {generator.device}, but the inputs are on {device}; "
                "pass a generator on the inputs' device, or an int seed"
            )
        return generator
    if generator is None:
        generator = int(torch.randint(0, 2**62, (1,)).item())
    gen = torch.Generator(device=device)
    gen.manual_seed(generator)
    return gen


def _check_generator_arg(generator: GeneratorLike) -> None:
    if isinstance(generator, bool) or not isinstance(generator, torch.Generator | int | None):
        raise TypeError(
            f"generator must be a torch.Generator, an int seed or None, got {generator!r}"
        )


class LazyGenerator:
    """A ``torch.Generator`` made at first use on the inputs' device.

    Planners and planning models take ``generator=`` before they know the device;
    this holds the argument and builds (or checks) the generator when asked.

    Args:
        generator: see :func:`make_generator`.
    """

    def __init__(self, generator: GeneratorLike = None) -> None:
        _check_generator_arg(generator)
        self._arg = generator
        self._generator: torch.Generator | None = None

    def on(self, device: torch.device) -> torch.Generator:
        """The generator for inputs on ``device`` (re-made from the seed if the device changed)."""
        if self._generator is None or self._generator.device.type != torch.device(device).type:
            self._generator = make_generator(self._arg, device)
        return self._generator


@dataclass(frozen=True)
class PlanStats:
    """Per-(env, agent) statistics of the last optimisation iteration (for debugging)."""

    elite_values: torch.Tensor
    """``[E, N, K]`` returns of the elites, best first (less the prior anchor's penalty when
    ``prior_weight`` > 0)."""
    elite_weights: torch.Tensor
    """``[E, N, K]`` softmax weights of the elites."""
    mean: torch.Tensor
    """``[E, N, H, G]`` final sampling mean (the next warm start, before shifting)."""
    std: torch.Tensor
    """``[E, N, H, G]`` final sampling standard deviation."""


def check_plan_inputs(obs: torch.Tensor, task: torch.Tensor) -> None:
    """What every actor's ``plan`` needs: ``obs [envs, obs_dim]`` and ``task [envs]``."""
    if obs.dim() != 2:
        raise ValueError(f"obs must be [envs, obs_dim], got {tuple(obs.shape)}")
    if task.shape != (obs.shape[0],):
        raise ValueError(f"task must be [envs={obs.shape[0]}], got {tuple(task.shape)}")


@dataclass(frozen=True)
class IterationSettings:
    """The MPPI settings the optimisation iterations read (Python numbers: constants of a
    compiled graph, so a graph is specialised to one budget)."""

    iterations: int
    num_elites: int
    temperature: float
    min_std: float
    max_std: float
    prior_weight: float

    @classmethod
    def of(cls, config: MPPIConfig) -> IterationSettings:
        return cls(
            iterations=config.iterations,
            num_elites=config.num_elites,
            temperature=config.temperature,
            min_std=config.min_std,
            max_std=config.max_std,
            prior_weight=config.prior_weight,
        )


ReturnsFn = Callable[[torch.Tensor, int], torch.Tensor]
"""``returns(actions [E, N, S, H, G], iteration) -> [E, N, S]``."""

NoiseFn = Callable[[int], torch.Tensor]
"""``noise(iteration) -> [E, N, S - P, H, G]`` standard normal noise of that iteration's samples."""


def mppi_iterations(
    returns: ReturnsFn,
    pi_actions: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    noise: torch.Tensor | NoiseFn,
    mask: torch.Tensor,
    anchor: torch.Tensor | None,
    settings: IterationSettings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MPPI's optimisation iterations as a pure function of their tensors.

    A model may run this through ``torch.compile`` with its returns inlined (its
    ``iterate``): every random number then comes in as a tensor, so compiled and eager runs
    see the same numbers. Eagerly, the noise is drawn iteration by iteration (a function),
    interleaved with the model's own draws as it always was.

    Args:
        returns: each candidate's return at an iteration (see :data:`ReturnsFn`).
        pi_actions: ``[E, N, P, H, G]`` the policy prior's trajectories (masked), in front
            of the samples at every iteration (P may be 0).
        mean, std: ``[E, N, H, G]`` initial sampling distribution.
        noise: ``[iterations, E, N, S - P, H, G]`` standard normal noise of the samples, or a
            function drawing one iteration's (see :data:`NoiseFn`).
        mask: ``[E, N, G]`` 1 on real action entries.
        anchor: ``[E, N, 1, G]`` the prior's deterministic first action, or None.
        settings: iterations, elites, temperature, std bounds, anchor weight.

    Returns:
        final mean and std ``[E, N, H, G]``, last iteration's elite values and weights
        ``[E, N, K]`` and elite actions ``[E, N, K, H, G]``.
    """
    s = settings
    horizon, dims = mean.shape[2], mean.shape[3]
    mask_t = mask.unsqueeze(2)  # [E, N, 1, G]: broadcasts over horizon
    mask_s = mask_t.unsqueeze(2)  # [E, N, 1, 1, G]: over samples and horizon
    elite_value = score = elite_actions = mean  # rebound by the first iteration
    for it in range(s.iterations):
        eps = noise(it) if callable(noise) else noise[it]
        sampled = (eps * std.unsqueeze(2) + mean.unsqueeze(2)).clamp_(-1.0, 1.0) * mask_s
        actions = torch.cat([pi_actions, sampled], dim=2)  # [E, N, S, H, G]
        value = returns(actions, it).nan_to_num(0.0)
        if value.shape != actions.shape[:3]:
            raise ValueError(
                f"returns must be [envs, agents, samples]={tuple(actions.shape[:3])}, "
                f"got {tuple(value.shape)}"
            )
        if anchor is not None:
            gap = (actions[:, :, :, 0] - anchor).square().sum(dim=-1)  # [E, N, S]
            value = value - s.prior_weight * gap
        elite_value, elite_idx = torch.topk(value, s.num_elites, dim=2)
        elite_actions = torch.gather(
            actions, 2, elite_idx[..., None, None].expand(-1, -1, -1, horizon, dims)
        )  # [E, N, K, H, G]
        score = torch.softmax(s.temperature * elite_value, dim=2)  # [E, N, K]
        mean = torch.einsum("enk,enkhg->enhg", score, elite_actions)
        spread = (elite_actions - mean.unsqueeze(2)).square()
        std = torch.einsum("enk,enkhg->enhg", score, spread).sqrt()
        std = std.clamp(s.min_std, s.max_std) * mask_t
        mean = mean * mask_t
    return mean, std, elite_value, score, elite_actions


class MPPIPlanner:
    """Model predictive path integral control over a :class:`PlanningModel`.

    Args:
        model: the world model seen through the agent axis.
        config: MPPI settings (None: TD-MPC2's defaults).
        generator: a ``torch.Generator`` on the inputs' device, an int seed, or None
            (seeded from torch's global RNG at the first plan).
    """

    def __init__(
        self,
        model: PlanningModel,
        config: MPPIConfig | None = None,
        generator: GeneratorLike = None,
    ) -> None:
        if not isinstance(model, PlanningModel):
            raise TypeError(
                f"{type(model).__name__} does not implement PlanningModel "
                "(num_agents, agent_action_dim, initial_state, action_mask, "
                "policy_actions, returns, to_env_action)"
            )
        config = MPPIConfig() if config is None else config
        if not isinstance(config, MPPIConfig):
            raise TypeError(f"config must be an MPPIConfig, got {type(config).__name__}")
        if config.prior_weight > 0 and not callable(getattr(model, "policy_mean", None)):
            raise TypeError(
                f"prior_weight={config.prior_weight} anchors the plan to the policy prior, but "
                f"{type(model).__name__} has no policy_mean(state, task); set prior_weight=0"
            )
        self.model = model
        self.config = config
        self._generator = LazyGenerator(generator)
        self._prev_mean: torch.Tensor | None = None
        self.last_stats: PlanStats | None = None

    @property
    def budget(self) -> tuple[int, int]:
        """``(num_samples, iterations)``: what the result tables call the planning budget."""
        return self.config.num_samples, self.config.iterations

    def reseed(self, seed: int) -> None:
        """Restart the planner's randomness (and its model's policy samples) from ``seed``, so
        what follows does not depend on what was planned before (e.g. other tasks)."""
        self._generator = LazyGenerator(seed)
        reseed_model = getattr(self.model, "reseed", None)
        if reseed_model is not None:
            reseed_model(seed)

    def reset(self, envs: torch.Tensor | list[int] | None = None) -> None:
        """Forget the warm start: of every env (None), or of the given env indices / bool mask."""
        if envs is None or self._prev_mean is None:
            self._prev_mean = None
            return
        with torch.inference_mode():
            idx = torch.as_tensor(envs, device=self._prev_mean.device)
            self._prev_mean[idx] = 0.0

    def _initial_mean(
        self, t0: bool | torch.Tensor, shape: torch.Size, like: torch.Tensor
    ) -> torch.Tensor:
        """Zeros where ``t0``; elsewhere the previous mean shifted one step earlier."""
        mean = torch.zeros(shape, dtype=like.dtype, device=like.device)
        num_envs = shape[0]
        if isinstance(t0, torch.Tensor):
            if t0.shape != (num_envs,) or t0.dtype != torch.bool:
                raise ValueError(
                    f"t0 must be a bool or a BoolTensor [{num_envs}], got {t0.dtype} {tuple(t0.shape)}"
                )
            keep = ~t0.to(like.device)
            if not bool(keep.any()):
                return mean
        elif isinstance(t0, bool):
            if t0:
                return mean
            keep = None
        else:
            raise TypeError(f"t0 must be a bool or a BoolTensor, got {type(t0).__name__}")
        prev = self._prev_mean
        if prev is None:  # nothing planned yet: the reference starts from zeros too
            return mean
        if prev.shape != shape:
            raise ValueError(
                f"warm start holds a mean of shape {tuple(prev.shape)} but this plan needs "
                f"{tuple(shape)} (different number of envs?); call reset() or pass t0=True"
            )
        shifted = prev[:, :, 1:]
        if keep is not None:
            shifted = shifted * keep.view(-1, 1, 1, 1).to(shifted.dtype)
        mean[:, :, :-1] = shifted
        return mean

    def plan(
        self,
        obs: torch.Tensor,
        task: torch.Tensor,
        t0: bool | torch.Tensor = False,
        eval_mode: bool = True,
    ) -> torch.Tensor:
        """Plan one action per env.

        Args:
            obs: ``[E, obs_dim]`` observations.
            task: ``[E]`` task ids (long).
            t0: True (or True per env, a BoolTensor ``[E]``) at the first step of an
                episode: those envs start from a zero mean instead of the warm start.
            eval_mode: True: the first action of the final mean; False (exploration):
                an elite drawn by its softmax weight, plus ``std`` noise. (TD-MPC2's
                reference code draws the elite in evaluation too, only without the
                noise; the mean is this project's evaluation action.)

        Returns:
            ``[E, action_dim]`` environment actions in [-1, 1], padded entries 0.
        """
        check_plan_inputs(obs, task)
        with torch.inference_mode():
            action = self._plan(obs, task, t0, eval_mode)
        # A normal tensor (not an inference tensor), so callers may modify it in place.
        return action.clone()

    def _plan(
        self, obs: torch.Tensor, task: torch.Tensor, t0: bool | torch.Tensor, eval_mode: bool
    ) -> torch.Tensor:
        cfg, model = self.config, self.model
        gen = self._generator.on(obs.device)
        num_envs, dims = obs.shape[0], model.agent_action_dim
        num_samples, num_pi, num_elites, horizon = (
            cfg.num_samples,
            cfg.num_pi_trajs,
            cfg.num_elites,
            cfg.horizon,
        )

        state = model.initial_state(obs, task)
        mask = model.action_mask(task).to(obs.dtype)
        # A model may plan fewer than num_agents agents for a batch whose tasks use fewer.
        agents = mask.shape[1] if mask.dim() == 3 else -1
        if mask.shape != (num_envs, agents, dims) or not 1 <= agents <= model.num_agents:
            raise ValueError(
                f"action_mask must be [envs={num_envs}, 1..{model.num_agents} agents, dims={dims}], "
                f"got {tuple(mask.shape)}"
            )
        mask_s = mask[:, :, None, None]  # [E, N, 1, 1, G]: broadcasts over samples and horizon

        mean = self._initial_mean(t0, torch.Size((num_envs, agents, horizon, dims)), obs)
        std = torch.full_like(mean, cfg.max_std)

        pi_actions = obs.new_empty(num_envs, agents, 0, horizon, dims)
        if num_pi > 0:
            pi = model.policy_actions(state, task, num_pi, horizon)
            if pi.shape != (num_envs, agents, num_pi, horizon, dims):
                raise ValueError(
                    f"policy_actions must be {(num_envs, agents, num_pi, horizon, dims)}, got {tuple(pi.shape)}"
                )
            pi_actions = pi * mask_s
        anchor = None
        if cfg.prior_weight > 0:
            anchor = (model.policy_mean(state, task) * mask).unsqueeze(2)  # [E, N, 1, G]
        settings = IterationSettings.of(cfg)
        shape = (num_envs, agents, num_samples - num_pi, horizon, dims)
        if getattr(model, "fuses_iterations", False):
            # Every iteration's sampling noise up front, one normal_ per iteration in the
            # order the loop would draw it, so the whole loop is one pure (compiled) function.
            # (normal_ into contiguous blocks: on a strided view it takes a slow scalar path.)
            noise = obs.new_empty(cfg.iterations, *shape)
            for it in range(cfg.iterations):
                noise[it].normal_(generator=gen)
            result = model.iterate(
                state, task, pi_actions, mean, std, noise, mask, anchor, settings
            )
        else:
            buffer = obs.new_empty(shape)

            def draw(it: int) -> torch.Tensor:
                return buffer.normal_(generator=gen)

            result = mppi_iterations(
                lambda candidates, it: model.returns(state, candidates, task),
                pi_actions,
                mean,
                std,
                draw,
                mask,
                anchor,
                settings,
            )
        mean, std, elite_value, score, elite_actions = result

        if eval_mode:
            first = mean[:, :, 0].clone()
        else:
            pick = torch.multinomial(score.reshape(-1, num_elites), 1, generator=gen)
            pick = pick.view(num_envs, agents, 1, 1, 1).expand(-1, -1, 1, 1, dims)
            first = torch.gather(elite_actions[:, :, :, :1], 2, pick).view(num_envs, agents, dims)
            first_noise = torch.randn(
                first.shape, generator=gen, dtype=first.dtype, device=first.device
            )
            first = first + std[:, :, 0] * first_noise
        first = first.clamp_(-1.0, 1.0).mul_(mask)

        self._prev_mean = mean
        self.last_stats = PlanStats(
            elite_values=elite_value, elite_weights=score, mean=mean, std=std
        )
        return model.to_env_action(first, task)

"""`FactoredStudent`: the factored world model of Fac-TDMPC (Sec. 4.2), multi-task.

A central encoder maps ``cat([obs, task_emb])`` to a hidden vector ``h``; a head
shared by all agents and conditioned on the agent-index embedding turns ``h`` into
one latent per agent, ``s [B, N, m]``. Each agent then has its own dynamics
``s'_k = T(s_k, a_k)``, reward ``r_k``, value ensemble ``q_k`` and policy prior, all
one set of weights shared by agents and tasks and conditioned on
``cat([task_emb, agent_emb_k])``. Global reward and value are sums over the task's
real agents (Fac-TDMPC's additive decomposition).

Dynamics and reward are one "step" network with two outputs (next latent and
reward from shared hidden layers, as MuZero's dynamics function): planning needs
both at every (latent, action) pair, and one network instead of two halves the
per-step cost, which dominates planning latency (see
benchmarks/student_planning_latency.py). Hidden layers are Linear -> LayerNorm ->
SiLU: on CPU, Mish costs ~9x SiLU per element and these small networks are
bound by elementwise work, not by their matmuls.

Shapes: per-agent tensors are ``[..., B, N, dim]``: any leading sample dims (noise
samples, MPPI samples), then the batch ``B`` the conditioning was built for, then the
agent axis. All agents and samples run in one batched call per network.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch
from torch import nn

from mt_factored.constants import LIBRARY_NAME, LICENSE, PIPELINE_TAG, STUDENT_TAGS
from mt_factored.nn import mlp, renormed_embedding, simnorm
from mt_factored.student.agents import AgentLayout
from mt_factored.student.conditioned import ConditionedMLP
from mt_factored.student.config import StudentConfig
from mt_factored.student.pretrained import StudentHubMixin

TASK_EMB_MAX_NORM = 1.0
"""Task-embedding rows are rescaled to at most this norm at lookup (TD-MPC2's max_norm)."""
TASK_EMB_INIT_RANGE = 0.02
"""Task embeddings start uniform in [-0.02, 0.02] (TD-MPC2)."""


class StudentConditioning(NamedTuple):
    """Everything constant over a plan or rollout of a batch of ``B`` (env, task) pairs."""

    task: torch.Tensor
    """``[B]`` task ids."""
    agent_mask: torch.Tensor
    """``[B, N]`` bool: True for the task's real agents."""
    action_mask: torch.Tensor
    """``[B, N, G]`` float: 1 on real action entries of each agent."""
    discount: torch.Tensor
    """``[B]`` discount of each task."""
    step: torch.Tensor
    """``[1, B, N, mlp_dim]`` first-layer bias of the step network (dynamics and reward)."""
    q: torch.Tensor
    """``[num_q, B, N, mlp_dim]`` first-layer biases of the value ensemble."""
    pi: torch.Tensor | None
    """``[1, B, N, mlp_dim]`` first-layer bias of the policy prior (None without one)."""

    def narrow_agents(self, num_agents: int) -> StudentConditioning:
        """The same conditioning for the first ``num_agents`` agents only."""
        return self._replace(
            agent_mask=self.agent_mask[:, :num_agents],
            action_mask=self.action_mask[:, :num_agents],
            step=self.step[..., :num_agents, :],
            q=self.q[..., :num_agents, :],
            pi=None if self.pi is None else self.pi[..., :num_agents, :],
        )


class PolicyOutput(NamedTuple):
    """One draw of the per-agent policy prior; padded entries are 0 in all three."""

    action: torch.Tensor
    """``[..., B, N, G]`` sampled action ``tanh(mean + std * eps)``."""
    mean: torch.Tensor
    """``[..., B, N, G]`` deterministic action ``tanh(mean)``."""
    log_std: torch.Tensor
    """``[..., B, N, G]`` log standard deviation before the tanh."""


class FactoredStudent(
    nn.Module,
    StudentHubMixin,
    library_name=LIBRARY_NAME,
    license=LICENSE,
    pipeline_tag=PIPELINE_TAG,
    tags=STUDENT_TAGS,
):
    """Central encoder, then per-agent dynamics, reward, value ensemble and policy prior.

    Hub: ``save_pretrained(folder)``, ``from_pretrained(folder_or_repo_id, revision=...)``
    and ``push_to_hub`` come from :class:`~mt_factored.student.pretrained.StudentHubMixin`
    (huggingface_hub's ``PyTorchModelHubMixin``): ``model.safetensors`` + ``config.json`` +
    ``README.md``.

    Args:
        config: sizes and task facts (see :class:`StudentConfig`).
    """

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = c = config
        m, g = c.latent_dim, c.agent_action_dim
        cond = c.task_dim + c.agent_dim
        self.layout = AgentLayout(c)
        self.task_emb = nn.Embedding(c.num_tasks, c.task_dim)
        self.agent_emb = nn.Embedding(c.num_agent_embeddings, c.agent_dim)
        self.trunk = mlp(
            c.obs_dim + c.task_dim, (c.num_enc_layers - 1) * [c.enc_dim], c.enc_dim, nn.Mish()
        )
        self.head = ConditionedMLP(c.enc_dim, c.agent_dim, c.enc_dim, 1, m)
        self.head_norm = nn.LayerNorm(m)
        self.step_net = ConditionedMLP(m + g, cond, c.mlp_dim, c.num_mlp_layers, m + 1)
        self.step_norm = nn.LayerNorm(m)
        self.q_head = ConditionedMLP(m + g, cond, c.mlp_dim, c.num_mlp_layers, 1, members=c.num_q)
        self.pi_head = (
            ConditionedMLP(m, cond, c.mlp_dim, c.num_mlp_layers, 2 * g)
            if c.use_policy_prior
            else None
        )
        self.register_buffer("_discounts", torch.tensor(c.discounts), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """TD-MPC2's initialisation; reward and value heads start at exactly 0.

        Agent embeddings start ~N(0, 1/agent_dim) (rows of norm ~1), so agents are
        told apart from the first step; task embeddings as TD-MPC2.
        """
        for module in self.trunk.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.uniform_(self.task_emb.weight, -TASK_EMB_INIT_RANGE, TASK_EMB_INIT_RANGE)
        nn.init.normal_(self.agent_emb.weight, std=self.config.agent_dim**-0.5)
        nn.init.zeros_(self.step_net.out.weight[:, -1])  # the reward output
        nn.init.zeros_(self.step_net.out.bias[:, -1])
        nn.init.zeros_(self.q_head.out.weight)
        nn.init.zeros_(self.q_head.out.bias)

    # ----------------------------------------------------------------- facts
    @property
    def num_agents(self) -> int:
        return self.config.num_agents

    @property
    def agent_action_dim(self) -> int:
        return self.config.agent_action_dim

    @property
    def discounts(self) -> torch.Tensor:
        """``[num_tasks]`` discount per task."""
        return self._discounts

    def agent_mask(self, task: torch.Tensor) -> torch.Tensor:
        """``[*task.shape, N]`` float: 1 for the task's agents (at least one real joint)."""
        return self.layout.agent_mask(task)

    def agent_action_mask(self, task: torch.Tensor) -> torch.Tensor:
        """``[*task.shape, N, G]`` float: 1 on real action entries."""
        return self.layout.agent_action_mask(task)

    def split_actions(self, action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """``[..., A]`` -> ``[..., N, G]`` (task broadcasts to the batch dims; padding 0)."""
        return self.layout.split(action, task)

    def merge_actions(self, agent_action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """``[..., N, G]`` -> ``[..., A]`` (padding 0)."""
        return self.layout.merge(agent_action, task)

    def agent_env_masks(self, task: torch.Tensor) -> torch.Tensor:
        """``[B, N, A]``: 1 on the environment action entries each agent of ``task [B]``
        controls (0 rows for padded agents)."""
        layout = self.agent_action_mask(task)  # [B, N, G]
        one_agent = torch.eye(layout.shape[1], dtype=layout.dtype, device=layout.device)
        return self.merge_actions(one_agent[None, :, :, None] * layout[:, None], task[:, None])

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoder (trunk and latent head), for a separate learning rate."""
        return [*self.trunk.parameters(), *self.head.parameters()]

    def param_groups(self, lr: float, enc_lr_scale: float = 1.0) -> list[dict[str, Any]]:
        """Optimiser groups: the encoder at ``lr * enc_lr_scale``, everything else at ``lr``."""
        encoder = self.encoder_parameters()
        encoder_ids = {id(p) for p in encoder}
        rest = [p for p in self.parameters() if id(p) not in encoder_ids]
        return [{"params": encoder, "lr": lr * enc_lr_scale}, {"params": rest, "lr": lr}]

    # ------------------------------------------------------------- conditioning
    def task_embedding(self, task: torch.Tensor) -> torch.Tensor:
        """``[*task.shape, task_dim]``, rows rescaled to norm <= 1."""
        return renormed_embedding(self.task_emb.weight, task.long(), TASK_EMB_MAX_NORM)

    def _agent_rows(self) -> torch.Tensor:
        return self.agent_emb.weight[: self.num_agents]

    def condition(self, task: torch.Tensor) -> StudentConditioning:
        """Fold task and agent embeddings into every per-agent network's first-layer bias.

        Args:
            task: ``[B]`` task ids.
        """
        if task.dim() != 1:
            raise ValueError(f"condition expects task ids [B], got shape {tuple(task.shape)}")
        task = task.long()
        task_e = self.task_embedding(task)  # [B, task_dim]
        agent_e = self._agent_rows()  # [N, agent_dim]
        b, n = task_e.shape[0], agent_e.shape[0]
        c = torch.cat([task_e[:, None].expand(b, n, -1), agent_e[None].expand(b, n, -1)], dim=-1)
        action_mask = self.layout.agent_action_mask(task)
        return StudentConditioning(
            task=task,
            agent_mask=self.layout.agent_mask(task) > 0,
            action_mask=action_mask,
            discount=self._discounts[task],
            step=self.step_net.condition(c),
            q=self.q_head.condition(c),
            pi=self.pi_head.condition(c) if self.pi_head is not None else None,
        )

    # --------------------------------------------------------------- world model
    def encode(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """``obs [..., obs_dim]`` (task broadcasting to its batch dims) -> latents ``[..., N, m]``."""
        task_e = self.task_embedding(task)
        try:
            task_e = task_e.expand(*obs.shape[:-1], task_e.shape[-1])
        except RuntimeError as err:
            raise ValueError(
                f"task ids of shape {tuple(task.shape)} do not broadcast to obs {tuple(obs.shape)}"
            ) from err
        h = self.trunk(torch.cat([obs, task_e], dim=-1))
        bias = self.head.condition(self._agent_rows())  # [1, N, enc_dim]
        return self._latent(self.head(h.unsqueeze(-2), bias).squeeze(0), self.head_norm)

    def _latent(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return simnorm(norm(x), self.config.simnorm_dim)

    @staticmethod
    def _inputs(s: torch.Tensor, a: torch.Tensor, cond: StudentConditioning) -> torch.Tensor:
        if a.shape[-1] != cond.action_mask.shape[-1] or a.shape[:-1] != s.shape[:-1]:
            raise ValueError(
                f"agent actions {tuple(a.shape)} do not match latents {tuple(s.shape)} "
                f"(expected [..., B, N, G={cond.action_mask.shape[-1]}]; see split_actions)"
            )
        return torch.cat([s, a * cond.action_mask], dim=-1)

    def step(
        self, s: torch.Tensor, a: torch.Tensor, cond: StudentConditioning
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of every agent: ``s [..., B, N, m]``, ``a [..., B, N, G]`` ->
        (next latents ``[..., B, N, m]``, rewards ``[..., B, N]``).

        Padded agents get reward exactly 0 and pass no gradient through it.
        """
        out = self.step_net(self._inputs(s, a, cond), cond.step).squeeze(0)
        m = self.config.latent_dim
        next_s = self._latent(out[..., :m], self.step_norm)
        return next_s, out[..., m].where(cond.agent_mask, 0.0)

    def next(self, s: torch.Tensor, a: torch.Tensor, cond: StudentConditioning) -> torch.Tensor:
        """Per-agent next latents ``[..., B, N, m]`` (use :meth:`step` when you also need rewards)."""
        return self.step(s, a, cond)[0]

    def reward(self, s: torch.Tensor, a: torch.Tensor, cond: StudentConditioning) -> torch.Tensor:
        """Per-agent rewards ``[..., B, N]``; 0 for padded agents (see :meth:`step`)."""
        return self.step(s, a, cond)[1]

    def q(self, s: torch.Tensor, a: torch.Tensor, cond: StudentConditioning) -> torch.Tensor:
        """Per-agent values of every member ``[num_q, ..., B, N]``; 0 for padded agents."""
        q = self.q_head(self._inputs(s, a, cond), cond.q).squeeze(-1)
        return q.where(cond.agent_mask, 0.0)

    def global_reward(
        self, s: torch.Tensor, a: torch.Tensor, cond: StudentConditioning
    ) -> torch.Tensor:
        """``[..., B]``: sum of the task's agents' rewards."""
        return self.reward(s, a, cond).sum(dim=-1)

    def global_q(self, s: torch.Tensor, a: torch.Tensor, cond: StudentConditioning) -> torch.Tensor:
        """``[num_q, ..., B]``: per member, sum of the task's agents' values."""
        return self.q(s, a, cond).sum(dim=-1)

    def pi(
        self,
        s: torch.Tensor,
        cond: StudentConditioning,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> PolicyOutput:
        """Per-agent tanh-Gaussian policy prior (mean, log-std and noise masked like TD-MPC2).

        Args:
            generator: draws the standard normal noise (ignored when ``noise`` is given).
            noise: that noise, ``[..., B, N, G]``, drawn by the caller (a compiled caller
                draws it outside the graph, so eager and compiled see the same numbers).
        """
        if self.pi_head is None:
            raise RuntimeError("this student has no policy prior (use_policy_prior=False)")
        mean, raw_log_std = self.pi_head(s, cond.pi).squeeze(0).chunk(2, dim=-1)
        c = self.config
        log_std = c.log_std_min + 0.5 * (c.log_std_max - c.log_std_min) * (
            torch.tanh(raw_log_std) + 1
        )
        mask = cond.action_mask
        if noise is None:
            noise = self.policy_noise(mean.shape, mean, generator)
        elif noise.shape != mean.shape:
            raise ValueError(f"policy noise must be {tuple(mean.shape)}, got {tuple(noise.shape)}")
        mean, log_std, eps = mean * mask, log_std * mask, noise * mask
        return PolicyOutput(
            action=torch.tanh(mean + eps * log_std.exp()), mean=torch.tanh(mean), log_std=log_std
        )

    @staticmethod
    def policy_noise(
        shape: torch.Size | tuple[int, ...],
        like: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The standard normal noise :meth:`pi` draws for actions of ``shape`` ``[..., B, N, G]``."""
        return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)

    # --------------------------------------------------------------- embodiments
    @torch.no_grad()
    def extend_agents(self, new_num_agents: int, init: torch.Tensor | None = None) -> None:
        """Grow the agent embedding to ``new_num_agents`` rows for embodiments with more agents.

        Existing rows and every shared weight are kept, so outputs for the existing
        agents do not change. New rows are ``init [new - old, agent_dim]`` or the mean
        of the existing rows. ``config.agent_slots`` is updated; tasks that use the new
        agents come with a config whose partitions have them.
        """
        old = self.agent_emb.weight
        if new_num_agents < old.shape[0]:
            raise ValueError(
                f"cannot shrink the agent embedding from {old.shape[0]} to {new_num_agents}"
            )
        rows = new_num_agents - old.shape[0]
        if init is None:
            init = old.mean(dim=0, keepdim=True).expand(rows, -1)
        if init.shape != (rows, old.shape[1]):
            raise ValueError(f"init must be [{rows}, {old.shape[1]}], got {tuple(init.shape)}")
        grown = nn.Embedding(new_num_agents, old.shape[1], device=old.device, dtype=old.dtype)
        grown.weight.copy_(torch.cat([old, init.to(old)], dim=0))
        grown.weight.requires_grad_(old.requires_grad)
        self.agent_emb = grown
        self.config = dataclasses.replace(self.config, agent_slots=new_num_agents)

"""Value-guided sampling: a BC denoiser steered at every step by a chunked critic's gradient.

* The BC actor stays frozen (``update_actor=False``, the default) or keeps
  its BC loss only; it never sees a Q loss.
* A chunked critic (:mod:`agents.critic`) is trained by TD with the *guided*
  sampler as its target-action rule.
* Sampling adds ``w_k grad_a Q(s, a)`` to each step's velocity (flow) or, for
  DDPM, ``-sqrt(1 - abar) w_k grad_a Q`` to its noise prediction (classifier
  guidance), through the sampler's guidance hook. ``guide_at='clean'`` takes
  the gradient at the one-step clean estimate ``a_hat`` (Q-guided flow: the
  critic only ever saw clean chunks); ``'noisy'`` at the noisy sample itself
  (Diffuser / DAC style), the option to compare against.
* ``w_k`` follows ``guidance_schedule`` over the sampling index ``k`` of
  ``K``, with flow time ``t = k / K``: ``'constant'`` (``w``), ``'linear'``
  (``w (k + 1) / K``, strongest near the clean end) or ``'qgf'``
  (``w (1 - t) / t``, 0 at ``t = 0``, QGF's latest scaling).
* The guided chunks can then be chosen by best-of-N (``num_samples > 1``,
  ``selection``). ``guidance_scale = 0`` is the unguided sampler, bit for bit.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import ml_collections

from agents import bc
from agents import critic as critic_lib
from agents import select as select_lib
from agents.actor import Actor
from agents.common import StaticConfig
from agents.critic import Critic
from agents.select import check_config, sample_and_choose

SCHEDULES = ("constant", "linear", "qgf")
GUIDE_AT = ("clean", "noisy")


def guidance_weight(k: jax.Array, steps: int, scale: float, schedule: str) -> jax.Array:
    """``w_k`` at sampling index ``k`` of ``steps`` (see the module docstring).

    Raises:
      ValueError: unknown ``schedule``.
    """
    k = jnp.asarray(k, jnp.float32)
    if schedule == "constant":
        return jnp.full_like(k, scale)
    if schedule == "linear":
        return scale * (k + 1) / steps
    if schedule == "qgf":
        t = k / steps
        return jnp.where(t > 0, scale * (1 - t) / jnp.maximum(t, 1e-6), 0.0)
    raise ValueError(f"agent.guidance_schedule must be one of {SCHEDULES}, got {schedule!r}")


class GuidedAgent(flax.struct.PyTreeNode):
    """Immutable value-guided-sampling agent: a (frozen) BC ``actor`` and a ``critic``."""

    rng: jax.Array
    actor: Actor
    critic: Critic
    config: StaticConfig = flax.struct.field(pytree_node=False)

    METRICS = ("critic_loss", "q_mean", "bc_loss")

    @staticmethod
    def check(config: ml_collections.ConfigDict) -> None:
        """Raises ``ValueError`` naming the first invalid agent field (run before any training)."""
        check_config(config)
        critic_lib.check_config(config)
        if config.guidance_scale < 0:
            raise ValueError(f"agent.guidance_scale must be >= 0, got {config.guidance_scale}")
        if config.guidance_schedule not in SCHEDULES:
            raise ValueError(f"agent.guidance_schedule must be one of {SCHEDULES}, got {config.guidance_schedule!r}")
        if config.guide_at not in GUIDE_AT:
            raise ValueError(f"agent.guide_at must be one of {GUIDE_AT}, got {config.guide_at!r}")

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict,
               actor: Actor | None = None) -> "GuidedAgent":
        """Builds the agent; ``actor`` (e.g. from BC pretraining) replaces a fresh one.

        Raises:
          ValueError: see :meth:`check`.
        """
        cls.check(config)
        rng, actor, critic, _ = critic_lib.actor_and_critic(seed, obs_dim, action_dim, config, actor)
        return cls(rng=rng, actor=actor, critic=critic, config=StaticConfig(config))

    def guide(self, obs_rows: jax.Array, scale: float | None = None):
        """The guidance hook for chains whose rows have observations ``obs_rows [M, O]`` (``None`` when w = 0)."""
        cfg = self.config
        scale = cfg.guidance_scale if scale is None else scale
        if scale == 0:
            return None
        grad_q = jax.grad(lambda a: self.critic.value(obs_rows, a).sum())

        def hook(x, x_hat, k):
            w = guidance_weight(k, self.actor.generative.denoising_steps, scale, cfg.guidance_schedule)
            return w * grad_q(x_hat if cfg.guide_at == "clean" else x)

        return hook

    def guided_samples(self, obs: jax.Array, key: jax.Array, num_samples: int, scale: float | None = None):
        """``num_samples`` guided chunks per observation (EMA weights): ``[B, N, H, A]``."""
        rows = jnp.repeat(obs, num_samples, axis=0)
        return self.actor.sample(obs, key, num_samples, guide=self.guide(rows, scale))

    def target_rule(self, next_obs: jax.Array, key: jax.Array) -> jax.Array:
        """``target_num_samples`` guided chunks at ``next_obs`` (the critic backs up their max): ``[B, N, H, A]``."""
        return self.guided_samples(next_obs, key, self.config.target_num_samples)

    @jax.jit
    def update(self, batch: dict) -> tuple["GuidedAgent", dict]:
        """One critic step (guided-sampler target) and, with ``update_actor``, one BC step of the actor.

        ``batch`` (see :func:`replay.chunks.training_batch`): ``obs [B, O]``,
        ``actions [B, H, A]``, ``critic_actions [B, h, A]``, ``reward_sum [B]``,
        ``discount [B]``, ``next_obs [B, O]``, ``valid [B]``.
        """
        rng, k_target, k_bc = jax.random.split(self.rng, 3)
        critic, info = self.critic.update(batch, self.target_rule, k_target)
        actor = self.actor
        if self.config.update_actor:
            bc_loss, grads = jax.value_and_grad(actor.bc_loss)(actor.state.params, batch["obs"], batch["actions"],
                                                               batch["valid"], k_bc)
            actor = actor.apply_gradients(grads)
        else:
            bc_loss = actor.bc_loss(actor.state.params, batch["obs"], batch["actions"], batch["valid"], k_bc)
        return self.replace(rng=rng, actor=actor, critic=critic), {**info, "bc_loss": bc_loss}

    @jax.jit
    def sample_actions(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Guided chunks, one per observation or the best of ``num_samples``: ``[B, O] -> [B, H, A]``."""
        if self.config.num_samples == 1:
            return self.guided_samples(obs, key, 1)[:, 0]
        return sample_and_choose(lambda k: self.guided_samples(obs, k, self.config.num_samples), self.critic.value,
                                 obs, self.config, key)


def get_config() -> ml_collections.ConfigDict:
    """Value-guided sampling hyperparameters: the BC actor's, the critic's, and the guidance's."""
    c = select_lib.get_config(critic_lib.get_config(bc.get_config()))
    c.guidance_scale = 1.0             # w: velocity per unit of grad_a Q (actions in [-1, 1], Q in [0, 1])
    c.guidance_schedule = "constant"   # w over steps: 'constant' | 'linear' | 'qgf' ((1 - t) / t)
    c.guide_at = "clean"               # gradient at the one-step clean estimate (QGF) or at the 'noisy' sample
    c.update_actor = False             # keep training the BC actor with its BC loss (never a Q loss)
    c.num_samples = 4                  # guided candidates when acting, then selection (1: no selection)
    c.target_num_samples = 1           # guided candidates in the TD target (max over them)
    return c

"""Diffusion Q-Learning (Wang, Hunt, Zhou 2023, arXiv:2208.06193) on action chunks, and its EDP variant.

* Actor loss (Eq. 3): ``L_bc(theta) + eta * (-Q(s, a_pi) / mean |Q|)`` where
  ``a_pi`` is drawn from the actor's *live* weights through the whole reverse
  chain (one ``lax.scan``; ``remat_chain`` recomputes steps in the backward
  pass), so the Q gradient reaches every denoising step. ``mean |Q|`` is under
  ``stop_gradient`` (the authors' normalisation). The Q term averages the
  ensemble members.
* ``q_action = 'one_step'`` is Efficient Diffusion Policies (Kang et al. 2023,
  arXiv:2305.20081): the action in the Q term is the one-step clean estimate
  from a dataset chunk noised to a random step, with no backpropagation
  through the chain (``a_hat = x_k + (1 - t) v`` for flow,
  ``(x_k - sqrt(1 - abar) eps) / sqrt(abar)`` for DDPM).
* Critic (:mod:`agents.critic`): clipped double Q (``q_agg='min'``) with the
  target action drawn from the EMA (target) actor; ``max_q_backup`` takes the
  max over ``target_num_samples`` such samples (the paper's option, 10 samples).
* Acting: ``num_samples`` chunks from the EMA actor, one chosen by
  ``softmax(Q / temperature)`` (the paper: 50 samples, T = 1 on D4RL's reward
  scale; our rewards are 0/1, so T is smaller) or by ``argmax``.
* The paper's actor is a DDPM with the VP schedule and K = 5
  (``generative='ddpm'``, ``noise_schedule='vp'``, ``train_denoising_steps=5``,
  ``denoising_steps=5``, ``ddim_eta=1``); our flow and cosine-DDPM actors work as they are.
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
from agents.common import StaticConfig, masked_mean
from agents.critic import Critic
from agents.select import check_config, sample_and_choose

Q_ACTIONS = ("chain", "one_step")


class DQLAgent(flax.struct.PyTreeNode):
    """Immutable Diffusion-QL / EDP agent: ``update`` and ``sample_actions`` are pure and jitted."""

    rng: jax.Array
    actor: Actor
    critic: Critic
    config: StaticConfig = flax.struct.field(pytree_node=False)

    METRICS = ("critic_loss", "q_mean", "bc_loss", "q_loss")

    @staticmethod
    def check(config: ml_collections.ConfigDict) -> None:
        """Raises ``ValueError`` naming the first invalid agent field (run before any training)."""
        check_config(config)
        critic_lib.check_config(config)
        if config.eta < 0:
            raise ValueError(f"agent.eta must be >= 0, got {config.eta}")
        if config.q_action not in Q_ACTIONS:
            raise ValueError(f"agent.q_action must be one of {Q_ACTIONS}, got {config.q_action!r}")

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict,
               actor: Actor | None = None) -> "DQLAgent":
        """Builds the agent; ``actor`` (e.g. from BC pretraining) replaces a fresh one.

        Raises:
          ValueError: see :meth:`check`.
        """
        cls.check(config)
        rng, actor, critic, _ = critic_lib.actor_and_critic(seed, obs_dim, action_dim, config, actor)
        return cls(rng=rng, actor=actor, critic=critic, config=StaticConfig(config))

    def target_rule(self, next_obs: jax.Array, key: jax.Array) -> jax.Array:
        """Chunks of the EMA (target) actor at ``next_obs``: ``[B, N, H, A]``, N = 1 or ``target_num_samples``."""
        n = self.config.target_num_samples if self.config.max_q_backup else 1
        return self.actor.sample(next_obs, key, n, unroll=self.config.get("unroll_chain", False))

    def policy_chunk(self, params, obs: jax.Array, chunk: jax.Array, key: jax.Array) -> jax.Array:
        """``a_pi [B, H, A]`` for the Q term, differentiable in ``params`` (see the module docstring)."""
        if self.config.q_action == "chain":
            return self.actor.sample(obs, key, params=params, remat=self.config.remat_chain,
                                     unroll=self.config.get("unroll_chain", False))
        k_step, k_noise = jax.random.split(key)
        steps = self.actor.generative.denoising_steps
        k = jax.random.randint(k_step, (obs.shape[0],), 0, steps)
        noisy = self.actor.generative.add_noise(chunk, k, jax.random.normal(k_noise, chunk.shape))
        return self.actor.clean_estimate(params, obs, noisy, k)

    def actor_loss(self, params, batch: dict, key: jax.Array) -> tuple[jax.Array, dict]:
        """``L_bc + eta * (-Q(s, a_pi) / mean|Q|)`` (Diffusion-QL Eq. 3) on ``batch``."""
        k_bc, k_pi = jax.random.split(key)
        obs, valid = batch["obs"], batch["valid"]
        bc_loss = self.actor.bc_loss(params, obs, batch["actions"], valid, k_bc)
        a_pi = self.policy_chunk(params, obs, batch["actions"], k_pi)
        q = self.critic.values(obs, a_pi).mean(axis=0)  # [B]
        scale = jax.lax.stop_gradient(jnp.maximum(masked_mean(jnp.abs(q), valid), 1e-6))
        q_loss = -masked_mean(q, valid) / scale
        return bc_loss + self.config.eta * q_loss, {"bc_loss": bc_loss, "q_loss": q_loss,
                                                    "q_pi": masked_mean(q, valid)}

    @jax.jit
    def update(self, batch: dict) -> tuple["DQLAgent", dict]:
        """One critic step (EMA-actor target), one actor step on ``L_bc + eta L_q``, a Polyak update.

        ``batch`` (see :func:`replay.chunks.training_batch`): ``obs [B, O]``,
        ``actions [B, H, A]``, ``critic_actions [B, h, A]``, ``reward_sum [B]``,
        ``discount [B]``, ``next_obs [B, O]``, ``valid [B]``.
        """
        rng, k_target, k_actor = jax.random.split(self.rng, 3)
        critic, info = self.critic.update(batch, self.target_rule, k_target)
        (_, actor_info), grads = jax.value_and_grad(self.actor_loss, has_aux=True)(
            self.actor.state.params, batch, k_actor)
        agent = self.replace(rng=rng, actor=self.actor.apply_gradients(grads), critic=critic)
        return agent, {**info, **actor_info}

    @jax.jit
    def sample_actions(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """``num_samples`` chunks of the EMA actor, one selected by ``selection``: ``[B, O] -> [B, H, A]``."""
        def candidates(k):
            return self.actor.sample(obs, k, self.config.num_samples, unroll=self.config.get("unroll_chain", False))

        return sample_and_choose(candidates, self.critic.value, obs, self.config, key)


def get_config() -> ml_collections.ConfigDict:
    """Diffusion-QL hyperparameters: the BC actor's, the critic's, and the Q term's."""
    c = select_lib.get_config(critic_lib.get_config(bc.get_config()))
    c.eta = 1.0                        # weight of the normalised Q term (paper: 1.0 on D4RL locomotion)
    c.q_action = "chain"               # 'chain': backprop through the reverse chain (DQL); 'one_step': EDP
    c.remat_chain = False              # gradient checkpointing of the chain in the Q term
    c.unroll_chain = False             # unroll every chain (Q term, target, acting): faster for short chains, longer compile
    c.q_agg = "min"                    # clipped double Q for targets and selection (the paper)
    c.max_q_backup = False             # target: max over target_num_samples EMA-actor samples (the paper's option)
    c.target_num_samples = 10          # samples of the max-Q backup (used when max_q_backup)
    c.num_samples = 32                 # candidates when acting (paper: 50)
    c.selection = "softmax"            # the paper's evaluation: sample by softmax(Q / T)
    c.temperature = 0.02               # T in units of Q (our Q is in [0, 1]: T = 1 would be nearly uniform)
    return c

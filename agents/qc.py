"""Q-chunking with best-of-N sampling (Li, Zhou, Levine 2025, arXiv:2507.07969).

* Critic: an ensemble ``Q(s_t, a_{t:t+h})`` on the executed chunk, trained
  with the chunked TD target (Eq. 5)
  ``y = sum_{k<h} gamma^k r_{t+k} + gamma^h (1 - terminated) Q_target(s_{t+h}, a')``
  where ``a'`` is the best of ``target_num_samples`` chunks drawn from the
  behaviour (flow/diffusion BC) policy at ``s_{t+h}`` (Eq. 6, the "expected
  max" backup). A chunk cut by an episode end uses its shorter discounted sum
  (see :func:`replay.chunks.chunk_transition`).
* Actor: the chunked BC policy, still trained with its BC loss on all data
  (offline demonstrations and online experience).
* Acting and evaluation: best-of-N, ``argmax_i Q(s, a^i)`` over
  ``num_samples`` chunks from the actor.
"""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from agents import bc
from agents.common import Actor, StaticConfig, aggregate_q, best_of_n, masked_mean, td_target
from networks.critic import ChunkCritic


class QCAgent(flax.struct.PyTreeNode):
    """Immutable QC agent: ``update`` and ``sample_actions`` are pure and jitted."""

    rng: jax.Array
    actor: Actor
    critic: train_state.TrainState
    target_params: flax.core.FrozenDict
    config: StaticConfig = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict,
               actor: Actor | None = None) -> "QCAgent":
        """Builds the agent; ``actor`` (e.g. from BC pretraining) replaces a fresh one.

        Raises:
          ValueError: ``num_samples`` or ``target_num_samples`` < 1, or
            ``action_steps`` outside ``[1, horizon]``.
        """
        for field in ("num_samples", "target_num_samples"):
            if config[field] < 1:
                raise ValueError(f"agent.{field} must be >= 1, got {config[field]}")
        if not 1 <= config.action_steps <= config.horizon:
            raise ValueError(f"agent.action_steps must be in [1, horizon={config.horizon}], "
                             f"got {config.action_steps}")
        k_actor, k_critic, rng = jax.random.split(jax.random.PRNGKey(seed), 3)
        if actor is None:
            actor = Actor.create(k_actor, obs_dim, action_dim, config)
        net = ChunkCritic(hidden_dims=tuple(config.critic_hidden_dims), q_ensemble=config.q_ensemble)
        params = net.init(k_critic, jnp.zeros((1, obs_dim)), jnp.zeros((1, config.action_steps, action_dim)))
        critic = train_state.TrainState.create(apply_fn=net.apply, params=params,
                                               tx=optax.adam(config.critic_lr))
        return cls(rng=rng, actor=actor, critic=critic, target_params=jax.tree.map(jnp.copy, params),
                   config=StaticConfig(config))

    def _q(self, params, obs, chunk):
        return aggregate_q(self.critic.apply_fn(params, obs, chunk), self.config.q_agg)

    def critic_loss(self, params, batch: dict, key: jax.Array) -> tuple[jax.Array, dict]:
        """TD loss summed over the ensemble, weighted by ``batch['valid']``.

        ``batch``: ``obs [B, O]``, ``critic_actions [B, h, A]``, ``reward_sum [B]``,
        ``discount [B]``, ``next_obs [B, O]``, ``valid [B]``.
        """
        h = self.config.action_steps
        candidates = self.actor.sample(batch["next_obs"], key, self.config.target_num_samples)
        _, next_q = best_of_n(candidates, functools.partial(self._q, self.target_params),
                              batch["next_obs"], h)
        target = td_target(batch["reward_sum"], batch["discount"], next_q)
        q = self.critic.apply_fn(params, batch["obs"], batch["critic_actions"])  # [E, B]
        loss = masked_mean((q - target[None]) ** 2, batch["valid"][None]) * q.shape[0]
        return loss, {"critic_loss": loss, "q_mean": masked_mean(q.mean(0), batch["valid"]),
                      "target_mean": masked_mean(target, batch["valid"])}

    @jax.jit
    def update(self, batch: dict) -> tuple["QCAgent", dict]:
        """One critic step, one actor BC step and a Polyak target update (rate ``tau``).

        ``batch`` as in :meth:`critic_loss` plus ``actions [B, H, A]`` for the BC
        loss. Returns the new agent and scalar metrics.
        """
        rng, k_target, k_bc = jax.random.split(self.rng, 3)
        (_, info), grads = jax.value_and_grad(self.critic_loss, has_aux=True)(
            self.critic.params, batch, k_target)
        critic = self.critic.apply_gradients(grads=grads)
        tau = self.config.tau
        target = jax.tree.map(lambda t, p: (1 - tau) * t + tau * p, self.target_params, critic.params)
        bc_loss, actor_grads = jax.value_and_grad(self.actor.bc_loss)(
            self.actor.state.params, batch["obs"], batch["actions"], batch["valid"], k_bc)
        agent = self.replace(rng=rng, actor=self.actor.apply_gradients(actor_grads), critic=critic,
                             target_params=target)
        return agent, {**info, "bc_loss": bc_loss}

    def chunk_value(self, obs: jax.Array, chunk: jax.Array) -> jax.Array:
        """The critic's aggregated value of executing ``chunk [B, H, A]`` (its first h steps) at ``obs [B, O]``: ``[B]``."""
        return self._q(self.critic.params, obs, chunk[:, :self.config.action_steps])

    @jax.jit
    def sample_actions(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Best-of-N chunks: ``obs [B, O] -> [B, H, A]`` in ``[-1, 1]`` (N = ``num_samples``)."""
        candidates = self.actor.sample(obs, key, self.config.num_samples)
        chunk, _ = best_of_n(candidates, functools.partial(self._q, self.critic.params), obs,
                             self.config.action_steps)
        return chunk


def get_config() -> ml_collections.ConfigDict:
    """QC hyperparameters: the BC actor's (agents/bc.py) plus the critic's.

    The defaults are sized for a 2-core CPU; ``configs/qc.py:paper`` restores
    the paper's (4x512 critic, N=32 everywhere).
    """
    c = bc.get_config()
    c.num_samples = 32                 # N: best-of-N candidates when acting / evaluating
    c.target_num_samples = 4           # N used in the TD target's best-of-N backup
    c.tau = 0.005                      # Polyak rate of the target critic
    c.q_ensemble = 2                   # critics in the ensemble
    c.q_agg = "mean"                   # ensemble reduction for selection and targets: 'mean' | 'min'
    c.critic_hidden_dims = (256, 256, 256)  # critic MLP widths (LayerNorm after each)
    c.critic_lr = 3e-4                 # Adam learning rate of the critic
    return c

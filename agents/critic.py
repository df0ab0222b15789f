"""The chunked critic shared by every off-policy agent.

An ensemble ``Q(s_t, a_{t:t+h})`` on the executed prefix of a chunk (Q-chunking,
Li, Zhou, Levine 2025, arXiv:2507.07969, Sec. 4), trained by TD on chunk
transitions with a Polyak-averaged target network (rate ``tau``). What the
agents differ in is the *target-action rule*: a function that proposes ``N``
chunks at the next state, which the critic scores with its target network
and maximises over (``N = 1``: the chunk itself).

* QC: best-of-N from the BC actor (Eq. 6, the "expected max" backup);
* Diffusion-QL: one sample of the EMA (target) actor, or the max-Q backup over
  10 samples (arXiv:2208.06193, Sec. 4);
* QC-FQL: the one-step policy's chunk;
* value-guided sampling: the guided sampler's chunk.

Values are reduced over the ensemble by ``q_agg``: ``'mean'`` (QC) or
``'min'`` (clipped double Q, Diffusion-QL).
"""

from __future__ import annotations

from typing import Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from agents.common import masked_mean
from agents.select import score
from networks.critic import ChunkCritic

TargetRule = Callable[[jax.Array, jax.Array], jax.Array]  # (next_obs [B, O], key) -> chunks [B, N, H, A]
Q_AGG = ("mean", "min")


def aggregate_q(q: jax.Array, how: str) -> jax.Array:
    """Reduces ensemble values ``q [E, ...]`` by ``how`` ('mean' or 'min') over axis 0.

    Raises:
      ValueError: another ``how``.
    """
    if how == "mean":
        return q.mean(axis=0)
    if how == "min":
        return q.min(axis=0)
    raise ValueError(f"agent.q_agg must be one of {Q_AGG}, got {how!r}")


def td_target(reward_sum: jax.Array, discount: jax.Array, next_q: jax.Array) -> jax.Array:
    """Chunked TD target ``sum_{k<h} gamma^k r_{t+k} + gamma^h (1 - terminated) Q'(s_{t+h}, a')``.

    Q-chunking, arXiv:2507.07969, Eq. 5. ``reward_sum [B]`` and ``discount [B]``
    come from :func:`replay.chunks.chunk_transition` (a chunk cut at an
    episode end has fewer steps and, if terminated, zero discount);
    ``next_q [B]``. Returns ``[B]``, with no gradient.
    """
    return jax.lax.stop_gradient(reward_sum + discount * next_q)


def check_config(config) -> None:
    """Raises ``ValueError`` naming the field: ``q_agg`` not in ('mean', 'min'), ``tau`` outside (0, 1],
    ``q_ensemble < 1`` or ``critic_lr <= 0``."""
    if config.q_agg not in Q_AGG:
        raise ValueError(f"agent.q_agg must be one of {Q_AGG}, got {config.q_agg!r}")
    if not 0.0 < config.tau <= 1.0:
        raise ValueError(f"agent.tau must be in (0, 1], got {config.tau}")
    if config.q_ensemble < 1:
        raise ValueError(f"agent.q_ensemble must be >= 1, got {config.q_ensemble}")
    if not config.critic_lr > 0:
        raise ValueError(f"agent.critic_lr must be > 0, got {config.critic_lr}")


def actor_and_critic(seed: int, obs_dim: int, action_dim: int, config, actor=None, num_keys: int = 0):
    """What every critic-based agent's ``create`` starts from, in one place.

    Checks nothing itself (agents call their own ``check`` first). Splits
    ``PRNGKey(seed)`` into ``2 + num_keys + 1`` keys: the actor's, the
    critic's, ``num_keys`` for the agent's own networks, and the agent's rng.

    Returns:
      ``(rng, actor, critic, keys)``: ``actor`` is the given one (e.g. from BC
      pretraining) or a fresh :class:`agents.actor.Actor`; ``keys`` a list of
      ``num_keys`` keys.
    """
    from agents.actor import Actor

    k_actor, k_critic, own, rng = agent_keys(seed, num_keys)
    if actor is None:
        actor = Actor.create(k_actor, obs_dim, action_dim, config)
    return rng, actor, Critic.create(k_critic, obs_dim, action_dim, config), own


def agent_keys(seed: int, num_keys: int = 0) -> tuple[jax.Array, jax.Array, list, jax.Array]:
    """``(actor key, critic key, [num_keys keys for the agent's own networks], rng)`` from ``PRNGKey(seed)``:
    the split :func:`actor_and_critic` uses (a pretraining agent that builds one of those networks early
    takes its key from here, so the network is the same as the agent's own)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 3 + num_keys)
    return keys[0], keys[1], list(keys[2:2 + num_keys]), keys[-1]


class Critic(flax.struct.PyTreeNode):
    """Ensemble critic with its optimiser state and Polyak target.

    Fields: ``state`` (params + Adam), ``target_params``; static:
    ``action_steps`` h (the prefix it scores), ``q_agg``, ``tau``.
    """

    state: train_state.TrainState
    target_params: flax.core.FrozenDict
    action_steps: int = flax.struct.field(pytree_node=False)
    q_agg: str = flax.struct.field(pytree_node=False)
    tau: float = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, key: jax.Array, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict) -> "Critic":
        """Reads ``critic_hidden_dims``, ``q_ensemble``, ``critic_lr``, ``action_steps``, ``q_agg``, ``tau``.

        Raises:
          ValueError: see :func:`check_config`.
        """
        check_config(config)
        net = ChunkCritic(hidden_dims=tuple(config.critic_hidden_dims), q_ensemble=config.q_ensemble)
        params = net.init(key, jnp.zeros((1, obs_dim)), jnp.zeros((1, config.action_steps, action_dim)))
        state = train_state.TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.critic_lr))
        return cls(state=state, target_params=jax.tree.map(jnp.copy, params), action_steps=int(config.action_steps),
                   q_agg=str(config.q_agg), tau=float(config.tau))

    def values(self, obs: jax.Array, chunk: jax.Array, params=None) -> jax.Array:
        """Every member's value of executing ``chunk [B, >=h, A]`` (its first h steps) at ``obs [B, O]``: ``[E, B]``.

        ``params``: the online weights by default; pass ``target_params`` or
        weights being differentiated.
        """
        params = self.state.params if params is None else params
        return self.state.apply_fn(params, obs, chunk[:, :self.action_steps])

    def value(self, obs: jax.Array, chunk: jax.Array, params=None) -> jax.Array:
        """The ensemble's ``q_agg`` value ``[B]`` (see :meth:`values`)."""
        return aggregate_q(self.values(obs, chunk, params), self.q_agg)

    def target_value(self, next_obs: jax.Array, candidates: jax.Array) -> jax.Array:
        """``max_i Q_target(s', a'_i)`` over ``candidates [B, N, H, A]`` at ``next_obs [B, O]``: ``[B]``."""
        q = score(candidates, lambda o, c: self.value(o, c, self.target_params), next_obs)
        return q.max(axis=1)

    def loss(self, params, batch: dict, target: jax.Array) -> tuple[jax.Array, dict]:
        """TD loss summed over the ensemble, weighted by ``batch['valid']``.

        ``batch``: ``obs [B, O]``, ``critic_actions [B, h, A]``, ``valid [B]``;
        ``target [B]`` from :func:`td_target`.
        """
        q = self.state.apply_fn(params, batch["obs"], batch["critic_actions"])  # [E, B]
        loss = masked_mean((q - target[None]) ** 2, batch["valid"][None]) * q.shape[0]
        return loss, {"critic_loss": loss, "q_mean": masked_mean(q.mean(0), batch["valid"]),
                      "q_max": jnp.max(jnp.where(batch["valid"] > 0, q.max(0), -jnp.inf)),
                      "target_mean": masked_mean(target, batch["valid"])}

    def update(self, batch: dict, target_rule: TargetRule, key: jax.Array) -> tuple["Critic", dict]:
        """One TD step and a Polyak target update ``target <- (1 - tau) target + tau params``.

        ``batch`` as in :meth:`loss` plus ``reward_sum [B]``, ``discount [B]``
        (``gamma^h_executed (1 - terminated)``) and ``next_obs [B, O]``;
        ``target_rule(next_obs, key) -> [B, N, H, A]`` proposes the next
        chunks (the agent's rule). Returns the new critic and scalar metrics.
        """
        candidates = jax.lax.stop_gradient(target_rule(batch["next_obs"], key))
        target = td_target(batch["reward_sum"], batch["discount"], self.target_value(batch["next_obs"], candidates))
        (_, info), grads = jax.value_and_grad(self.loss, has_aux=True)(self.state.params, batch, target)
        state = self.state.apply_gradients(grads=grads)
        target_params = jax.tree.map(lambda t, p: (1 - self.tau) * t + self.tau * p, self.target_params, state.params)
        return self.replace(state=state, target_params=target_params), info


def get_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Adds the chunked critic's fields to an agent config ``c`` (its actor fields already there)."""
    c.tau = 0.005                      # Polyak rate of the target critic
    c.q_ensemble = 2                   # critics in the ensemble
    c.q_agg = "mean"                   # ensemble reduction for selection and targets: 'mean' | 'min'
    c.critic_hidden_dims = (256, 256, 256)  # critic MLP widths (LayerNorm after each)
    c.critic_lr = 3e-4                 # Adam learning rate of the critic
    return c

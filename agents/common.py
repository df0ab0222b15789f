"""Pieces every agent shares: the chunked generative actor, best-of-N, TD targets.

Agents differ only in their losses and sampling rules; everything here is
used as is by each of them.
"""

from __future__ import annotations

from typing import Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from networks.denoiser import ChunkMLPDenoiser
from networks.generative import DDPM, FlowMatching, make_generative


class StaticConfig(ml_collections.FrozenConfigDict):
    """An agent's hyperparameters as a static (non-pytree) field, with a fast ``==``.

    ``jax.jit`` compares a static field with the one in its cache on every
    call; :class:`ml_collections.FrozenConfigDict`'s field-by-field ``==``
    costs about 0.5 ms, a sixth of a best-of-32 chunk at batch 1. The same
    object (every agent made by ``replace`` keeps it) now compares by identity.
    """

    def __eq__(self, other) -> bool:
        return self is other or super().__eq__(other)

    __hash__ = ml_collections.FrozenConfigDict.__hash__


class Actor(flax.struct.PyTreeNode):
    """A chunked flow-matching or DDPM policy ``pi(a_{t:t+H} | s_t)`` with an EMA copy.

    Fields: ``state`` (params + optimizer), ``ema_params`` (used for sampling),
    ``step`` (int32 updates so far); static: ``generative``
    (:class:`~networks.generative.FlowMatching` or :class:`~networks.generative.DDPM`),
    ``horizon`` H, ``action_dim`` A, ``ema_decay``.
    """

    state: train_state.TrainState
    ema_params: flax.core.FrozenDict
    generative: FlowMatching | DDPM = flax.struct.field(pytree_node=False)
    horizon: int = flax.struct.field(pytree_node=False)
    action_dim: int = flax.struct.field(pytree_node=False)
    ema_decay: float = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, key: jax.Array, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict) -> "Actor":
        """Initialises the denoiser from ``config`` (``actor_hidden_dims``, ``horizon``, ``actor_lr``, ...)."""
        net = ChunkMLPDenoiser(hidden_dims=tuple(config.actor_hidden_dims), layer_norm=config.actor_layer_norm,
                               activation=config.get("actor_activation", "mish"))
        params = net.init(key, jnp.zeros((1, config.horizon, action_dim)), jnp.zeros((1,)),
                          jnp.zeros((1, obs_dim)))
        tx = optax.adamw(config.actor_lr, weight_decay=config.actor_weight_decay)
        if config.grad_clip > 0:
            tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), tx)
        state = train_state.TrainState.create(apply_fn=net.apply, params=params, tx=tx)
        return cls(state=state, ema_params=jax.tree.map(jnp.copy, params), generative=make_generative(config),
                   horizon=int(config.horizon), action_dim=int(action_dim), ema_decay=float(config.ema_decay))

    def bc_loss(self, params, obs: jax.Array, chunk: jax.Array, weights: jax.Array, key: jax.Array) -> jax.Array:
        """Weighted mean flow-matching / DDPM loss on ``obs [B, O]``, ``chunk [B, H, A]``, ``weights [B]``."""
        return masked_mean(self.generative.loss(self.state.apply_fn, params, obs, chunk, key), weights)

    def apply_gradients(self, grads) -> "Actor":
        """One optimizer step plus the EMA update ``ema <- d ema + (1 - d) params``.

        The decay warms up as ``min(ema_decay, (1 + n) / (10 + n))`` over update count n.
        """
        state = self.state.apply_gradients(grads=grads)
        n = state.step.astype(jnp.float32)
        decay = jnp.minimum(self.ema_decay, (1.0 + n) / (10.0 + n))
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, self.ema_params, state.params)
        return self.replace(state=state, ema_params=ema)

    def sample(self, obs: jax.Array, key: jax.Array, num_samples: int | None = None) -> jax.Array:
        """Samples chunks with the EMA weights.

        Args:
          obs: ``[B, O]`` normalised observations.
          key: PRNG key.
          num_samples: if given, N chunks per observation.

        Returns:
          ``[B, H, A]`` (or ``[B, N, H, A]``) chunks in ``[-1, 1]``.
        """
        if num_samples is None:
            return self.generative.sample(self.state.apply_fn, self.ema_params, obs, key,
                                          self.horizon, self.action_dim)
        batch = obs.shape[0]
        rep = jnp.repeat(obs, num_samples, axis=0)
        chunks = self.generative.sample(self.state.apply_fn, self.ema_params, rep, key,
                                        self.horizon, self.action_dim)
        return chunks.reshape(batch, num_samples, self.horizon, self.action_dim)


def aggregate_q(q: jax.Array, how: str) -> jax.Array:
    """Reduces ensemble values ``q [E, ...]`` by ``how`` ('mean' or 'min') over axis 0."""
    if how == "mean":
        return q.mean(axis=0)
    if how == "min":
        return q.min(axis=0)
    raise ValueError(f"agent.q_agg must be 'mean' or 'min', got {how!r}")


def best_of_n(chunks: jax.Array, q_fn: Callable[[jax.Array, jax.Array], jax.Array], obs: jax.Array,
              action_steps: int) -> tuple[jax.Array, jax.Array]:
    """Best-of-N selection (Q-chunking, arXiv:2507.07969, Eq. 6: ``argmax_i Q(s, a^i)``).

    Args:
      chunks: ``[B, N, H, A]`` candidate chunks.
      q_fn: ``q_fn(obs [B*N, O], chunk [B*N, h, A]) -> [B*N]`` aggregated critic value.
      obs: ``[B, O]``.
      action_steps: h, the executed prefix scored by the critic.

    Returns:
      ``(chunk [B, H, A], q [B])``: the highest-valued candidate and its value.
    """
    batch, n = chunks.shape[:2]
    rep = jnp.repeat(obs, n, axis=0)
    q = q_fn(rep, chunks[:, :, :action_steps].reshape(batch * n, action_steps, -1)).reshape(batch, n)
    idx = jnp.argmax(q, axis=1)
    return chunks[jnp.arange(batch), idx], q[jnp.arange(batch), idx]


def td_target(reward_sum: jax.Array, discount: jax.Array, next_q: jax.Array) -> jax.Array:
    """Chunked TD target ``sum_{k<h} gamma^k r_{t+k} + gamma^h (1 - terminated) Q'(s_{t+h}, a')``.

    Q-chunking, arXiv:2507.07969, Eq. 5. ``reward_sum [B]`` and ``discount [B]``
    come from :func:`replay.chunks.chunk_transition` (a chunk cut at an
    episode end has fewer steps and, if terminated, zero discount);
    ``next_q [B]``. Returns ``[B]``, with no gradient.
    """
    return jax.lax.stop_gradient(reward_sum + discount * next_q)


def masked_mean(x: jax.Array, weights: jax.Array) -> jax.Array:
    """``sum(w x) / max(sum(w), 1)`` over all axes; ``weights`` broadcast against ``x``."""
    weights = jnp.broadcast_to(weights, x.shape)
    return jnp.sum(x * weights) / jnp.maximum(jnp.sum(weights), 1.0)

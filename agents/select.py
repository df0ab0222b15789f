"""Choosing one chunk among N candidates by their critic values.

* ``argmax``: best-of-N (Q-chunking, arXiv:2507.07969, Eq. 6, ``argmax_i Q(s, a^i)``);
* ``softmax``: sample ``i ~ softmax(Q(s, a^i) / T)`` (Diffusion-QL's evaluation,
  arXiv:2208.06193, with 50 candidates and T = 1). As ``T -> 0`` it becomes
  the argmax; as ``T -> inf`` uniform over the candidates.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

RULES = ("argmax", "softmax")  # config names of the selection rules


def score(chunks: jax.Array, q_fn: Callable[[jax.Array, jax.Array], jax.Array], obs: jax.Array) -> jax.Array:
    """Values of every candidate: ``chunks [B, N, H, A]``, ``obs [B, O]`` -> ``q [B, N]``.

    ``q_fn(obs [B*N, O], chunk [B*N, H, A]) -> [B*N]`` (e.g. :meth:`agents.critic.Critic.value`,
    which scores the executed prefix of each chunk).
    """
    batch, n = chunks.shape[:2]
    rep = jnp.repeat(obs, n, axis=0)
    return q_fn(rep, chunks.reshape(batch * n, *chunks.shape[2:])).reshape(batch, n)


def select(chunks: jax.Array, q: jax.Array, rule: str = "argmax", temperature: float = 1.0,
           key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Picks one candidate per row: ``chunks [B, N, H, A]``, ``q [B, N]`` -> ``(chunk [B, H, A], q [B])``.

    Args:
      rule: ``'argmax'`` or ``'softmax'`` (sampling from ``softmax(q / temperature)``).
      temperature: T > 0 of the softmax rule, in the units of Q.
      key: PRNG key, required by ``'softmax'``.

    Raises:
      ValueError: unknown rule, ``temperature <= 0`` or a missing key for ``'softmax'``.
    """
    batch = chunks.shape[0]
    if rule == "argmax":
        idx = jnp.argmax(q, axis=1)
    elif rule == "softmax":
        if not temperature > 0:
            raise ValueError(f"agent.temperature must be > 0, got {temperature}")
        if key is None:
            raise ValueError("select(rule='softmax') needs a PRNG key")
        idx = jax.random.categorical(key, q / temperature, axis=1)
    else:
        raise ValueError(f"agent.selection must be one of {RULES}, got {rule!r}")
    rows = jnp.arange(batch)
    return chunks[rows, idx], q[rows, idx]


def check_config(config) -> None:
    """Checks the sampling fields an agent reads (those present).

    Raises:
      ValueError: ``num_samples`` or ``target_num_samples`` < 1, ``action_steps``
        outside ``[1, horizon]``, an unknown ``selection`` rule or ``temperature <= 0``.
    """
    for field in ("num_samples", "target_num_samples"):
        if field in config and config[field] < 1:
            raise ValueError(f"agent.{field} must be >= 1, got {config[field]}")
    if not 1 <= config.action_steps <= config.horizon:
        raise ValueError(f"agent.action_steps must be in [1, horizon={config.horizon}], got {config.action_steps}")
    if config.get("selection", "argmax") not in RULES:
        raise ValueError(f"agent.selection must be one of {RULES}, got {config.selection!r}")
    if not config.get("temperature", 1.0) > 0:
        raise ValueError(f"agent.temperature must be > 0, got {config.temperature}")


def choose(candidates: jax.Array, q_fn, obs: jax.Array, config, key: jax.Array | None) -> jax.Array:
    """An agent's selection (``config.selection``, ``config.temperature``) over ``candidates [B, N, H, A]``.

    ``q_fn`` as in :func:`score`; ``key`` is used by the softmax rule only. Returns ``[B, H, A]``.
    """
    return select(candidates, score(candidates, q_fn, obs), config.selection, config.temperature, key)[0]


def sample_and_choose(sample_fn: Callable[[jax.Array], jax.Array], q_fn, obs: jax.Array, config,
                      key: jax.Array) -> jax.Array:
    """Draws candidates with ``sample_fn(key) -> [B, N, H, A]`` and picks one per row by ``config.selection``.

    The one place where acting splits its key: the softmax rule gets its own,
    the argmax rule passes ``key`` to the sampler unchanged. Returns ``[B, H, A]``.
    """
    k_sample, k_select = jax.random.split(key) if config.selection == "softmax" else (key, None)
    return choose(sample_fn(k_sample), q_fn, obs, config, k_select)


def get_config(c):
    """Adds the selection fields to an agent config ``c`` (an ``ml_collections.ConfigDict``)."""
    c.selection = "argmax"             # rule over N candidates when acting: 'argmax' | 'softmax'
    c.temperature = 1.0                # T of softmax(Q / T) selection, in units of Q
    return c


def best_of_n(chunks: jax.Array, q_fn: Callable[[jax.Array, jax.Array], jax.Array],
              obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Best-of-N: ``argmax_i q_fn(obs, chunks[:, i])``; returns ``(chunk [B, H, A], q [B])``."""
    return select(chunks, score(chunks, q_fn, obs), "argmax")

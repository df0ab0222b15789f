"""Batching, time limit, auto-reset and episode statistics for MjxEnv tasks.

:class:`VecEnv` turns any MuJoCo Playground style ``MjxEnv`` (one env,
``reset(rng)``, ``step(state, action)``) into ``N`` environments stepped by
``jax.vmap``. It keeps the two ways an episode ends apart:

* ``info['terminated']`` - the task ended it (success or failure); the value
  of the next state is not bootstrapped;
* ``info['truncated']`` - the time limit (``episode_length`` control steps)
  ended it; the next state is bootstrapped.

``state.done`` is ``terminated | truncated`` (float 0/1, as in Playground).
The wrapper never resets inside :meth:`VecEnv.step`: the last observation of
an episode stays readable (it is the ``next_obs`` that bootstraps a
truncated episode), and :meth:`VecEnv.reset_done` starts new episodes where
one ended, once per executed chunk (see :mod:`envs.chunk`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from mujoco_playground._src import mjx_env


def select(mask: jax.Array, new, old):
    """Per-env choice between two batched pytrees: ``new`` where ``mask [N]`` is True, else ``old``."""

    def pick(n, o):
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)


class VecEnv:
    """``num_envs`` copies of ``env`` with a time limit and episode statistics.

    Args:
      env: an ``MjxEnv`` whose ``state.info`` may hold ``terminated`` and
        ``success`` (bool scalars); if it has no ``terminated``, ``state.done``
        is taken as termination.
      num_envs: batch size N.
      episode_length: time limit in control steps (> 0).

    ``state.info`` gains: ``steps`` (int32 [N], control steps this episode),
    ``truncated``, ``terminated``, ``success`` (bool [N]) and
    ``episode_return`` (float32 [N], undiscounted return so far).

    Raises:
      ValueError: if ``num_envs`` or ``episode_length`` is not positive.
    """

    def __init__(self, env: mjx_env.MjxEnv, num_envs: int, episode_length: int):
        if num_envs < 1:
            raise ValueError(f"env.num_envs must be >= 1, got {num_envs}")
        if episode_length < 1:
            raise ValueError(f"env.episode_length must be >= 1, got {episode_length}")
        self.env, self.num_envs, self.episode_length = env, int(num_envs), int(episode_length)

    @property
    def observation_size(self) -> int:
        return int(self.env.observation_size)

    @property
    def action_size(self) -> int:
        return int(self.env.action_size)

    def _wrap(self, state: mjx_env.State) -> mjx_env.State:
        info = dict(state.info)
        info.setdefault("terminated", state.done > 0)
        info.setdefault("success", jnp.zeros((), bool))
        info.setdefault("mode", jnp.full((), -1, jnp.int32))  # a task without modes: never decided
        info.update(steps=jnp.zeros((), jnp.int32), truncated=jnp.zeros((), bool),
                    episode_return=jnp.zeros((), jnp.float32))
        return state.replace(info=info, reward=jnp.asarray(state.reward, jnp.float32),
                             done=jnp.asarray(state.done, jnp.float32))

    def _reset_one(self, key: jax.Array) -> mjx_env.State:
        return self._wrap(self.env.reset(key))

    def _step_one(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        nxt = self.env.step(state, action)
        terminated = nxt.info["terminated"] if "terminated" in nxt.info else nxt.done > 0
        steps = state.info["steps"] + 1
        truncated = (steps >= self.episode_length) & ~terminated
        info = {**nxt.info, "terminated": terminated, "truncated": truncated, "steps": steps,
                "episode_return": state.info["episode_return"] + nxt.reward}
        info.setdefault("success", jnp.zeros((), bool))
        return nxt.replace(info=info, reward=jnp.asarray(nxt.reward, jnp.float32),
                           done=(terminated | truncated).astype(jnp.float32))

    def reset(self, key: jax.Array) -> mjx_env.State:
        """Resets all N envs from one PRNG key. Returns a batched State (obs ``[N, O]``)."""
        return jax.vmap(self._reset_one)(jax.random.split(key, self.num_envs))

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        """Steps all envs with ``action [N, A]``. Does not auto-reset (see module doc)."""
        return jax.vmap(self._step_one)(state, action)

    def reset_done(self, state: mjx_env.State, key: jax.Array) -> mjx_env.State:
        """Replaces every env whose ``done`` is set by a fresh episode (auto-reset)."""
        return select(state.done > 0, self.reset(key), state)

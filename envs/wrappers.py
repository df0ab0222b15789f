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
import numpy as np
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


class ObsHistory:
    """Observation history (Diffusion Policy's ``T_o``): the task's last ``history`` observations, flattened.

    Wraps one ``MjxEnv`` (before :class:`VecEnv`). Its ``obs`` is
    ``[history * O]``: the observations of steps ``t - history + 1 .. t``,
    oldest first. At reset the window is ``history`` copies of the first
    observation, so a window never reaches into the previous episode (an
    auto-reset of :meth:`VecEnv.reset_done` calls ``reset``). Everything
    downstream (chunk executor, replay buffer, normaliser, networks) sees an
    ordinary flat observation of size ``history * O``; the demonstrations get
    the same windows from :func:`stack_history`. Other attributes (model,
    ``episode_length``, ``MODES``, ...) are the task's.

    Raises:
      ValueError: ``history < 1``.
    """

    def __init__(self, env, history: int):
        if history < 1:
            raise ValueError(f"agent.obs_history must be >= 1, got {history}")
        self.env, self.history = env, int(history)
        self._obs_size = int(env.observation_size)

    def __getattr__(self, name):
        return getattr(self.env, name)

    @property
    def observation_size(self) -> int:
        return self.history * self._obs_size

    def reset(self, rng: jax.Array) -> mjx_env.State:
        state = self.env.reset(rng)
        return state.replace(obs=jnp.tile(state.obs, self.history))

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        newest = state.obs[-self._obs_size:]
        nxt = self.env.step(state.replace(obs=newest), action)
        return nxt.replace(obs=jnp.concatenate([state.obs[self._obs_size:], nxt.obs]))


def stack_history(obs, episode_id, history: int):
    """The demonstrations' observation windows, as :class:`ObsHistory` gives them online.

    Args:
      obs: ``[N, O]`` observations of consecutive steps, episode after episode
        (each episode's steps in time order).
      episode_id: ``[N]`` the episode of each step.
      history: ``T_o >= 1``.

    Returns:
      ``[N, T_o * O]`` (NumPy): the step's window, oldest first, padded at its
      episode's start with the episode's first observation. For ``next_obs``
      use :func:`next_history`.
    """
    obs, episode_id = np.asarray(obs), np.asarray(episode_id)
    idx = np.arange(len(obs))
    new_episode = np.r_[True, episode_id[1:] != episode_id[:-1]]
    start = np.maximum.accumulate(np.where(new_episode, idx, 0))
    return np.concatenate([obs[np.maximum(idx - lag, start)] for lag in range(history - 1, -1, -1)], axis=-1)


def next_history(windows, next_obs):
    """The window after each step: drop the oldest observation of ``windows [N, T_o O]``, append ``next_obs [N, O]``."""
    return np.concatenate([np.asarray(windows)[:, np.asarray(next_obs).shape[-1]:], np.asarray(next_obs)], axis=-1)

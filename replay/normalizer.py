"""Observation and action normalisation from dataset statistics.

Diffusion Policy's convention: actions are min-max scaled to ``[-1, 1]``
(so the samplers' clip to ``[-1, 1]`` is the data range), observations are
standardised. The normaliser is part of every checkpoint.
"""

from __future__ import annotations

import flax
import jax.numpy as jnp
import numpy as np


class Normalizer(flax.struct.PyTreeNode):
    """Fields: ``obs_mean``, ``obs_std`` ``[O]``; ``action_low``, ``action_high`` ``[A]``."""

    obs_mean: jnp.ndarray
    obs_std: jnp.ndarray
    action_low: jnp.ndarray
    action_high: jnp.ndarray

    @classmethod
    def from_data(cls, obs: np.ndarray, action: np.ndarray, min_std: float = 1e-3,
                  min_range: float = 1e-3) -> "Normalizer":
        """Statistics of ``obs [N, O]`` and ``action [N, A]``; tiny std/ranges are floored."""
        obs, action = np.asarray(obs, np.float32), np.asarray(action, np.float32)
        low, high = action.min(0), action.max(0)
        flat = (high - low) < min_range
        low, high = np.where(flat, low - 1.0, low), np.where(flat, high + 1.0, high)
        return cls(obs_mean=jnp.asarray(obs.mean(0)), obs_std=jnp.asarray(np.maximum(obs.std(0), min_std)),
                   action_low=jnp.asarray(low), action_high=jnp.asarray(high))

    @classmethod
    def identity(cls, obs_size: int, action_size: int) -> "Normalizer":
        """No data: observations pass unchanged, actions stay in ``[-1, 1]`` (agents trained from scratch)."""
        return cls(obs_mean=jnp.zeros(obs_size), obs_std=jnp.ones(obs_size), action_low=-jnp.ones(action_size),
                   action_high=jnp.ones(action_size))

    def obs(self, obs: jnp.ndarray) -> jnp.ndarray:
        """``[..., O]`` raw -> standardised."""
        return (obs - self.obs_mean) / self.obs_std

    def action(self, action: jnp.ndarray) -> jnp.ndarray:
        """``[..., A]`` env units -> ``[-1, 1]`` (min-max over the dataset)."""
        return 2.0 * (action - self.action_low) / (self.action_high - self.action_low) - 1.0

    def unnormalize_action(self, action: jnp.ndarray) -> jnp.ndarray:
        """``[..., A]`` in ``[-1, 1]`` -> env units."""
        return (action + 1.0) * 0.5 * (self.action_high - self.action_low) + self.action_low

    def steps(self, steps: dict) -> dict:
        """Normalises ``obs``, ``next_obs`` and ``action`` of a step dict; other fields pass through."""
        return {**steps, "obs": self.obs(steps["obs"]), "next_obs": self.obs(steps["next_obs"]),
                "action": self.action(steps["action"])}

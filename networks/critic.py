"""Chunked critic ensembles ``Q(s, a_{t:t+h})``."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from networks.mlp import MLP


class ChunkCritic(nn.Module):
    """Ensemble of ``q_ensemble`` MLPs on ``[obs, flatten(chunk)]``.

    The Q-chunking critic (Li, Zhou, Levine 2025, arXiv:2507.07969, Sec. 4):
    one value for a whole executed chunk, ``Q(s_t, a_{t:t+h})``, 4x512 MLP with
    LayerNorm and an ensemble of 2 in the paper.

    Call: ``obs [B, O]``, ``chunk [B, h, A]`` -> ``q [E, B]`` (E = q_ensemble).
    """

    hidden_dims: Sequence[int] = (512, 512, 512, 512)
    q_ensemble: int = 2
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs: jax.Array, chunk: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, chunk.reshape(chunk.shape[0], -1)], axis=-1)
        ensemble = nn.vmap(MLP, variable_axes={"params": 0}, split_rngs={"params": True},
                           in_axes=None, out_axes=0, axis_size=self.q_ensemble)
        q = ensemble(self.hidden_dims, 1, layer_norm=self.layer_norm, activation="gelu")(x)
        return q[..., 0]

"""Denoisers over whole action chunks, conditioned on observation and time."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from networks.mlp import MLP, sinusoidal_embedding


class ChunkMLPDenoiser(nn.Module):
    """MLP denoiser ``(x [B, H, A], t [B], obs [B, O]) -> [B, H, A]``.

    The noisy chunk is flattened and concatenated with the observation and an
    embedding of the time (a diffusion step index in ``[0, K)`` or a flow time
    in ``[0, 1]`` scaled by 1000, so both use the same embedding range). The
    output is the predicted noise (DDPM), or velocity (flow matching), of the
    same shape as ``x``.

    Attributes:
      hidden_dims: MLP widths.
      time_dim: width of the sinusoidal time embedding.
      layer_norm: LayerNorm in the MLP.
      activation: the MLP's nonlinearity ('mish' as in Diffusion Policy, or 'gelu', 'relu', 'silu').
    """

    hidden_dims: Sequence[int] = (256, 256, 256)
    time_dim: int = 32
    layer_norm: bool = False
    activation: str = "mish"

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, obs: jax.Array) -> jax.Array:
        batch, horizon, action_dim = x.shape
        temb = MLP((self.time_dim * 2,), self.time_dim)(sinusoidal_embedding(t, self.time_dim))
        h = jnp.concatenate([x.reshape(batch, horizon * action_dim), obs, temb], axis=-1)
        out = MLP(self.hidden_dims, horizon * action_dim, layer_norm=self.layer_norm, activation=self.activation)(h)
        return out.reshape(batch, horizon, action_dim)


class ChunkOneStepPolicy(nn.Module):
    """One-step policy ``mu(s, z)``: ``(obs [B, O], z [B, H, A]) -> chunk [B, H, A]`` (unclipped).

    Flow Q-learning's distilled actor (Park et al. 2025, arXiv:2502.02538):
    one MLP call maps a noise chunk to an action chunk, trained to match the
    BC flow's map of the same noise while maximising Q (QC-FQL, arXiv:2507.07969).
    """

    hidden_dims: Sequence[int] = (256, 256, 256)
    layer_norm: bool = False
    activation: str = "mish"

    @nn.compact
    def __call__(self, obs: jax.Array, z: jax.Array) -> jax.Array:
        batch, horizon, action_dim = z.shape
        h = jnp.concatenate([obs, z.reshape(batch, horizon * action_dim)], axis=-1)
        out = MLP(self.hidden_dims, horizon * action_dim, layer_norm=self.layer_norm, activation=self.activation)(h)
        return out.reshape(batch, horizon, action_dim)

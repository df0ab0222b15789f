"""Multi-layer perceptrons and time embeddings shared by every network."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def mish(x: jax.Array) -> jax.Array:
    """Mish activation ``x tanh(softplus(x))`` (Misra 2019), used by Diffusion Policy."""
    return x * jnp.tanh(jax.nn.softplus(x))


ACTIVATIONS = {"mish": mish, "gelu": nn.gelu, "relu": nn.relu, "silu": nn.silu}  # names a config may use


class MLP(nn.Module):
    """``x [..., D] -> [..., out_dim]`` with hidden layers ``hidden_dims``.

    Attributes:
      hidden_dims: widths of the hidden layers.
      out_dim: output width.
      layer_norm: LayerNorm after each hidden Dense (as in the QC critic).
      activation: nonlinearity (Mish, as in Diffusion Policy, by default).
    """

    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False
    activation: str = "mish"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_dims:
            x = nn.Dense(width, kernel_init=nn.initializers.lecun_normal())(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return nn.Dense(self.out_dim, kernel_init=nn.initializers.lecun_normal())(x)


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Sinusoidal embedding of a scalar time (Vaswani et al. 2017; DDPM's timestep embedding).

    Args:
      t: ``[B]`` times (diffusion step index or flow time scaled by the caller).
      dim: even embedding width.

    Returns:
      ``[B, dim]`` float32.
    """
    half = dim // 2
    freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)

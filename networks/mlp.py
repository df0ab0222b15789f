"""Multi-layer perceptrons and time embeddings shared by every network."""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _mish_parts(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(e^x, tanh(softplus(x)))`` from a single exponential.

    ``tanh(log(1 + e^x)) = n / (n + 2)`` with ``n = e^x (e^x + 2)``; ``x`` is
    clipped at 20, where the ratio is already 1 in float32, so nothing overflows.
    """
    e = jnp.exp(jnp.minimum(x, 20.0))
    n = e * (e + 2.0)
    return e, n / (n + 2.0)


@jax.custom_jvp
def mish(x: jax.Array) -> jax.Array:
    """Mish activation ``x tanh(softplus(x))`` (Misra 2019), used by Diffusion Policy.

    Computed exactly (to float32 rounding) from one ``exp`` instead of the
    three transcendentals of ``x * tanh(softplus(x))``, with a hand-written
    derivative ``t + x (1 - t^2) sigmoid(x)`` (``t = tanh(softplus(x))``): the
    denoiser's forward pass runs about 4x faster per activation on a CPU and
    its gradient 2x (``benchmarks/qc_reference_speed.py``).
    """
    return x * _mish_parts(x)[1]


@mish.defjvp
def _mish_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    e, t = _mish_parts(x)
    slope = t + x * (1.0 - t * t) * (e / (1.0 + e))
    return x * t, slope * dx


ACTIVATIONS = {"mish": mish, "gelu": nn.gelu, "relu": nn.relu, "silu": nn.silu,
               "tanh": jnp.tanh}  # names a config may use


class MLP(nn.Module):
    """``x [..., D] -> [..., out_dim]`` with hidden layers ``hidden_dims``.

    Attributes:
      hidden_dims: widths of the hidden layers.
      out_dim: output width.
      layer_norm: LayerNorm after each hidden Dense (as in the QC critic).
      activation: nonlinearity (Mish, as in Diffusion Policy, by default).
      init_scheme: ``'lecun'`` (LeCun normal) or ``'orthogonal'`` (gain sqrt 2 on
        hidden layers, ``out_scale`` on the last: the PPO convention).
      out_scale: gain of the last layer's orthogonal init (``init_scheme='orthogonal'`` only).
    """

    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False
    activation: str = "mish"
    init_scheme: str = "lecun"
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        if self.init_scheme == "orthogonal":
            hidden_init, out_init = nn.initializers.orthogonal(math.sqrt(2.0)), nn.initializers.orthogonal(self.out_scale)
        else:
            hidden_init = out_init = nn.initializers.lecun_normal()
        for width in self.hidden_dims:
            x = nn.Dense(width, kernel_init=hidden_init)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return nn.Dense(self.out_dim, kernel_init=out_init)(x)


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

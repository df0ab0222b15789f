"""Multi-layer perceptrons and time embeddings shared by every network."""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _mish_parts(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sigmoid(x), tanh(softplus(x)))`` from a single ``tanh``.

    With ``s = sigmoid(x) = (1 + tanh(x / 2)) / 2``, ``e^x = s / (1 - s)`` and
    ``tanh(log(1 + e^x)) = ((1 + e^x)^2 - 1) / ((1 + e^x)^2 + 1) = s (2 - s) / (1 + (1 - s)^2)``,
    written so that nothing cancels near ``s = 1`` and nothing overflows.
    XLA:CPU evaluates ``tanh`` by a rational approximation, cheaper than its
    full-accuracy ``exp`` (best-of-32 acting at the paper's sizes: about 10%
    faster than the one-``exp`` form, ``benchmarks/qc_reference_speed.py``).
    """
    s = 0.5 + 0.5 * jnp.tanh(0.5 * x)
    return s, s * (2.0 - s) / (1.0 + (1.0 - s) * (1.0 - s))


@jax.custom_jvp
def mish(x: jax.Array) -> jax.Array:
    """Mish activation ``x tanh(softplus(x))`` (Misra 2019), used by Diffusion Policy.

    Computed (to float32 rounding) from one ``tanh`` instead of the three
    transcendentals of ``x * tanh(softplus(x))``, with a hand-written
    derivative ``t + x (1 - t^2) sigmoid(x)`` (``t = tanh(softplus(x))``): the
    denoiser's forward pass runs about 4x faster per activation on a CPU and
    its gradient 2x (``benchmarks/qc_reference_speed.py``).
    """
    return x * _mish_parts(x)[1]


@mish.defjvp
def _mish_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    sig, t = _mish_parts(x)
    slope = t + x * (1.0 - t * t) * sig
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

"""1D temporal U-Net denoiser over action chunks with FiLM conditioning (Diffusion Policy's CNN backbone).

Chi et al. 2023 (arXiv:2303.04137, Sec. 3.1 and App. A): the chunk
``[B, H, A]`` is a 1D signal over time with ``A`` channels. Convolutions run
along the ``H`` axis; the denoising time and the observation enter every
residual block by FiLM (Perez et al. 2018), a per-channel scale and bias
computed from the conditioning vector ``[time embedding, observation]``.
Down path: per level two residual blocks, then a stride-2 convolution
(except the last level); two residual blocks in the middle; the up path
mirrors it with skip connections and stride-2 transposed convolutions.
Each block is Conv1d (kernel ``kernel_size``) -> GroupNorm (``groups``) ->
Mish.

Convolutions are written as one matrix product over a window of shifted
copies of the signal (:class:`Conv1D`, "im2col"): XLA's CPU convolutions
are fast at long lengths but up to 15x slower at the U-Net's short inner
lengths (a kernel-5, 128-channel convolution at length 4, batch 256: 93 ms
per gradient against 6 ms as a matmul, side by side on this 2-core host). The up-sampling
is a sub-pixel convolution (a width-3 convolution to twice the channels,
interleaved into twice the length), which can express Diffusion Policy's
transposed convolution (kernel 4, stride 2) and runs as a matmul too.

``H`` need not be a power of two: the chunk is zero-padded at its end to a
multiple of ``2 ** (len(down_dims) - 1)`` and the output cropped back.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from networks.mlp import mish, sinusoidal_embedding


class Conv1D(nn.Module):
    """Temporal convolution ``[B, L, C_in] -> [B, L / stride, features]``, zero ``SAME`` padding.

    ``y[l] = b + sum_j W_j x[l * stride + j - (kernel_size - 1) // 2]``, computed as
    one Dense over the concatenated window (a ``[kernel_size * C_in, features]`` kernel).
    """

    features: int
    kernel_size: int = 5
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        length = x.shape[1]
        lo = (self.kernel_size - 1) // 2
        padded = jnp.pad(x, ((0, 0), (lo, self.kernel_size - 1 - lo), (0, 0)))
        window = jnp.concatenate([padded[:, j:j + length] for j in range(self.kernel_size)], axis=-1)
        return nn.Dense(self.features)(window[:, ::self.stride])


class Upsample(nn.Module):
    """Learned x2 up-sampling ``[B, L, C] -> [B, 2 L, features]`` (sub-pixel convolution, width 3)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, length, _ = x.shape
        y = Conv1D(2 * self.features, 3)(x)                       # [B, L, 2F]: even and odd outputs
        return y.reshape(batch, length, 2, self.features).reshape(batch, 2 * length, self.features)


class ConvBlock(nn.Module):
    """Conv1d (``SAME`` padding) -> GroupNorm -> Mish on ``[B, L, C_in] -> [B, L, features]``."""

    features: int
    kernel_size: int = 5
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = Conv1D(self.features, self.kernel_size)(x)
        return mish(nn.GroupNorm(num_groups=self.groups)(x))


class FiLMResidualBlock(nn.Module):
    """Two :class:`ConvBlock` s with FiLM between them and a residual connection.

    ``x [B, L, C_in]``, ``cond [B, D] -> [B, L, features]``: after the first
    block, ``y <- scale(cond) * y + bias(cond)`` per channel (``scale`` and
    ``bias`` from one Dense of ``mish(cond)``); the residual is a 1x1
    convolution when ``C_in != features``.
    """

    features: int
    kernel_size: int = 5
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        y = ConvBlock(self.features, self.kernel_size, self.groups)(x)
        film = nn.Dense(2 * self.features)(mish(cond))[:, None, :]   # [B, 1, 2C]
        scale, bias = jnp.split(film, 2, axis=-1)
        y = ConvBlock(self.features, self.kernel_size, self.groups)(scale * y + bias)
        skip = x if x.shape[-1] == self.features else nn.Dense(self.features)(x)  # 1x1 convolution
        return y + skip


class ChunkUNetDenoiser(nn.Module):
    """U-Net denoiser ``(x [B, H, A], t [B], obs [B, O]) -> [B, H, A]``, the same call as the MLP one.

    ``t`` is a DDPM step index in ``[0, K)`` or a flow time scaled by 1000
    (:data:`networks.generative.FLOW_TIME_SCALE`). The output is the
    predicted noise (DDPM) or velocity (flow).

    Attributes:
      down_dims: channels per level (Diffusion Policy: 256/512/1024; the CPU
        preset uses 32/64/128). Each must be divisible by ``groups``.
      kernel_size: temporal convolution width (5 in Diffusion Policy).
      groups: GroupNorm groups (8).
      time_dim: width of the time embedding (sinusoidal, then a 2-layer MLP
        to ``time_dim``, as Diffusion Policy's step encoder).

    Raises:
      ValueError: a width in ``down_dims`` not divisible by ``groups``.
    """

    down_dims: Sequence[int] = (32, 64, 128)
    kernel_size: int = 5
    groups: int = 8
    time_dim: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, obs: jax.Array) -> jax.Array:
        if any(d % self.groups for d in self.down_dims):
            raise ValueError(f"agent.unet_down_dims must be multiples of {self.groups} (GroupNorm groups), "
                             f"got {tuple(self.down_dims)}")
        batch, horizon, action_dim = x.shape
        temb = sinusoidal_embedding(t, self.time_dim)
        temb = nn.Dense(self.time_dim)(mish(nn.Dense(4 * self.time_dim)(temb)))
        cond = jnp.concatenate([temb, obs.reshape(batch, -1)], axis=-1)

        levels = len(self.down_dims)
        multiple = 2 ** (levels - 1)
        length = -(-horizon // multiple) * multiple
        h = jnp.pad(x, ((0, 0), (0, length - horizon), (0, 0)))
        block = lambda f: FiLMResidualBlock(f, self.kernel_size, self.groups)  # noqa: E731

        skips = []
        for i, dim in enumerate(self.down_dims):
            h = block(dim)(h, cond)
            h = block(dim)(h, cond)
            skips.append(h)
            if i < levels - 1:
                h = Conv1D(dim, 3, stride=2)(h)                                # L -> L / 2
        for _ in range(2):
            h = block(self.down_dims[-1])(h, cond)
        for i in reversed(range(levels - 1)):
            dim = self.down_dims[i]
            h = Upsample(self.down_dims[i + 1])(h)                             # L -> 2 L
            h = jnp.concatenate([h, skips[i]], axis=-1)
            h = block(dim)(h, cond)
            h = block(dim)(h, cond)
        h = ConvBlock(self.down_dims[0], self.kernel_size, self.groups)(h)
        out = nn.Dense(action_dim)(h)                                          # 1x1 convolution
        return out[:, :horizon]

"""Flow matching and DDPM/DDIM over action chunks: training losses and samplers.

Both families share one interface so that agents select them by config:

* ``loss(apply_fn, params, obs [B, O], chunk [B, H, A], key) -> [B]``, the
  per-sample training loss;
* ``sample(apply_fn, params, obs [B, O], key, horizon, action_dim) ->
  [B, H, A]``, the whole reverse chain in one ``lax.fori_loop`` (one trace,
  differentiable), output clipped to ``[-1, 1]``.

``apply_fn(params, x [B, H, A], t [B], obs [B, O]) -> [B, H, A]`` is a
denoiser (e.g. :class:`networks.denoiser.ChunkMLPDenoiser`). Actions are
assumed normalised to ``[-1, 1]``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

ApplyFn = Callable[[object, jax.Array, jax.Array, jax.Array], jax.Array]
FLOW_TIME_SCALE = 1000.0  # flow time t in [0, 1] is fed to the denoiser as 1000 t


@dataclasses.dataclass(frozen=True)
class FlowMatching:
    """Conditional flow matching with a linear path (Lipman et al. 2022, arXiv:2210.02747).

    ``x_t = (1 - t) x0 + t x1``, ``x0 ~ N(0, I)`` noise, ``x1`` the data chunk;
    the denoiser regresses the velocity ``x1 - x0`` (Eq. 23 with
    sigma_min = 0, as used by pi0 and Q-chunking). Sampling integrates
    ``dx/dt = v(x, t)`` from 0 to 1 with ``denoising_steps`` Euler steps.
    """

    denoising_steps: int = 10

    def loss(self, apply_fn: ApplyFn, params, obs, chunk, key) -> jax.Array:
        k_noise, k_time = jax.random.split(key)
        x0 = jax.random.normal(k_noise, chunk.shape)
        t = jax.random.uniform(k_time, (chunk.shape[0],))
        xt = (1 - t)[:, None, None] * x0 + t[:, None, None] * chunk
        v = apply_fn(params, xt, t * FLOW_TIME_SCALE, obs)
        return jnp.mean((v - (chunk - x0)) ** 2, axis=(1, 2))

    def sample_from(self, apply_fn: ApplyFn, params, obs, noise) -> jax.Array:
        """Deterministic map from ``noise [B, H, A]`` to a chunk ``[B, H, A]`` (Euler)."""
        dt = 1.0 / self.denoising_steps

        def body(i, x):
            t = jnp.full((x.shape[0],), i * dt)
            return x + dt * apply_fn(params, x, t * FLOW_TIME_SCALE, obs)

        x = jax.lax.fori_loop(0, self.denoising_steps, body, noise)
        return jnp.clip(x, -1.0, 1.0)

    def sample(self, apply_fn: ApplyFn, params, obs, key, horizon: int, action_dim: int) -> jax.Array:
        noise = jax.random.normal(key, (obs.shape[0], horizon, action_dim))
        return self.sample_from(apply_fn, params, obs, noise)


def cosine_alphas_cumprod(train_steps: int, s: float = 0.008, max_beta: float = 0.999) -> jax.Array:
    """``squaredcos_cap_v2`` schedule (Nichol & Dhariwal 2021, Eq. 17), as in Diffusion Policy.

    Returns ``alpha_bar [train_steps]`` with ``alpha_bar_t = prod_{i<=t} (1 - beta_i)`` and
    ``beta_t = min(1 - f(t+1)/f(t), max_beta)``, ``f(t) = cos^2((t/T + s)/(1 + s) pi/2)``.
    """
    f = lambda t: math.cos((t / train_steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f(t + 1) / f(t), max_beta) for t in range(train_steps)]
    return jnp.cumprod(1.0 - jnp.asarray(betas, jnp.float32))


def linear_alphas_cumprod(train_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> jax.Array:
    """Linear beta schedule (Ho et al. 2020). Returns ``alpha_bar [train_steps]``."""
    return jnp.cumprod(1.0 - jnp.linspace(beta_start, beta_end, train_steps, dtype=jnp.float32))


@dataclasses.dataclass(frozen=True)
class DDPM:
    """Epsilon-prediction DDPM training (Ho et al. 2020, Eq. 14) with DDIM sampling.

    Training draws ``t ~ U{0..train_steps-1}`` and regresses the noise of
    ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps``. Sampling runs
    ``denoising_steps`` DDIM steps (Song et al. 2021, Eq. 12) on the
    timesteps ``t_k = k * train_steps // denoising_steps``; the predicted clean
    chunk is clipped to ``[-1, 1]`` at every step (as Diffusion Policy does).
    ``eta = 0`` is deterministic DDIM; ``eta = 1`` with
    ``denoising_steps == train_steps`` is ancestral DDPM sampling.
    """

    train_steps: int = 100
    denoising_steps: int = 10
    schedule: str = "squaredcos_cap_v2"
    eta: float = 0.0

    def __post_init__(self):
        if self.schedule not in ("squaredcos_cap_v2", "linear"):
            raise ValueError(f"agent.schedule must be 'squaredcos_cap_v2' or 'linear', got {self.schedule!r}")
        if not 1 <= self.denoising_steps <= self.train_steps:
            raise ValueError(f"agent.denoising_steps must be in [1, train_steps={self.train_steps}],"
                             f" got {self.denoising_steps}")

    @property
    def alphas_cumprod(self) -> jax.Array:
        if self.schedule == "linear":
            return linear_alphas_cumprod(self.train_steps)
        return cosine_alphas_cumprod(self.train_steps)

    @property
    def timesteps(self) -> jax.Array:
        """Sampling timesteps, descending, ``[denoising_steps]`` int32."""
        stride = self.train_steps // self.denoising_steps
        return (jnp.arange(self.denoising_steps, dtype=jnp.int32) * stride)[::-1]

    def loss(self, apply_fn: ApplyFn, params, obs, chunk, key) -> jax.Array:
        k_noise, k_time = jax.random.split(key)
        eps = jax.random.normal(k_noise, chunk.shape)
        t = jax.random.randint(k_time, (chunk.shape[0],), 0, self.train_steps)
        ab = self.alphas_cumprod[t][:, None, None]
        xt = jnp.sqrt(ab) * chunk + jnp.sqrt(1 - ab) * eps
        return jnp.mean((apply_fn(params, xt, t, obs) - eps) ** 2, axis=(1, 2))

    def step(self, apply_fn: ApplyFn, params, obs, x, k: jax.Array, key) -> jax.Array:
        """One DDIM step from sampling index ``k`` (timestep ``timesteps[k]``) to the next."""
        ts = self.timesteps
        abar = self.alphas_cumprod
        t = ts[k]
        ab = abar[t]
        ab_prev = jnp.where(k + 1 < self.denoising_steps, abar[ts[jnp.minimum(k + 1, len(ts) - 1)]], 1.0)
        eps = apply_fn(params, x, jnp.full((x.shape[0],), t), obs)
        x0 = jnp.clip((x - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab), -1.0, 1.0)
        eps = (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1 - ab)
        sigma = self.eta * jnp.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        noise = jax.random.normal(key, x.shape)
        return jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1 - ab_prev - sigma**2, 0.0)) * eps + sigma * noise

    def sample(self, apply_fn: ApplyFn, params, obs, key, horizon: int, action_dim: int) -> jax.Array:
        k_init, k_loop = jax.random.split(key)
        x = jax.random.normal(k_init, (obs.shape[0], horizon, action_dim))
        keys = jax.random.split(k_loop, self.denoising_steps)
        x = jax.lax.fori_loop(0, self.denoising_steps,
                              lambda k, x: self.step(apply_fn, params, obs, x, k, keys[k]), x)
        return jnp.clip(x, -1.0, 1.0)


def make_generative(config) -> FlowMatching | DDPM:
    """Builds the sampler named by ``config.generative`` ('flow' or 'ddpm').

    Reads ``denoising_steps`` and, for DDPM, ``train_denoising_steps``,
    ``noise_schedule`` and ``ddim_eta``.

    Raises:
      ValueError: unknown ``agent.generative`` or invalid step counts.
    """
    if config.denoising_steps < 1:
        raise ValueError(f"agent.denoising_steps must be >= 1, got {config.denoising_steps}")
    if config.generative == "flow":
        return FlowMatching(denoising_steps=config.denoising_steps)
    if config.generative == "ddpm":
        return DDPM(train_steps=config.train_denoising_steps, denoising_steps=config.denoising_steps,
                    schedule=config.noise_schedule, eta=config.ddim_eta)
    raise ValueError(f"agent.generative must be 'flow' or 'ddpm', got {config.generative!r}")

"""Flow matching and DDPM/DDIM over action chunks: losses, reverse steps, chains, guidance.

Both families share one interface so that agents select them by config:

* ``loss(apply_fn, params, obs [B, O], chunk [B, H, A], key) -> [B]``, the
  per-sample training loss;
* ``step(apply_fn, params, obs, x [B, H, A], k, key, guide=None) -> [B, H, A]``,
  one reverse step from sampling index ``k`` (0 = the noise end);
* ``add_noise(chunk, k, noise)``: the forward (noising) process to index ``k``;
* ``clean_estimate(apply_fn, params, obs, x, k) -> [B, H, A]``, the one-step
  estimate of the clean chunk from the noisy ``x`` at index ``k`` (flow:
  ``x + (1 - t) v``; DDPM: ``(x - sqrt(1 - abar) eps) / sqrt(abar)``), clipped
  to ``[-1, 1]``;
* ``sample_from(apply_fn, params, obs, noise, key=None, guide=None, remat=False)``
  and ``sample(apply_fn, params, obs, key, horizon, action_dim, ...)``: the
  whole reverse chain as one ``lax.scan``, output clipped to ``[-1, 1]``.

``params`` is always explicit (an agent passes its live weights to
differentiate through the chain, as Diffusion-QL does, or its EMA weights to
act); the chain is differentiable with respect to ``params`` and ``noise``,
``unroll=True`` unrolls the scan (faster for short chains, slower to compile),
and ``remat=True`` recomputes each step in the backward pass instead of
storing its activations (for long chains).

``guide(x, x_hat, k) -> [B, H, A]`` is the guidance hook: a direction in chunk
space (e.g. ``w grad_a Q(s, x_hat)``) given the current noisy chunk ``x``, the
one-step clean estimate ``x_hat`` (computed with the network output under
``stop_gradient``, as Q-guided flow does) and the step index ``k``. The flow
sampler adds it to the velocity; DDPM turns it into the classifier-guidance
correction of the noise prediction, ``eps - sqrt(1 - abar_t) g``. A guide that
returns zeros leaves every step bit for bit unchanged.

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
GuideFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (x, x_hat, k) -> direction [B, H, A]
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

    def time(self, k: jax.Array) -> jax.Array:
        """Flow time ``t = k / K`` of sampling index ``k`` (0 at the noise end)."""
        return k / self.denoising_steps

    def add_noise(self, chunk: jax.Array, k: jax.Array, noise: jax.Array) -> jax.Array:
        """The noisy chunk at sampling index ``k [B]``: ``(1 - t) noise + t chunk``, ``t = k / K`` (``[B, H, A]``)."""
        t = self.time(k)[:, None, None]
        return (1 - t) * noise + t * chunk

    def clean_estimate(self, apply_fn: ApplyFn, params, obs, x, k) -> jax.Array:
        """One-Euler-step clean chunk ``clip(x + (1 - t) v(x, t))`` from index ``k``: ``[B, H, A]``."""
        t = jnp.broadcast_to(self.time(k), (x.shape[0],))
        v = apply_fn(params, x, t * FLOW_TIME_SCALE, obs)
        return jnp.clip(x + (1 - t)[:, None, None] * v, -1.0, 1.0)

    def step(self, apply_fn: ApplyFn, params, obs, x, k, key=None, guide: GuideFn | None = None) -> jax.Array:
        """Euler step ``x + dt (v(x, t) + guide(x, x_hat, k))`` from index ``k`` (``key`` unused)."""
        dt = 1.0 / self.denoising_steps
        t = jnp.full((x.shape[0],), k * dt)
        v = apply_fn(params, x, t * FLOW_TIME_SCALE, obs)
        if guide is not None:
            x_hat = jnp.clip(x + (1 - t)[:, None, None] * jax.lax.stop_gradient(v), -1.0, 1.0)
            v = v + guide(x, x_hat, k)
        return x + dt * v

    def sample_from(self, apply_fn: ApplyFn, params, obs, noise, key=None, guide: GuideFn | None = None,
                    remat: bool = False, unroll: bool = False) -> jax.Array:
        """Deterministic map from ``noise [B, H, A]`` to a chunk ``[B, H, A]`` (Euler, ``lax.scan``)."""
        return _chain(self, apply_fn, params, obs, noise, None, guide, remat, unroll)

    def sample(self, apply_fn: ApplyFn, params, obs, key, horizon: int, action_dim: int,
               guide: GuideFn | None = None, remat: bool = False, unroll: bool = False) -> jax.Array:
        """Chunks ``[B, H, A]`` from fresh noise drawn with ``key``."""
        noise = jax.random.normal(key, (obs.shape[0], horizon, action_dim))
        return self.sample_from(apply_fn, params, obs, noise, guide=guide, remat=remat, unroll=unroll)


@dataclasses.dataclass(frozen=True)
class Regression:
    """Deterministic chunk regression: the mode-averaging baseline of Diffusion Policy's comparison.

    The same network predicts the chunk itself from the observation (its
    noisy-chunk input is zeros and its time 0, so the output depends on the
    observation only) and is trained by mean squared error,
    ``E ||f(0, 0, s) - a_{t:t+H}||^2`` (Chi et al. 2023 compare against
    such an explicit policy, Sec. 4; on bimodal demonstrations its optimum is
    the conditional *mean* chunk, which can fall between the modes). The
    sampler API is kept: one "step" (``denoising_steps = 1``) that ignores
    the noise, so every agent and evaluation runs it unchanged; ``guide`` is
    added to the output.
    """

    denoising_steps: int = 1

    def _predict(self, apply_fn: ApplyFn, params, obs, like: jax.Array) -> jax.Array:
        return apply_fn(params, jnp.zeros_like(like), jnp.zeros((like.shape[0],)), obs)

    def loss(self, apply_fn: ApplyFn, params, obs, chunk, key) -> jax.Array:
        """``[B]`` squared error of the predicted chunk (``key`` unused)."""
        del key
        return jnp.mean((self._predict(apply_fn, params, obs, chunk) - chunk) ** 2, axis=(1, 2))

    def time(self, k: jax.Array) -> jax.Array:
        return jnp.zeros_like(jnp.asarray(k, jnp.float32))

    def add_noise(self, chunk: jax.Array, k: jax.Array, noise: jax.Array) -> jax.Array:
        """The network's input is always zeros: returns ``zeros_like(chunk)``."""
        return jnp.zeros_like(chunk)

    def clean_estimate(self, apply_fn: ApplyFn, params, obs, x, k) -> jax.Array:
        """The predicted chunk, clipped to ``[-1, 1]`` (``x`` and ``k`` unused)."""
        return jnp.clip(self._predict(apply_fn, params, obs, x), -1.0, 1.0)

    def step(self, apply_fn: ApplyFn, params, obs, x, k, key=None, guide: GuideFn | None = None) -> jax.Array:
        """The predicted chunk (unclipped) plus ``guide(x, x_hat, k)`` if given."""
        out = self._predict(apply_fn, params, obs, x)
        if guide is not None:
            out = out + guide(x, jnp.clip(jax.lax.stop_gradient(out), -1.0, 1.0), k)
        return out

    def sample_from(self, apply_fn: ApplyFn, params, obs, noise, key=None, guide: GuideFn | None = None,
                    remat: bool = False, unroll: bool = False) -> jax.Array:
        """The predicted chunk ``[B, H, A]`` in ``[-1, 1]``; ``noise`` only gives the shape."""
        return _chain(self, apply_fn, params, obs, noise, None, guide, remat, unroll)

    def sample(self, apply_fn: ApplyFn, params, obs, key, horizon: int, action_dim: int,
               guide: GuideFn | None = None, remat: bool = False, unroll: bool = False) -> jax.Array:
        """The predicted chunk per observation, ``[B, H, A]`` (``key`` unused: deterministic)."""
        return self.sample_from(apply_fn, params, obs, jnp.zeros((obs.shape[0], horizon, action_dim)),
                                guide=guide, remat=remat, unroll=unroll)


def denoising_chain(sampler, apply_fn: ApplyFn, params, obs: jax.Array, noise: jax.Array,
                    key: jax.Array | None = None) -> jax.Array:
    """Every intermediate chunk of the reverse chain, for inspection: ``[K + 1, B, H, A]``.

    Index 0 is ``noise [B, H, A]``; index ``k + 1`` the chunk after step ``k``
    (the same steps as ``sample_from``; a DDPM chain draws its step noise
    from ``key``); the last entry is clipped to ``[-1, 1]``, as the sampled
    chunk is.
    """
    return _chain(sampler, apply_fn, params, obs, noise, key, None, False, collect=True)


def _chain(sampler, apply_fn, params, obs, x, key, guide, remat, unroll=False, collect=False) -> jax.Array:
    """The reverse chain: ``denoising_steps`` calls of ``sampler.step`` in one ``lax.scan``, clipped output.

    ``unroll=True`` writes the steps out one by one with the step index as a
    Python constant, so schedule lookups and branches fold at compile time: a
    larger graph (longer compile) that runs faster for short chains of small
    networks (Diffusion-QL's K = 5 at 3x256: about 1.25x more updates/s here).
    """
    steps = sampler.denoising_steps
    keys = jax.random.split(key, steps) if key is not None else jnp.zeros((steps, 2), jnp.uint32)

    def body(x, inputs):
        k, step_key = inputs
        x = sampler.step(apply_fn, params, obs, x, k, step_key if key is not None else None, guide)
        return x, (x if collect else None)

    if collect:  # every intermediate chunk (inspection), noise first, the last one clipped
        x0 = x
        x, xs = jax.lax.scan(body, x, (jnp.arange(steps, dtype=jnp.int32), keys))
        return jnp.concatenate([x0[None], xs[:-1], jnp.clip(xs[-1:], -1.0, 1.0)], axis=0)

    if unroll:
        for k in range(steps):
            def one(x, step_key, k=k):
                return sampler.step(apply_fn, params, obs, x, k, step_key if key is not None else None, guide)

            x = (jax.checkpoint(one) if remat else one)(x, keys[k])
    else:
        x, _ = jax.lax.scan(jax.checkpoint(body) if remat else body, x,
                            (jnp.arange(steps, dtype=jnp.int32), keys))
    return jnp.clip(x, -1.0, 1.0)


def cosine_alphas_cumprod(train_steps: int, s: float = 0.008, max_beta: float = 0.999) -> jax.Array:
    """``squaredcos_cap_v2`` schedule (Nichol & Dhariwal 2021, Eq. 17), as in Diffusion Policy.

    Returns ``alpha_bar [train_steps]`` with ``alpha_bar_t = prod_{i<=t} (1 - beta_i)`` and
    ``beta_t = min(1 - f(t+1)/f(t), max_beta)``, ``f(t) = cos^2((t/T + s)/(1 + s) pi/2)``.
    """
    f = lambda t: math.cos((t / train_steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f(t + 1) / f(t), max_beta) for t in range(train_steps)]
    return jnp.cumprod(1.0 - jnp.asarray(betas, jnp.float32))


def vp_alphas_cumprod(train_steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> jax.Array:
    """Variance-preserving schedule of Diffusion-QL (Wang et al. 2023, arXiv:2208.06193, App. C).

    The discretised VP SDE (Song et al. 2021): ``1 - beta_t = exp(-beta_min / T -
    (beta_max - beta_min) (2t - 1) / (2 T^2))`` for ``t = 1..T``; built for
    small ``T`` (5 in the paper). Returns ``alpha_bar [train_steps]``.
    """
    t = jnp.arange(1, train_steps + 1, dtype=jnp.float32)
    alphas = jnp.exp(-beta_min / train_steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / train_steps**2)
    return jnp.cumprod(alphas)


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
        if self.schedule not in SCHEDULES:
            raise ValueError(f"agent.noise_schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}")
        if not 1 <= self.denoising_steps <= self.train_steps:
            raise ValueError(f"agent.denoising_steps must be in [1, train_steps={self.train_steps}],"
                             f" got {self.denoising_steps}")

    @property
    def alphas_cumprod(self) -> jax.Array:
        return SCHEDULES[self.schedule](self.train_steps)

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

    def _ab(self, k):
        """``(abar_t, abar_prev)`` at sampling index ``k`` (``abar_prev = 1`` after the last step)."""
        ts, abar = self.timesteps, self.alphas_cumprod
        ab_prev = jnp.where(k + 1 < self.denoising_steps, abar[ts[jnp.minimum(k + 1, len(ts) - 1)]], 1.0)
        return abar[ts[k]], ab_prev

    def add_noise(self, chunk: jax.Array, k: jax.Array, noise: jax.Array) -> jax.Array:
        """``sqrt(abar_t) chunk + sqrt(1 - abar_t) noise`` at sampling index ``k [B]`` (t = ``timesteps[k]``)."""
        ab = self.alphas_cumprod[self.timesteps[k]][:, None, None]
        return jnp.sqrt(ab) * chunk + jnp.sqrt(1 - ab) * noise

    def clean_estimate(self, apply_fn: ApplyFn, params, obs, x, k) -> jax.Array:
        """``clip((x - sqrt(1 - abar_t) eps) / sqrt(abar_t))`` at index ``k`` (DDPM Eq. 15): ``[B, H, A]``."""
        t = jnp.broadcast_to(self.timesteps[k], (x.shape[0],))
        ab = self.alphas_cumprod[t][:, None, None]
        eps = apply_fn(params, x, t, obs)
        return jnp.clip((x - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab), -1.0, 1.0)

    def step(self, apply_fn: ApplyFn, params, obs, x, k, key=None, guide: GuideFn | None = None) -> jax.Array:
        """One DDIM step from sampling index ``k`` (timestep ``timesteps[k]``) to the next.

        ``key`` draws the step's noise when ``eta > 0`` (required then).
        """
        ab, ab_prev = self._ab(k)
        eps = apply_fn(params, x, jnp.full((x.shape[0],), self.timesteps[k]), obs)
        if guide is not None:
            x_hat = jnp.clip((x - jnp.sqrt(1 - ab) * jax.lax.stop_gradient(eps)) / jnp.sqrt(ab), -1.0, 1.0)
            eps = eps - jnp.sqrt(1 - ab) * guide(x, x_hat, k)
        out, sigma = self._posterior(x, eps, ab, ab_prev, self.eta)
        if self.eta > 0:
            out = out + sigma * jax.random.normal(key, x.shape)
        return out

    @staticmethod
    def _posterior(x, eps, ab, ab_prev, eta):
        """DDIM's step (Song et al. 2021, Eq. 12) from ``x`` and predicted ``eps``: ``(mean [B, H, A], sigma)``.

        The clean estimate is clipped to ``[-1, 1]`` and ``eps`` recomputed
        from it; ``sigma = eta sqrt((1 - ab_prev) / (1 - ab) (1 - ab / ab_prev))``.
        With ``eta = 1`` and every training timestep this is DDPM's posterior
        ``q(x_{t-1} | x_t, x0)`` (Ho et al. 2020, Eq. 6-7).
        """
        x0 = jnp.clip((x - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab), -1.0, 1.0)
        eps = (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1 - ab)
        sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        return jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1 - ab_prev - sigma**2, 0.0)) * eps, sigma

    def step_distribution(self, apply_fn: ApplyFn, params, obs, x, k, eta: float | None = None
                          ) -> tuple[jax.Array, jax.Array]:
        """One reverse step from index ``k`` as a Gaussian policy over the next noisy chunk (DPPO, Ren et al. 2024).

        Args:
          apply_fn, params: the denoiser.
          obs: ``[B, O]``; x: ``[B, H, A]`` the chunk at sampling index ``k``.
          k: int scalar (static or traced) or ``[B]`` int32 per row.
          eta: DDIM stochasticity of this step (``None``: the sampler's).

        Returns:
          ``(mean [B, H, A], std)``: the step's mean and its unfloored std
          (``sigma``, broadcastable to the mean: a scalar, or ``[B, 1, 1]``
          for a per-row ``k``). The last step (``k = K - 1``) has ``std = 0``.
        """
        eta = self.eta if eta is None else eta
        k = jnp.asarray(k)
        ab, ab_prev = self._ab(k)
        if k.ndim == 1:
            ab, ab_prev = ab[:, None, None], ab_prev[:, None, None]
        t = jnp.broadcast_to(self.timesteps[k], (x.shape[0],))
        eps = apply_fn(params, x, t, obs)
        return self._posterior(x, eps, ab, ab_prev, eta)

    def sample_from(self, apply_fn: ApplyFn, params, obs, noise, key=None, guide: GuideFn | None = None,
                    remat: bool = False, unroll: bool = False) -> jax.Array:
        """The DDIM chain from ``noise [B, H, A]`` (``key``: the steps' noise, needed when ``eta > 0``)."""
        if self.eta > 0 and key is None:
            raise ValueError("DDPM.sample_from: eta > 0 needs a key for the steps' noise")
        return _chain(self, apply_fn, params, obs, noise, key, guide, remat, unroll)

    def sample(self, apply_fn: ApplyFn, params, obs, key, horizon: int, action_dim: int,
               guide: GuideFn | None = None, remat: bool = False, unroll: bool = False) -> jax.Array:
        """Chunks ``[B, H, A]``: fresh noise and step noise drawn from ``key``."""
        k_init, k_loop = jax.random.split(key)
        x = jax.random.normal(k_init, (obs.shape[0], horizon, action_dim))
        return self.sample_from(apply_fn, params, obs, x, key=k_loop, guide=guide, remat=remat, unroll=unroll)


def gaussian_log_prob(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """Elementwise ``log N(x; mean, std^2)`` (nats), ``std`` broadcastable to ``x``."""
    z = (x - mean) / std
    return -0.5 * z**2 - jnp.log(std) - 0.5 * math.log(2 * math.pi)


def policy_chain(sampler: DDPM, apply_fn: ApplyFn, base_params, ft_params, ft_steps: int, obs: jax.Array,
                 key: jax.Array, horizon: int, action_dim: int, min_std: float = 0.1,
                 noise_clip: float = 3.0, deterministic: bool = False, eta: float | None = None
                 ) -> tuple[jax.Array, jax.Array]:
    """Samples chunks with the reverse chain as a sequence of Gaussian policies (DPPO's inner MDP).

    Steps ``k < K - K'`` run the frozen ``base_params``, the last ``K' =
    ft_steps`` the fine-tuned ``ft_params``. Each step draws ``x_{k+1} = mean
    + max(std, min_std) clip(z, -noise_clip, noise_clip)``, ``z ~ N(0, I)``
    (:meth:`DDPM.step_distribution`; DPPO's ``min_sampling_std`` floor and
    noise clipping), or ``x_{k+1} = mean`` when ``deterministic``.

    Args:
      sampler: the DDPM sampler (its ``eta``, or ``eta``, sets each step's std).
      apply_fn, base_params, ft_params: the denoiser and its two weight sets.
      ft_steps: ``K'`` in ``[1, K]`` (static).
      obs: ``[B, O]``; key: PRNG key (initial noise and step noise).
      horizon, action_dim: ``H``, ``A``.

    Returns:
      ``(chunk [B, H, A] clipped to [-1, 1], chain [B, K' + 1, H, A])``: the
      chain holds ``x_{K-K'} .. x_K`` (unclipped), the inputs and outputs of
      the fine-tuned steps whose log-likelihoods PPO needs.

    Raises:
      ValueError: ``ft_steps`` not in ``[1, K]``.
    """
    K = sampler.denoising_steps
    if not 1 <= ft_steps <= K:
        raise ValueError(f"agent.ft_denoising_steps must be in [1, denoising_steps={K}], got {ft_steps}")
    k_init, k_loop = jax.random.split(key)
    x = jax.random.normal(k_init, (obs.shape[0], horizon, action_dim))

    def run(params, x, ks, keys):
        def body(x, inputs):
            k, step_key = inputs
            mean, std = sampler.step_distribution(apply_fn, params, obs, x, k, eta)
            if deterministic:
                return mean, mean
            z = jnp.clip(jax.random.normal(step_key, x.shape), -noise_clip, noise_clip)
            x = mean + jnp.maximum(std, min_std) * z
            return x, x

        return jax.lax.scan(body, x, (ks, keys))

    keys = jax.random.split(k_loop, K)
    ks = jnp.arange(K, dtype=jnp.int32)
    if K > ft_steps:
        x, _ = run(base_params, x, ks[: K - ft_steps], keys[: K - ft_steps])
    x_start = x
    x, tail = run(ft_params, x, ks[K - ft_steps:], keys[K - ft_steps:])
    chain = jnp.concatenate([x_start[:, None], jnp.swapaxes(tail, 0, 1)], axis=1)
    return jnp.clip(x, -1.0, 1.0), chain


def chain_log_prob(sampler: DDPM, apply_fn: ApplyFn, params, obs: jax.Array, x: jax.Array, x_next: jax.Array,
                   k: jax.Array, min_std: float = 0.1, eta: float | None = None, action_steps: int | None = None,
                   reduce: str = "mean") -> jax.Array:
    """``log pi(x_next | x, s, k)`` of one reverse step per row, the likelihood DPPO's ratio uses.

    The step's Gaussian is :meth:`DDPM.step_distribution` with the std floored
    at ``min_std`` (DPPO's ``min_logprob_std``); its mean clips the clean
    estimate exactly as the sampler does, and ``x_next`` is the unclipped
    sample the sampler drew. Only the first ``action_steps`` actions of the
    chunk (the executed ones) count. ``reduce='sum'`` gives the joint
    log-density; ``'mean'`` (DPPO's choice) its average per action
    dimension, so a PPO ratio is the geometric mean of the per-dimension
    ratios and the clip ranges do not depend on ``H A``.

    Args:
      obs: ``[B, O]``; x, x_next: ``[B, H, A]``; k: ``[B]`` int32 sampling
        indices (0 = the noise end).

    Returns:
      ``[B]`` log-densities (nats; per dimension with ``'mean'``).

    Raises:
      ValueError: unknown ``reduce``.
    """
    if reduce not in ("mean", "sum"):
        raise ValueError(f"agent.logprob_reduce must be 'mean' or 'sum', got {reduce!r}")
    mean, std = sampler.step_distribution(apply_fn, params, obs, x, k, eta)
    h = x.shape[1] if action_steps is None else action_steps
    std = jnp.broadcast_to(jnp.maximum(std, min_std), mean.shape)
    logp = gaussian_log_prob(x_next[:, :h], mean[:, :h], std[:, :h])
    return logp.mean(axis=(1, 2)) if reduce == "mean" else logp.sum(axis=(1, 2))


SCHEDULES = {"squaredcos_cap_v2": cosine_alphas_cumprod, "linear": linear_alphas_cumprod,
             "vp": vp_alphas_cumprod}  # DDPM noise schedules by config name


def make_generative(config) -> FlowMatching | DDPM | Regression:
    """Builds the sampler named by ``config.generative``: 'flow', 'ddpm' or 'mse' (:class:`Regression`).

    Reads ``denoising_steps`` and, for DDPM, ``train_denoising_steps``,
    ``noise_schedule`` and ``ddim_eta``. 'mse' ignores them (one call, no noise).

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
    if config.generative == "mse":
        return Regression()
    raise ValueError(f"agent.generative must be 'flow', 'ddpm' or 'mse', got {config.generative!r}")

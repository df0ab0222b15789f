"""The chunked generative actor shared by every agent: a flow or DDPM policy with an EMA copy."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from agents.common import masked_mean
from networks.denoiser import ChunkMLPDenoiser
from networks.generative import DDPM, FlowMatching, GuideFn, Regression, denoising_chain, make_generative
from networks.unet import ChunkUNetDenoiser


def make_denoiser(config: ml_collections.ConfigDict):
    """The denoiser named by ``config.actor_network``: 'mlp' (:class:`ChunkMLPDenoiser`, ``actor_hidden_dims``)
    or 'unet' (:class:`ChunkUNetDenoiser`, ``unet_down_dims``, ``unet_kernel_size``).

    Raises:
      ValueError: an unknown ``agent.actor_network``.
    """
    name = config.get("actor_network", "mlp")
    if name == "mlp":
        return ChunkMLPDenoiser(hidden_dims=tuple(config.actor_hidden_dims), layer_norm=config.actor_layer_norm,
                                activation=config.get("actor_activation", "mish"))
    if name == "unet":
        return ChunkUNetDenoiser(down_dims=tuple(config.unet_down_dims), kernel_size=int(config.unet_kernel_size))
    raise ValueError(f"agent.actor_network must be 'mlp' or 'unet', got {name!r}")


def actor_learning_rate(config: ml_collections.ConfigDict):
    """The actor's learning rate: ``actor_lr`` constant, or with ``actor_lr_decay_steps = D > 0``
    Diffusion Policy's schedule: linear warm-up over ``actor_lr_warmup_steps`` then cosine decay to 0 at
    update ``D`` (and 0 after it; for a BC run, D = ``pretrain.steps``)."""
    decay = int(config.get("actor_lr_decay_steps", 0))
    if decay <= 0:
        return config.actor_lr
    warmup = int(config.get("actor_lr_warmup_steps", 0))
    return optax.warmup_cosine_decay_schedule(0.0, config.actor_lr, warmup, max(decay, warmup + 1), 0.0)


class Actor(flax.struct.PyTreeNode):
    """A chunked flow-matching or DDPM policy ``pi(a_{t:t+H} | s_t)`` with an EMA copy.

    Fields: ``state`` (params + optimizer), ``ema_params`` (used for sampling),
    ``step`` (int32 updates so far); static: ``generative``
    (:class:`~networks.generative.FlowMatching`, :class:`~networks.generative.DDPM`
    or :class:`~networks.generative.Regression`, the MSE baseline),
    ``horizon`` H, ``action_dim`` A, ``ema_decay``, ``ema_power``.
    """

    state: train_state.TrainState
    ema_params: flax.core.FrozenDict
    generative: FlowMatching | DDPM | Regression = flax.struct.field(pytree_node=False)
    horizon: int = flax.struct.field(pytree_node=False)
    action_dim: int = flax.struct.field(pytree_node=False)
    ema_decay: float = flax.struct.field(pytree_node=False)
    ema_power: float = flax.struct.field(pytree_node=False, default=0.0)

    @classmethod
    def create(cls, key: jax.Array, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict) -> "Actor":
        """Initialises the denoiser (:func:`make_denoiser`) from ``config`` (``horizon``, ``actor_lr``, ...)."""
        net = make_denoiser(config)
        params = net.init(key, jnp.zeros((1, config.horizon, action_dim)), jnp.zeros((1,)),
                          jnp.zeros((1, obs_dim)))
        tx = optax.adamw(actor_learning_rate(config), weight_decay=config.actor_weight_decay)
        if config.grad_clip > 0:
            tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), tx)
        state = train_state.TrainState.create(apply_fn=net.apply, params=params, tx=tx)
        return cls(state=state, ema_params=jax.tree.map(jnp.copy, params), generative=make_generative(config),
                   horizon=int(config.horizon), action_dim=int(action_dim), ema_decay=float(config.ema_decay),
                   ema_power=float(config.get("ema_power", 0.0)))

    def bc_loss(self, params, obs: jax.Array, chunk: jax.Array, weights: jax.Array, key: jax.Array) -> jax.Array:
        """Weighted mean flow-matching / DDPM loss on ``obs [B, O]``, ``chunk [B, H, A]``, ``weights [B]``."""
        return masked_mean(self.generative.loss(self.state.apply_fn, params, obs, chunk, key), weights)

    def apply_gradients(self, grads) -> "Actor":
        """One optimizer step plus the EMA update ``ema <- d ema + (1 - d) params``.

        The decay warms up over the update count ``n`` as
        ``min(ema_decay, (1 + n) / (10 + n))``, or with ``ema_power = p > 0`` as
        Diffusion Policy's EMA (after Karras et al.): ``min(ema_decay, 1 - (1 + n)^-p)``
        (p = 0.75 there: 0.9 after 20 updates, 0.99 after 460, 0.999 after 10k).
        """
        state = self.state.apply_gradients(grads=grads)
        n = jnp.asarray(state.step, jnp.float32)
        if self.ema_power > 0:
            decay = jnp.minimum(self.ema_decay, 1.0 - (1.0 + n) ** -self.ema_power)
        else:
            decay = jnp.minimum(self.ema_decay, (1.0 + n) / (10.0 + n))
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, self.ema_params, state.params)
        return self.replace(state=state, ema_params=ema)

    def denoising_chain(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """The EMA actor's reverse chain at ``obs [B, O]``, every step: ``[K + 1, B, H, A]`` (noise first).

        Its last entry equals ``sample(obs, key)`` (same key, same noise).
        """
        shape = (obs.shape[0], self.horizon, self.action_dim)
        if isinstance(self.generative, DDPM):  # the keys as DDPM.sample splits them
            k_noise, k_chain = jax.random.split(key)
        else:
            k_noise, k_chain = key, None
        noise = jax.random.normal(k_noise, shape)
        return denoising_chain(self.generative, self.state.apply_fn, self.ema_params, obs, noise, k_chain)

    def sample(self, obs: jax.Array, key: jax.Array, num_samples: int | None = None, params=None,
               guide: GuideFn | None = None, remat: bool = False, unroll: bool = False) -> jax.Array:
        """Samples chunks through the whole reverse chain (one ``lax.scan``).

        Args:
          obs: ``[B, O]`` normalised observations.
          key: PRNG key.
          num_samples: if given, N chunks per observation.
          params: denoiser weights; ``None`` uses the EMA weights (acting,
            targets). Pass ``self.state.params`` to differentiate a loss on the
            samples with respect to the live weights (Diffusion-QL).
          guide: guidance hook ``(x [M, H, A], x_hat, k) -> [M, H, A]`` added at
            every step (see :mod:`networks.generative`), with ``M = B N`` rows
            ordered observation-major (``jnp.repeat``).
          remat: recompute each step in the backward pass (gradient checkpointing).
          unroll: unroll the chain's scan (short chains: faster, slower to compile).

        Returns:
          ``[B, H, A]`` (or ``[B, N, H, A]``) chunks in ``[-1, 1]``.
        """
        params = self.ema_params if params is None else params
        if num_samples is None:
            return self.generative.sample(self.state.apply_fn, params, obs, key, self.horizon, self.action_dim,
                                          guide=guide, remat=remat, unroll=unroll)
        batch = obs.shape[0]
        rep = jnp.repeat(obs, num_samples, axis=0)
        chunks = self.generative.sample(self.state.apply_fn, params, rep, key, self.horizon, self.action_dim,
                                        guide=guide, remat=remat, unroll=unroll)
        return chunks.reshape(batch, num_samples, self.horizon, self.action_dim)

    def clean_estimate(self, params, obs: jax.Array, x: jax.Array, k: jax.Array) -> jax.Array:
        """One-step estimate of the clean chunk from ``x [B, H, A]`` at sampling index ``k`` (EDP's action)."""
        return self.generative.clean_estimate(self.state.apply_fn, params, obs, x, k)

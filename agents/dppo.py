"""DPPO: the denoising chain as an inner MDP, fine-tuned with PPO (Ren et al. 2024, arXiv:2409.00588).

The BC-pretrained chunked DDPM actor is the policy. Sampling a chunk runs
``K`` reverse steps, each a Gaussian policy over the next noisy chunk
(:meth:`networks.generative.DDPM.step_distribution`): mean from the DDPM
posterior (DDIM with ``ddim_eta``; ``eta = 1`` with ``K`` training steps is
ancestral DDPM), std floored at ``min_sampling_std`` while sampling and at
``min_logprob_std`` in likelihoods, noise clipped at ``noise_clip`` std. Only
the last ``K' = ft_denoising_steps`` steps are fine-tuned; the first ``K -
K'`` run a frozen copy of the pretrained weights.

PPO runs over (env step, denoising step) pairs (Sec. 4 and App. C of the
paper): every pair of a chunk transition shares its GAE(lambda) advantage
(the shared core, :mod:`agents.onpolicy`), standardised per minibatch and
scaled by ``gamma_denoise^(K' - k - 1)`` for fine-tuned step ``k``; the clip
range grows from ``clip_eps_base`` at the first fine-tuned step to
``clip_eps`` at the last (:func:`agents.onpolicy.clip_schedule`); ``V(s)`` on
observations only; rewards scaled by a running return std; the actor waits
``critic_warmup_iters`` iterations while the critic learns; a target-KL
early stop ends an update's remaining minibatches.

Memory per iteration (what a rollout holds, kept on the device): chains
``[T, N, K' + 1, H, A]`` float32 plus observations ``[T, N, O]`` twice; PPO
then forms ``T N K'`` pairs (obs, x_k, x_{k+1}, k, advantage, return,
old log-prob). For ``T = 10, N = 64, K' = 10, H = 5, A = 2`` the chains are
2.8 MiB; at DPPO's Hopper sizes (``T = 500, N = 40, K' = 10, H = 4, A = 3``)
26 MiB.
"""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from agents import bc
from agents.actor import Actor
from agents.common import StaticConfig
from agents.onpolicy import (RewardScaler, clip_schedule, clipped_surrogate, gae,
                             minibatch_epochs, normalize)
from networks.generative import DDPM, chain_log_prob, policy_chain
from networks.mlp import MLP


def _adam(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
    tx = optax.adam(lr)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), tx) if max_grad_norm > 0 else tx


class DPPOAgent(flax.struct.PyTreeNode):
    """Immutable DPPO agent: ``act``, ``update`` and ``sample_actions`` are pure and jitted.

    Fields: ``rng``; ``actor`` (the fine-tuned steps' weights and optimizer,
    a TrainState); ``base_params`` (frozen pretrained weights of the first
    ``K - K'`` steps); ``value`` (``V(s)`` TrainState); ``reward_scaler``;
    ``iteration`` (PPO updates so far); static ``generative`` (the DDPM
    sampler), ``horizon``, ``action_dim`` and ``config``.
    Observations are normalised by the caller (the dataset's statistics).
    """

    rng: jax.Array
    actor: train_state.TrainState
    base_params: flax.core.FrozenDict
    value: train_state.TrainState
    reward_scaler: RewardScaler
    iteration: jax.Array
    generative: DDPM = flax.struct.field(pytree_node=False)
    horizon: int = flax.struct.field(pytree_node=False)
    action_dim: int = flax.struct.field(pytree_node=False)
    config: StaticConfig = flax.struct.field(pytree_node=False)

    METRICS = ("pg_loss", "value_loss", "approx_kl", "clip_frac")  # what a progress line shows
    ON_POLICY = True

    @staticmethod
    def check(config: ml_collections.ConfigDict) -> None:
        """Raises ValueError (``'agent.<field>: ...'``) for an invalid DPPO field."""
        checks = [
            (config.generative == "ddpm", "generative", "'ddpm' (DPPO fine-tunes a diffusion chain)",
             config.generative),
            (1 <= config.ft_denoising_steps <= config.denoising_steps, "ft_denoising_steps",
             f"in [1, denoising_steps={config.denoising_steps}]", config.ft_denoising_steps),
            (config.ddim_eta > 0 or config.min_sampling_std > 0, "ddim_eta",
             "> 0, or min_sampling_std > 0 (a deterministic chain has no likelihood)", config.ddim_eta),
            (config.min_logprob_std > 0, "min_logprob_std", "> 0", config.min_logprob_std),
            (config.logprob_reduce in ("mean", "sum"), "logprob_reduce", "'mean' or 'sum'", config.logprob_reduce),
            (config.rollout_length >= 1, "rollout_length", ">= 1", config.rollout_length),
            (config.num_epochs >= 1, "num_epochs", ">= 1", config.num_epochs),
            (config.minibatch_size >= 1, "minibatch_size", ">= 1", config.minibatch_size),
            (0.0 <= config.gae_lambda <= 1.0, "gae_lambda", "in [0, 1]", config.gae_lambda),
            (0.0 < config.gamma_denoise <= 1.0, "gamma_denoise", "in (0, 1]", config.gamma_denoise),
            (0.0 < config.clip_eps_base <= config.clip_eps, "clip_eps_base", f"in (0, clip_eps={config.clip_eps}]",
             config.clip_eps_base),
            (config.target_kl >= 0, "target_kl", ">= 0 (0: no early stop)", config.target_kl),
            (config.critic_warmup_iters >= 0, "critic_warmup_iters", ">= 0", config.critic_warmup_iters),
        ]
        for ok, field, expected, value in checks:
            if not ok:
                raise ValueError(f"agent.{field}: expected {expected}, got {value!r}")

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict,
               actor: Actor | None = None, num_envs: int = 1) -> DPPOAgent:
        """Builds the agent from the pretrained ``actor`` (its EMA weights; a fresh one if ``None``).

        ``num_envs`` sizes the reward scaler's per-env running returns.

        Raises:
          ValueError: an invalid field (see :meth:`check`).
        """
        cls.check(config)
        rng, k_actor, k_value = jax.random.split(jax.random.PRNGKey(seed), 3)
        if actor is None:
            actor = Actor.create(k_actor, obs_dim, action_dim, config)
        if not isinstance(actor.generative, DDPM):
            raise ValueError("agent.generative: expected 'ddpm' (DPPO fine-tunes a diffusion chain), got 'flow'")
        pretrained = actor.ema_params
        ft = train_state.TrainState.create(apply_fn=actor.state.apply_fn, params=jax.tree.map(jnp.copy, pretrained),
                                           tx=_adam(config.actor_lr, config.max_grad_norm))
        net = _value_net(config)
        value = train_state.TrainState.create(apply_fn=net.apply, params=net.init(k_value, jnp.zeros((1, obs_dim))),
                                              tx=_adam(config.critic_lr, config.max_grad_norm))
        return cls(rng=rng, actor=ft, base_params=pretrained, value=value,
                   reward_scaler=RewardScaler.create(num_envs), iteration=jnp.zeros((), jnp.int32),
                   generative=actor.generative, horizon=int(config.horizon), action_dim=int(action_dim),
                   config=StaticConfig(config))

    # --- acting ----------------------------------------------------------------------------------

    def _chain(self, obs, key, deterministic: bool, eta=None):
        c = self.config
        return policy_chain(self.generative, self.actor.apply_fn, self.base_params, self.actor.params,
                            c.ft_denoising_steps, obs, key, self.horizon, self.action_dim,
                            min_std=c.min_sampling_std, noise_clip=c.noise_clip, deterministic=deterministic,
                            eta=eta)

    @jax.jit
    def act(self, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """The training sampler: ``obs [N, O] -> (chunk [N, H, A] in [-1, 1], {'chain': [N, K'+1, H, A]})``."""
        chunk, chain = self._chain(obs, key, deterministic=False)
        return chunk, {"chain": chain}

    @jax.jit
    def sample_actions(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """The evaluation policy: ``obs [B, O] -> [B, H, A]``.

        The training sampler, or with ``eval_deterministic`` the chain's means
        with DDIM ``eta = 0`` (no noise at any step).
        """
        if self.config.eval_deterministic:
            return self._chain(obs, key, deterministic=True, eta=0.0)[0]
        return self._chain(obs, key, deterministic=False)[0]

    @jax.jit
    def state_value(self, obs: jax.Array) -> jax.Array:
        """``V(obs)``: ``[..., O] -> [...]`` (in units of scaled reward)."""
        return self.value.apply_fn(self.value.params, obs)[..., 0]

    # --- learning ---------------------------------------------------------------------------------

    def log_prob(self, params, obs: jax.Array, x: jax.Array, x_next: jax.Array, k: jax.Array) -> jax.Array:
        """``log pi_k(x_next | x, s)`` per pair: ``obs [M, O]``, ``x, x_next [M, H, A]``, ``k [M]`` -> ``[M]``.

        Over the executed ``action_steps`` of the chunk, averaged per
        dimension (``logprob_reduce='mean'``, DPPO's) or summed.
        """
        c = self.config
        return chain_log_prob(self.generative, self.actor.apply_fn, params, obs, x, x_next, k,
                              min_std=c.min_logprob_std, action_steps=c.action_steps, reduce=c.logprob_reduce)

    def minibatch_update(self, carry, mb: dict, actor_on: jax.Array = True):
        """One PPO gradient step on a minibatch of (env step, denoising step) pairs.

        Args:
          carry: ``(actor TrainState, value TrainState)``.
          mb: ``obs [M, O]``, ``x``, ``x_next [M, H, A]``, ``local [M]`` (the
            fine-tuned step, 0 .. K'-1), ``adv``, ``ret``, ``old_logp [M]``.
          actor_on: bool scalar; False (critic warm-up) leaves the actor as it is.

        Returns:
          ``((actor, value), info)`` with ``pg_loss``, ``value_loss``,
          ``approx_kl``, ``clip_frac``, ``ratio_max``.
        """
        c = self.config
        K, Kf = self.generative.denoising_steps, c.ft_denoising_steps
        clip = clip_schedule(Kf, c.clip_eps_base, c.clip_eps, c.clip_eps_rate)
        denoise_discount = c.gamma_denoise ** (Kf - 1 - jnp.arange(Kf, dtype=jnp.float32))
        actor, value_state = carry

        def actor_loss(params):
            logp = self.log_prob(params, mb["obs"], mb["x"], mb["x_next"], mb["local"] + (K - Kf))
            a = normalize(mb["adv"]) if c.normalize_advantages else mb["adv"]
            return clipped_surrogate(logp, mb["old_logp"], a * denoise_discount[mb["local"]], clip[mb["local"]])

        def value_loss(params):
            v = value_state.apply_fn(params, mb["obs"])[..., 0]
            return 0.5 * jnp.mean((v - mb["ret"]) ** 2)

        (pg_loss, info), g_actor = jax.value_and_grad(actor_loss, has_aux=True)(actor.params)
        v_loss, g_value = jax.value_and_grad(value_loss)(value_state.params)
        new_actor = actor.apply_gradients(grads=g_actor)
        actor = jax.tree.map(lambda new, old: jnp.where(actor_on, new, old), new_actor, actor)
        value_state = value_state.apply_gradients(grads=jax.tree.map(lambda g: c.vf_coef * g, g_value))
        return (actor, value_state), {"pg_loss": pg_loss, "value_loss": v_loss, **info}

    @functools.partial(jax.jit, static_argnames="shard_batch")
    def update(self, rollout: dict, shard_batch=None) -> tuple[DPPOAgent, dict]:
        """One PPO update on a rollout of ``T`` chunk transitions in ``N`` envs.

        Args:
          rollout: :data:`agents.onpolicy.ROLLOUT_FIELDS` ``[T, N, ...]`` plus
            ``chain [T, N, K'+1, H, A]`` from :meth:`act`.
          shard_batch: ``None``, or the constraint splitting each minibatch
            across devices (:func:`agents.onpolicy.minibatch_epochs`).

        Returns:
          the new agent and scalar metrics: ``pg_loss``, ``value_loss``,
          ``approx_kl``, ``clip_frac``, ``ratio_max`` (averaged over the
          minibatches that ran), ``updates``, ``value_mean``, ``reward_scale``.
        """
        c = self.config
        K, Kf = self.generative.denoising_steps, c.ft_denoising_steps
        T, N = rollout["reward"].shape
        scaler, reward = self.reward_scaler, rollout["reward"]
        if c.reward_scaling:
            scaler, reward = scaler.scale(reward, rollout["done"], c.discount)
        value, next_value = self.state_value(rollout["obs"]), self.state_value(rollout["next_obs"])
        adv, ret = gae(reward, value, next_value, rollout["discount"], rollout["done"], c.gae_lambda)

        # (env step, denoising step) pairs: [T N K'] rows
        chain = rollout["chain"]
        local = jnp.broadcast_to(jnp.arange(Kf, dtype=jnp.int32), (T, N, Kf))
        pairs = {"obs": jnp.broadcast_to(rollout["obs"][:, :, None], (T, N, Kf, rollout["obs"].shape[-1])),
                 "x": chain[:, :, :-1], "x_next": chain[:, :, 1:], "local": local,
                 "adv": jnp.broadcast_to(adv[..., None], (T, N, Kf)),
                 "ret": jnp.broadcast_to(ret[..., None], (T, N, Kf))}
        pairs = jax.tree.map(lambda x: x.reshape((T * N * Kf,) + x.shape[3:]), pairs)
        # old log-probs under the current weights: the first minibatch's ratio is exactly 1
        pairs["old_logp"] = self.log_prob(self.actor.params, pairs["obs"], pairs["x"], pairs["x_next"],
                                          pairs["local"] + (K - Kf))
        actor_on = self.iteration >= c.critic_warmup_iters

        def step(carry, mb):
            return self.minibatch_update(carry, mb, actor_on)

        rng, key = jax.random.split(self.rng)
        minibatch = min(c.minibatch_size, T * N * Kf)
        (actor, value_state), info = minibatch_epochs(
            (self.actor, self.value), pairs, key, c.num_epochs, minibatch, step,
            target_kl=c.target_kl if c.target_kl > 0 else None, shard_batch=shard_batch)
        info.update(value_mean=value.mean(), reward_scale=jnp.sqrt(scaler.stats.var[0] + 1e-8),
                    actor_on=actor_on.astype(jnp.float32))
        return self.replace(rng=rng, actor=actor, value=value_state, reward_scaler=scaler,
                            iteration=self.iteration + 1), info


def _value_net(config) -> MLP:
    return MLP(tuple(config.critic_hidden_dims), 1, activation="mish")


def get_config() -> ml_collections.ConfigDict:
    """DPPO hyperparameters: DPPO's robomimic-state PPO defaults; the chain and rollout sized for this project's tasks.

    The chain is DDIM with 10 of 100 steps and ``eta = 1`` while fine-tuning,
    every step fine-tuned (DPPO's DDIM option); DPPO's DDPM setting is
    ``--config.agent.train_denoising_steps=20 --config.agent.denoising_steps=20
    --config.agent.ft_denoising_steps=10``. Rollouts are short (4 chunks x 64
    envs) so that the default 40k-env-step budget, the one every method gets,
    holds 32 PPO iterations.
    """
    c = bc.get_config()
    c.generative = "ddpm"
    c.train_denoising_steps = 100      # DDPM training steps (Diffusion Policy's)
    c.denoising_steps = 10             # K: DDIM sampling steps (DPPO's robomimic DDPM runs: K = 20 = train steps)
    c.ddim_eta = 1.0                   # step noise while fine-tuning (1: DDPM-like posterior noise)
    c.ft_denoising_steps = 10          # K': the last K' steps are fine-tuned, the first K - K' frozen (DPPO: 10 of 20)
    c.min_sampling_std = 0.1           # std floor of every sampling step (exploration)
    c.min_logprob_std = 0.1            # std floor in the log-likelihoods
    c.logprob_reduce = "mean"          # log-likelihood per dimension ('mean', DPPO's) or joint ('sum') over the chunk
    c.noise_clip = 3.0                 # sampling noise clipped at this many std
    c.eval_deterministic = False       # evaluate with the DDIM eta=0 mean chain instead of the training sampler
    c.rollout_length = 4               # T: chunk steps per env between updates
    c.num_epochs = 10                  # passes over each rollout
    c.minibatch_size = 1280            # (env step, denoising step) pairs per PPO minibatch (batch_size: BC's)
    c.actor_lr = 1e-4                  # Adam, fine-tuned steps
    c.critic_lr = 1e-3                 # Adam, V(s)
    c.max_grad_norm = 1.0              # global-norm clip per network (0 disables)
    c.critic_hidden_dims = (256, 256, 256)  # V(s) MLP (Mish)
    c.gae_lambda = 0.95                # GAE lambda over chunk transitions
    c.gamma_denoise = 0.99             # advantage of fine-tuned step k scaled by gamma_denoise^(K'-k-1)
    c.clip_eps = 0.01                  # clip range of the last fine-tuned step
    c.clip_eps_base = 0.001            # clip range of the first fine-tuned step
    c.clip_eps_rate = 3.0              # growth rate of the clip range along the chain
    c.vf_coef = 0.5                    # value-loss weight
    c.target_kl = 1.0                  # early stop when a minibatch's approx KL exceeds this (0: never)
    c.critic_warmup_iters = 2          # iterations that train only V(s) at the start
    c.reward_scaling = True            # divide rewards by the running std of the discounted return
    c.normalize_advantages = True      # standardise advantages per minibatch
    c.discount = 0.99                  # gamma per env step (a chunk of h steps discounts gamma^h)
    return c


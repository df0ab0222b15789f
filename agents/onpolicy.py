"""The PPO core shared by every on-policy agent (Gaussian PPO and DPPO).

One mechanism, one place:

* :func:`gae`: GAE(lambda) over **chunk transitions** with a per-transition
  discount ``gamma^n (1 - terminated)`` (``n`` env steps executed in the
  chunk; Schulman et al. 2015, Eq. 16, with the chunk as the MDP step);
* :func:`clipped_surrogate`: PPO's clipped objective (Schulman et al. 2017,
  Eq. 7) with a per-sample clip range (DPPO's per-denoising-step schedule);
* :func:`normalize`: advantage standardisation;
* :func:`minibatch_epochs`: ``num_epochs`` passes of shuffled minibatches
  as one ``lax.scan``, with an optional target-KL early stop;
* :class:`RunningNorm` (observations) and :class:`RewardScaler` (DPPO's
  running reward scaling), both stored in the agent and so in checkpoints.

A rollout handed to an on-policy agent's ``update`` is ``[T, N]`` chunk
transitions made by :func:`launch.loops.make_onpolicy_iterations`: ``obs
[T, N, O]``, ``reward [T, N]`` (``sum_k gamma^k r_k`` over the executed
steps), ``discount [T, N]`` (``gamma^n (1 - terminated)``), ``done [T, N]``
(the episode ended inside the chunk), ``next_obs [T, N, O]`` (the
observation after the chunk, before any reset), plus whatever the agent's
``act`` returned to store (pre-squash samples, denoising chains).
"""

from __future__ import annotations

from typing import Callable

import flax
import jax
import jax.numpy as jnp

ROLLOUT_FIELDS = ("obs", "reward", "discount", "done", "next_obs")  # what every on-policy rollout holds


class RunningNorm(flax.struct.PyTreeNode):
    """Running mean/variance of observations ``[O]`` (``count`` observations seen so far)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, obs_dim: int) -> RunningNorm:
        return cls(mean=jnp.zeros(obs_dim), var=jnp.ones(obs_dim), count=jnp.zeros(()))

    def update(self, obs: jax.Array) -> RunningNorm:
        """Merges the statistics of ``obs [..., O]`` (Chan, Golub, LeVeque 1979)."""
        x = obs.reshape(-1, obs.shape[-1])
        n = jnp.asarray(x.shape[0], jnp.float32)
        mean, var = x.mean(0), x.var(0)
        total = self.count + n
        delta = mean - self.mean
        new_mean = self.mean + delta * n / total
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        return self.replace(mean=new_mean, var=m2 / total, count=total)

    def __call__(self, obs: jax.Array, clip: float = 10.0) -> jax.Array:
        """Standardises ``obs [..., O]`` and clips to ``[-clip, clip]`` (identity before any update)."""
        std = jnp.where(self.count > 0, jnp.sqrt(self.var + 1e-8), 1.0)
        return jnp.clip((obs - self.mean) / std, -clip, clip)


class RewardScaler(flax.struct.PyTreeNode):
    """Running reward scaling (as in DPPO's configs): rewards divided by the std of the discounted return.

    Keeps the discounted return ``G <- gamma G + r`` of each of the ``N``
    envs (reset to 0 after an episode end) and the running variance of all
    ``G`` seen; :meth:`scale` returns ``r / sqrt(var + 1e-8)``.
    """

    ret: jax.Array          # [N] running discounted return per env
    stats: RunningNorm      # running statistics of ``ret`` (a [1] "observation")

    @classmethod
    def create(cls, num_envs: int) -> RewardScaler:
        return cls(ret=jnp.zeros(num_envs), stats=RunningNorm.create(1))

    def scale(self, reward: jax.Array, done: jax.Array, discount: float) -> tuple[RewardScaler, jax.Array]:
        """Updates the statistics with ``reward [T, N]`` and returns ``(scaler, scaled reward [T, N])``.

        Raises:
          ValueError: ``reward.shape[1]`` differs from the scaler's env count (at trace time).
        """
        if reward.shape[1:] != self.ret.shape:
            raise ValueError(f"RewardScaler: rewards for {reward.shape[1:]} envs, scaler built for {self.ret.shape}")

        def body(ret, x):
            r, d = x
            ret = discount * ret + r
            return ret * (1.0 - d), ret

        ret, returns = jax.lax.scan(body, self.ret, (reward, done.astype(jnp.float32)))
        stats = self.stats.update(returns[..., None])
        return self.replace(ret=ret, stats=stats), reward / jnp.sqrt(stats.var[0] + 1e-8)


def gae(reward: jax.Array, value: jax.Array, next_value: jax.Array, discount: jax.Array, done: jax.Array,
        lam: float) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over ``T`` chunk transitions in ``N`` envs.

    ``delta_t = r_t + d_t V(s'_t) - V(s_t)`` and
    ``A_t = delta_t + lambda d_t (1 - done_t) A_{t+1}``, ``A_T = 0``, where
    ``d_t = gamma^{n_t} (1 - terminated_t)`` is the transition's own discount
    (``n_t`` env steps executed in the chunk) and ``s'_t`` the observation the
    chunk led to (the episode's last one when it ended there, not the reset).
    A truncated chunk (time limit) bootstraps from ``V(s'_t)``, a terminated
    one does not, and neither chains into the next episode. With ``h = 1``
    this is the usual per-step GAE (Schulman et al. 2015, Eq. 16).

    Args:
      reward: ``[T, N]`` chunk rewards ``sum_k gamma^k r_{t+k}``.
      value, next_value: ``[T, N]``: ``V(s_t)``, ``V(s'_t)``.
      discount: ``[T, N]`` (or a scalar) per-transition discount ``d_t``.
      done: ``[T, N]`` bool, the episode ended inside the chunk.
      lam: GAE lambda.

    Returns:
      ``(advantages [T, N], returns [T, N])``, ``returns = advantages + value``.
    """
    discount = jnp.broadcast_to(jnp.asarray(discount, jnp.float32), reward.shape)
    delta = reward + discount * next_value - value
    chain = lam * discount * (1.0 - done.astype(jnp.float32))

    def body(next_adv, x):
        delta_t, chain_t = x
        adv = delta_t + chain_t * next_adv
        return adv, adv

    _, adv = jax.lax.scan(body, jnp.zeros_like(delta[0]), (delta, chain), reverse=True)
    return adv, adv + value


def normalize(adv: jax.Array) -> jax.Array:
    """``(adv - mean) / (std + 1e-8)`` over the whole array."""
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def clipped_surrogate(logp: jax.Array, old_logp: jax.Array, adv: jax.Array,
                      clip_eps: jax.Array | float) -> tuple[jax.Array, dict]:
    """PPO's clipped policy loss ``-E[min(r A, clip(r, 1 - eps, 1 + eps) A)]`` (Schulman et al. 2017, Eq. 7).

    Args:
      logp, old_logp, adv: ``[M]`` log-likelihoods under the current and the
        rollout policy, and advantages.
      clip_eps: the clip range, a scalar or ``[M]`` (one per sample).

    Returns:
      ``(loss, info)`` with ``approx_kl`` (``E[(r - 1) - log r]``, Schulman's
      k3 estimator), ``clip_frac`` and ``ratio_max``.
    """
    log_ratio = logp - old_logp
    ratio = jnp.exp(log_ratio)
    loss = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv))
    info = {"approx_kl": jnp.mean((ratio - 1) - log_ratio), "clip_frac": jnp.mean(jnp.abs(ratio - 1) > clip_eps),
            "ratio_max": jnp.max(ratio)}
    return loss, info


def minibatch_epochs(carry, data: dict, key: jax.Array, num_epochs: int, minibatch_size: int,
                     step: Callable, target_kl: float | None = None, shard_batch: Callable | None = None):
    """``num_epochs`` passes of shuffled minibatches over ``data``, as one ``lax.scan``.

    Each pass draws a permutation of the ``M`` samples and cuts it into
    ``M // minibatch_size`` minibatches (the remainder of each pass is left
    out, a different one each pass). ``step(carry, minibatch) -> (carry,
    info)`` makes one update; ``info`` must hold ``approx_kl`` when
    ``target_kl`` is set: after a minibatch whose ``approx_kl`` exceeds it,
    the remaining minibatches of every pass leave ``carry`` unchanged (PPO's
    early stop, as DPPO does it).

    Args:
      carry: the pytree the updates change (train states, ...).
      data: a dict of ``[M, ...]`` arrays.
      key: permutation key.
      num_epochs, minibatch_size: static ints; ``minibatch_size <= M``.
      step: the update.
      target_kl: ``None`` or the early-stop threshold.
      shard_batch: ``None``, or ``fn(minibatch) -> minibatch`` constraining each
        minibatch to be split across devices (``launch.experiment.Devices``:
        data parallel updates, gradients averaged by XLA).

    Returns:
      ``(carry, info)``: ``info`` averaged over the minibatches that ran, plus
      ``updates`` (how many ran).

    Raises:
      ValueError: ``minibatch_size`` is not in ``[1, M]`` (at trace time).
    """
    total = jax.tree.leaves(data)[0].shape[0]
    if not 1 <= minibatch_size <= total:
        raise ValueError(f"minibatch size {minibatch_size} must be in [1, {total}] (samples in the rollout)")
    count = total // minibatch_size

    def one(state, mb):
        carry, stopped = state
        new, info = step(carry, mb if shard_batch is None else shard_batch(mb))
        if target_kl is None:
            return (new, stopped), (info, jnp.ones(()))
        carry = jax.tree.map(lambda a, b: jnp.where(stopped, a, b), carry, new)
        ran = 1.0 - stopped.astype(jnp.float32)
        return (carry, stopped | (info["approx_kl"] > target_kl)), (info, ran)

    def epoch(state, k):
        perm = jax.random.permutation(k, total)[: count * minibatch_size]
        mbs = jax.tree.map(lambda x: x[perm].reshape((count, minibatch_size) + x.shape[1:]), data)
        return jax.lax.scan(one, state, mbs)

    (carry, _), (info, ran) = jax.lax.scan(epoch, (carry, jnp.zeros((), bool)), jax.random.split(key, num_epochs))
    weight = ran / jnp.maximum(ran.sum(), 1.0)
    info = jax.tree.map(lambda v: jnp.sum(v * weight), info)
    info["updates"] = ran.sum()
    return carry, info


def clip_schedule(num_steps: int, base: float, final: float, rate: float) -> jax.Array:
    """DPPO's clip range per fine-tuned denoising step: ``[num_steps]``, from ``base`` up to ``final``.

    ``eps_k = base + (final - base) (e^{rate u_k} - 1) / (e^{rate} - 1)`` with
    ``u_k = k / (num_steps - 1)``: the step nearest the noise (k = 0) gets
    ``base``, the last one (which makes the executed chunk) ``final``.
    ``rate -> 0`` is linear. One step gets ``final``.
    """
    if num_steps == 1:
        return jnp.full((1,), final, jnp.float32)
    u = jnp.arange(num_steps, dtype=jnp.float32) / (num_steps - 1)
    shape = (jnp.exp(rate * u) - 1.0) / (jnp.exp(rate) - 1.0) if rate != 0 else u
    return base + (final - base) * shape

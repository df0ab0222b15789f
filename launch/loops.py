"""The compiled parts of a run: update loops, the online iteration, evaluation.

Each ``make_*`` returns one ``jax.jit``-compiled function whose inner loop is
a ``lax.scan`` (PureJaxRL style): the host only sees its outputs every
``log_every`` iterations. Agent and replay buffer are donated, so the update
runs in place.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from envs.chunk import execute_chunk, rollout_episodes
from envs.wrappers import VecEnv
from replay.buffer import ReplayBuffer, sample_mixed_steps
from replay.chunks import chunk_transition, training_batch
from replay.normalizer import Normalizer


def _jit(fn: Callable, donate_argnums: tuple, in_axes: tuple, vmap_seeds: bool) -> Callable:
    """``jax.jit(fn)``, or with ``vmap_seeds`` ``jax.jit(jax.vmap(fn, in_axes))``: several seeds' states
    (a leading seed axis on the arguments mapped, ``None`` for those shared) in one compiled call."""
    if vmap_seeds:
        fn = jax.vmap(fn, in_axes=in_axes)
    return jax.jit(fn, donate_argnums=donate_argnums)


def make_offline_updates(batch_size: int, horizon: int, action_steps: int, discount: float,
                         num_updates: int, shard_batch: Callable | None = None,
                         vmap_seeds: bool = False) -> Callable:
    """``fn(agent, buffer, key) -> (agent, metrics)``: ``num_updates`` agent updates on ``buffer``.

    Batches are ``[batch_size]`` chunks of ``horizon`` steps (see
    :func:`replay.chunks.training_batch`); metrics are averaged over the updates.
    ``shard_batch`` (several devices, see ``launch.experiment.Devices``)
    constrains each batch to be split across devices: data parallel updates.
    ``vmap_seeds``: ``agent`` and ``key`` carry a leading seed axis, the
    buffer is shared (see :func:`_jit`).
    """
    shard_batch = shard_batch or (lambda batch: batch)

    def fn(agent, buffer: ReplayBuffer, key):
        def body(agent, k):
            steps, _ = buffer.sample_steps(k, batch_size, horizon)
            return agent.update(shard_batch(training_batch(steps, action_steps, discount)))

        agent, info = jax.lax.scan(body, agent, jax.random.split(key, num_updates))
        return agent, jax.tree.map(jnp.mean, info)

    return _jit(fn, (0,), (0, None, 0), vmap_seeds)


def make_online_iterations(env: VecEnv, normalizer: Normalizer, *, batch_size: int, horizon: int,
                           action_steps: int, discount: float, updates_per_iter: int,
                           offline_ratio: float, num_iters: int, shard_batch: Callable | None = None,
                           vmap_seeds: bool = False) -> Callable:
    """The fine-tuning loop body, ``num_iters`` iterations in one compiled call.

    One iteration: normalise observations, ``agent.sample_actions`` a chunk
    ``[N, H, A]`` per env, execute ``action_steps`` of it
    (:func:`envs.chunk.execute_chunk`, with auto-reset), store the ``[N, h]``
    normalised steps in the online buffer, then ``updates_per_iter`` agent
    updates on batches mixing offline and online chunks (``offline_ratio``).

    ``shard_batch`` as in :func:`make_offline_updates`; ``vmap_seeds``: every
    argument but the offline buffer carries a leading seed axis.

    Returns ``fn(agent, env_state, online, offline, key) -> (agent, env_state,
    online, metrics)``; metrics are sums (episode counts, successes, returns)
    or means (losses) over the ``num_iters`` iterations.
    """

    shard_batch = shard_batch or (lambda batch: batch)

    def iteration(carry, key, offline):
        agent, env_state, online = carry
        k_act, k_reset, k_upd = jax.random.split(key, 3)
        chunk = agent.sample_actions(normalizer.obs(env_state.obs), k_act)
        env_state, steps = execute_chunk(env, env_state, normalizer.unnormalize_action(chunk),
                                         action_steps, k_reset)
        stored = normalizer.steps({k: steps[k] for k in
                                   ("obs", "action", "reward", "next_obs", "terminated", "truncated", "valid")})
        online = online.add(stored)

        def update(agent, k):
            batch_steps = sample_mixed_steps(offline, online, k, batch_size, horizon, offline_ratio)
            return agent.update(shard_batch(training_batch(batch_steps, action_steps, discount)))

        agent, info = jax.lax.scan(update, agent, jax.random.split(k_upd, updates_per_iter))
        ended = steps["episode_end"]
        metrics = {k: v.mean() for k, v in info.items()}
        metrics.update(episodes=ended.sum(), successes=steps["episode_success"].sum(),
                       return_sum=jnp.where(ended, steps["episode_return"], 0.0).sum(),
                       length_sum=jnp.where(ended, steps["episode_length"], 0).sum(),
                       env_steps=steps["valid"].sum())
        return (agent, env_state, online), metrics

    def fn(agent, env_state, online, offline, key):
        # the offline buffer is read-only: closed over, not carried through the scan
        (agent, env_state, online), metrics = jax.lax.scan(
            lambda carry, k: iteration(carry, k, offline), (agent, env_state, online),
            jax.random.split(key, num_iters))
        sums = ("episodes", "successes", "return_sum", "length_sum", "env_steps")
        return agent, env_state, online, {k: v.sum() if k in sums else v.mean() for k, v in metrics.items()}

    # The env state is not donated: a task may return one traced value in two places (e.g. the
    # same bool as info['terminated'] and info['success']); jit then hands back one buffer twice,
    # and donating it on the next call fails. It is small next to the agent and the buffer.
    return _jit(fn, (0, 2), (0, 0, 0, None, 0), vmap_seeds)


def pending_state(env: VecEnv):
    """A batched env state with every env marked done (zeros elsewhere), for :func:`make_onpolicy_iterations`."""
    spec = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), spec)
    return state.replace(done=jnp.ones_like(state.done))


def make_onpolicy_iterations(env: VecEnv, normalizer: Normalizer, *, rollout_length: int, action_steps: int,
                             discount: float, num_iters: int, shard_batch: Callable | None = None,
                             vmap_seeds: bool = False) -> Callable:
    """The on-policy loop shared by every on-policy agent (Gaussian PPO, DPPO): ``num_iters`` iterations, one jit.

    One iteration: ``rollout_length`` (T) chunk steps in each of the ``N``
    envs, each ``agent.act(normalised obs [N, O], key) -> (chunk [N, H, A],
    extras)`` followed by :func:`envs.chunk.execute_chunk` of ``action_steps``
    actions (auto-reset after an episode end); then one ``agent.update``
    on the ``[T, N]`` rollout of chunk transitions: ``obs``, ``reward``
    (``sum_k gamma^k r_k``), ``discount`` (``gamma^n (1 - terminated)``),
    ``done``, ``next_obs`` (normalised; before any reset) and the agent's
    ``extras`` (:mod:`agents.onpolicy`). The update's epochs and minibatches
    run inside the same compiled call; ``shard_batch`` (several devices)
    splits each of their minibatches across the devices.

    ``env_state`` may be :func:`pending_state` (every env marked done): the
    first step resets them inside the compiled loop, so ``reset`` is not
    compiled a second time on its own (costly for e.g. CheetahRun, which
    settles for 200 steps).

    Returns:
      ``fn(agent, env_state, key) -> (agent, env_state, metrics)``: metrics
      are sums (``episodes``, ``successes``, ``return_sum``, ``length_sum``,
      ``env_steps``) or means (the update's) over the iterations. The agent
      is donated. With ``vmap_seeds`` every argument and output carries a
      leading seed axis.
    """

    def iteration(carry, key):
        agent, env_state = carry

        # envs still marked done (only a pending_state at the very start: execute_chunk auto-resets
        # after every episode end) begin their first episode here, once per iteration
        key, k_first = jax.random.split(key)
        env_state = jax.lax.cond((env_state.done > 0).any(), lambda s: env.reset_done(s, k_first),
                                 lambda s: s, env_state)

        def step(env_state, k):
            k_act, k_reset = jax.random.split(k)
            obs = normalizer.obs(env_state.obs)
            chunk, extras = agent.act(obs, k_act)
            env_state, steps = execute_chunk(env, env_state, normalizer.unnormalize_action(chunk),
                                             action_steps, k_reset)
            tr = chunk_transition(steps, discount)
            record = {"obs": obs, "reward": tr["reward_sum"], "discount": tr["discount"], "done": tr["done"],
                      "next_obs": normalizer.obs(tr["next_obs"]), **extras}
            ended = steps["episode_end"]
            stats = {"episodes": ended.sum(), "successes": steps["episode_success"].sum(),
                     "return_sum": jnp.where(ended, steps["episode_return"], 0.0).sum(),
                     "length_sum": jnp.where(ended, steps["episode_length"], 0).sum(),
                     "env_steps": steps["valid"].sum()}
            return env_state, (record, stats)

        env_state, (rollout, stats) = jax.lax.scan(step, env_state, jax.random.split(key, rollout_length))
        agent, info = agent.update(rollout, shard_batch=shard_batch)
        return (agent, env_state), {**info, **jax.tree.map(jnp.sum, stats)}

    def fn(agent, env_state, key):
        (agent, env_state), metrics = jax.lax.scan(iteration, (agent, env_state), jax.random.split(key, num_iters))
        sums = ("episodes", "successes", "return_sum", "length_sum", "env_steps")
        return agent, env_state, {k: v.sum() if k in sums else v.mean() for k, v in metrics.items()}

    return _jit(fn, (0,), (0, 0, 0), vmap_seeds)


def make_evaluate(env: VecEnv, normalizer: Normalizer, action_steps: int, discount: float = 1.0,
                  vmap_seeds: bool = False, temporal_ensemble: float | None = None,
                  fixed_noise: bool = False) -> Callable:
    """``fn(agent, key) -> dict`` of ``[num_eval_episodes]`` arrays, one episode per env.

    Fields: ``success``, ``return``, ``length``, ``mode`` (the task's mode
    of each episode, -1 undecided), ``discounted_return`` (the
    Monte-Carlo value of the start state, ``sum_t gamma^t r_t``) and, for an
    agent with a critic (an ``agent.critic``, :class:`agents.critic.Critic`,
    scored on normalised inputs), ``q_start``: the critic's value of the chunk
    it chose at the start state. ``q_start - discounted_return`` averaged over
    episodes is the critic's bias on the states and chunks the policy visits
    (over-estimation when positive). ``vmap_seeds``: agent, key and outputs
    carry a leading seed axis. ``temporal_ensemble = m``: ACT's execution
    (a query every step, overlapping chunks averaged with
    :func:`envs.chunk.ensemble_weights`) instead of ``action_steps`` per chunk.
    ``fixed_noise``: the sampler's noise is drawn once per episode (the same
    key at every query), which makes the policy a deterministic map from
    observation to chunk (``benchmarks/temporal_ensemble.py --fixed_noise``).
    """

    def fn(agent, key):
        k_fixed = jax.random.fold_in(key, 7)

        def policy(obs, k):
            k = k_fixed if fixed_noise else k
            return normalizer.unnormalize_action(agent.sample_actions(normalizer.obs(obs), k))

        out = rollout_episodes(env, policy, key, action_steps, discount, temporal_ensemble)
        result = {k: out[k] for k in ("success", "return", "length", "discounted_return", "mode")}
        if hasattr(agent, "critic"):
            result["q_start"] = agent.critic.value(normalizer.obs(out["obs"][0]),
                                                   normalizer.action(out["first_chunk"]))
        return result

    return _jit(fn, (), (0, 0), vmap_seeds)

"""Receding-horizon execution of action chunks, and whole-episode rollouts.

A chunked policy predicts ``H`` actions; :func:`execute_chunk` runs the first
``h = action_steps`` of them in ``N`` environments with one ``lax.scan``.
An environment whose episode ends inside the chunk is frozen for the rest of
it (its remaining actions are not executed, and the steps are marked
``valid = False``): a chunk is cut at the episode end and never stitched to
the next episode. Ended environments are reset after the chunk.

The per-step output is what the replay buffer stores; the chunk transition
(``sum_k gamma^k r_{t+k}``, ``gamma^{h_executed} (1 - terminated)``) is
computed from it by :func:`replay.chunks.chunk_transition`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from envs.wrappers import VecEnv, select


def execute_chunk(env: VecEnv, state, chunk: jax.Array, action_steps: int,
                  key: jax.Array | None = None):
    """Executes ``chunk[:, :action_steps]`` in every env.

    Args:
      env: the batched env (N envs).
      state: batched State; every env must be mid-episode (``done == 0``),
        which holds after :meth:`VecEnv.reset` or :meth:`VecEnv.reset_done`.
      chunk: ``[N, H, A]`` actions in the env's units.
      action_steps: ``h <= H`` actions executed (static int).
      key: PRNG key for auto-resetting ended envs after the chunk; ``None``
        leaves them ended (evaluation).

    Returns:
      ``(state, steps)``: ``steps`` holds ``[N, h, ...]`` arrays ``obs``,
      ``action``, ``reward``, ``next_obs``, ``terminated``, ``truncated``,
      ``valid`` (False after the episode ended inside the chunk) and
      ``success``; plus ``episode_end`` (bool ``[N]``, an episode ended in this
      chunk) with ``episode_return``, ``episode_length`` and
      ``episode_success`` (``[N]``) of that episode.

    Raises:
      ValueError: if ``chunk`` is not ``[N, H, A]`` or ``action_steps > H``.
    """
    if chunk.ndim != 3 or chunk.shape[0] != env.num_envs or chunk.shape[2] != env.action_size:
        raise ValueError(f"chunk must be [num_envs={env.num_envs}, H, action_size={env.action_size}],"
                         f" got {chunk.shape}")
    if not 1 <= action_steps <= chunk.shape[1]:
        raise ValueError(f"action_steps must be in [1, horizon={chunk.shape[1]}], got {action_steps}")

    def body(state, action):
        active = state.done == 0
        nxt = select(active, env.step(state, action), state)
        step = {
            "obs": state.obs, "action": action, "reward": nxt.reward * active,
            "next_obs": nxt.obs, "terminated": nxt.info["terminated"] & active,
            "truncated": nxt.info["truncated"] & active, "valid": active,
            "success": nxt.info["success"] & active,
        }
        return nxt, step

    state, steps = jax.lax.scan(body, state, jnp.swapaxes(chunk[:, :action_steps], 0, 1))
    steps = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), steps)
    ended = state.done > 0
    steps.update(episode_end=ended, episode_return=state.info["episode_return"],
                 episode_length=state.info["steps"], episode_success=state.info["success"] & ended)
    if key is not None:
        state = env.reset_done(state, key)
    return state, steps


def ensemble_weights(ages: jax.Array, valid: jax.Array, decay: float) -> jax.Array:
    """ACT's temporal-ensembling weights (Zhao et al. 2023, arXiv:2304.13705, Sec. 3.3).

    The chunks predicted ``ages`` steps ago all hold an action for the
    current step. ACT weighs them ``w_i = exp(-m i)`` with ``i = 0`` the
    *oldest* prediction, normalised; as ``i = oldest_age - age``, that is
    ``w ∝ exp(m * age)`` over the valid ones (``m = decay``; 0: the plain mean).

    Args:
      ages: ``[H]`` int ages (steps since each chunk was predicted, 0 = now).
      valid: ``[N, H]`` bool, which of them exist (predicted in this episode).
      decay: ``m >= 0``.

    Returns:
      ``[N, H]`` float32 weights summing to 1 over the valid ages (zero elsewhere).
    """
    logits = jnp.where(valid, decay * ages.astype(jnp.float32), -jnp.inf)
    return jax.nn.softmax(logits, axis=-1)


def ensemble_action(past: jax.Array, steps: jax.Array, decay: float) -> jax.Array:
    """The temporally ensembled action for now, ``[N, A]``.

    Args:
      past: ``[N, H, H, A]``, ``past[:, a]`` the chunk predicted ``a`` steps
        ago (``a = 0``: this step's); its action for now is ``past[:, a, a]``.
      steps: ``[N]`` int, steps taken in the episode so far (chunks older than
        that belong to no prediction of this episode and are ignored).
      decay: ACT's ``m`` (:func:`ensemble_weights`).
    """
    ages = jnp.arange(past.shape[1])
    weights = ensemble_weights(ages, ages[None] <= steps[:, None], decay)      # [N, H]
    return jnp.einsum("na,naj->nj", weights, past[:, ages, ages])


def rollout_episodes(env: VecEnv, policy: Callable[[jax.Array, jax.Array], jax.Array],
                     key: jax.Array, action_steps: int, discount: float = 1.0,
                     temporal_ensemble: float | None = None) -> dict:
    """Runs exactly one episode in each of the N envs with a chunked policy.

    With ``temporal_ensemble = m`` (ACT's execution; ``action_steps`` is then
    unused) the policy is queried at *every* step and the action executed is
    the :func:`ensemble_weights` average of the actions that the last ``H``
    chunks of this episode predicted for that step.

    Args:
      env: batched env; N is the number of evaluation episodes.
      policy: ``policy(obs [N, O], key) -> chunk [N, H, A]`` (jittable).
      key: PRNG key.
      action_steps: actions executed per chunk (receding horizon).
      discount: per-step gamma of ``discounted_return``.

    Returns:
      dict of ``[N]`` arrays: ``success`` (bool), ``return`` (float32),
      ``discounted_return`` (``sum_t gamma^t r_t`` from the first step, the
      Monte-Carlo value of the start state under the policy), ``length``
      (int32 control steps), ``mode`` (int32, the task's classification of
      the episode, ``state.info['mode']``: -1 while undecided); ``obs`` ``[T+1, N, O]`` with the observation
      before each chunk (for plots; ``T`` chunks) and ``first_chunk``
      ``[N, H, A]``, the chunk chosen at the start state (env units).
    """
    if temporal_ensemble is not None:
        return _rollout_ensembled(env, policy, key, float(temporal_ensemble), discount)
    num_chunks = -(-env.episode_length // action_steps)
    k_reset, k_loop = jax.random.split(key)
    state = env.reset(k_reset)
    powers = discount ** jnp.arange(action_steps, dtype=jnp.float32)

    def body(carry, k):
        state, disc_return, scale = carry
        chunk = policy(state.obs, k)
        new, steps = execute_chunk(env, state, chunk, action_steps)  # ended envs stay frozen
        disc_return = disc_return + scale * (steps["reward"] * powers).sum(axis=1)
        return (new, disc_return, scale * discount**action_steps), (state.obs, chunk)

    zeros = jnp.zeros(env.num_envs, jnp.float32)
    (state, disc_return, _), (obs_seq, chunks) = jax.lax.scan(
        body, (state, zeros, jnp.ones((), jnp.float32)), jax.random.split(k_loop, num_chunks))
    obs_seq = jnp.concatenate([obs_seq, state.obs[None]], axis=0)
    return {"success": state.info["success"], "return": state.info["episode_return"],
            "discounted_return": disc_return, "length": state.info["steps"], "mode": state.info["mode"],
            "obs": obs_seq,
            "first_chunk": chunks[0]}


def _rollout_ensembled(env: VecEnv, policy, key: jax.Array, decay: float, discount: float) -> dict:
    """:func:`rollout_episodes` with temporal ensembling: one policy query and one env step per scan step."""
    k_reset, k_loop = jax.random.split(key)
    state = env.reset(k_reset)
    chunk_shape = jax.eval_shape(policy, state.obs, k_loop)                 # [N, H, A]
    horizon = chunk_shape.shape[1]
    # past[:, a] is the chunk predicted a steps ago; its action for now is past[:, a, a]
    past = jnp.zeros((env.num_envs, horizon) + chunk_shape.shape[1:], chunk_shape.dtype)

    def body(carry, xs):
        state, past, first, disc_return, scale = carry
        k, t = xs
        chunk = policy(state.obs, k)
        first = jnp.where(t == 0, chunk, first)                             # the first query's chunk, kept
        past = jnp.concatenate([chunk[:, None], past[:, :-1]], axis=1)
        action = ensemble_action(past, state.info["steps"], decay)
        new, steps = execute_chunk(env, state, action[:, None], 1)
        disc_return = disc_return + scale * steps["reward"][:, 0]
        return (new, past, first, disc_return, scale * discount), state.obs

    keys = jax.random.split(k_loop, env.episode_length)
    zeros = jnp.zeros(env.num_envs, jnp.float32)
    first = jnp.zeros(chunk_shape.shape, chunk_shape.dtype)
    (state, _, first_chunk, disc_return, _), obs_seq = jax.lax.scan(
        body, (state, past, first, zeros, jnp.ones((), jnp.float32)), (keys, jnp.arange(env.episode_length)))
    obs_seq = jnp.concatenate([obs_seq, state.obs[None]], axis=0)
    return {"success": state.info["success"], "return": state.info["episode_return"],
            "discounted_return": disc_return, "length": state.info["steps"], "mode": state.info["mode"],
            "obs": obs_seq, "first_chunk": first_chunk}

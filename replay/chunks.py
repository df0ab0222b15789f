"""Turn h consecutive environment steps into one action-chunk transition.

Q-chunking (Li, Zhou & Levine 2025, "Reinforcement Learning with Action
Chunking", arXiv:2507.07969) trains a critic on whole action chunks,
Q(s_t, a_{t:t+h}), with the h-step TD target

    y = sum_{k<n} gamma^k r_{t+k} + gamma^n (1 - term) Q(s_{t+n}, a'),

where normally n = h. A chunk is never stitched across an episode boundary:
if the episode ends on step j < h of the chunk, the chunk is *cut* there, so
n = j + 1, the bootstrap state is the ``next_obs`` of step j, and ``term`` is
the ``terminated`` flag of step j (a time-limit ``truncated`` end still
bootstraps). :func:`chunk_transition` computes every ingredient of this
target except Q itself.
"""

from __future__ import annotations

import jax.numpy as jnp

REQUIRED_STEP_FIELDS = (
    "obs",
    "action",
    "reward",
    "next_obs",
    "terminated",
    "truncated",
    "valid",
)


def _check_steps(steps: dict) -> tuple[tuple[int, ...], int]:
    """Validates field presence and leading shapes; returns (batch_shape, h)."""
    missing = [k for k in REQUIRED_STEP_FIELDS if k not in steps]
    if missing:
        raise ValueError(f"chunk_transition: missing step field(s) {missing}")
    ref = tuple(steps["reward"].shape)
    if len(ref) < 1:
        raise ValueError(
            f"chunk_transition: field 'reward' must have shape [..., h], got {ref}"
        )
    h = ref[-1]
    if h < 1:
        raise ValueError(f"chunk_transition: chunk length h must be >= 1, got {h}")
    for name in ("terminated", "truncated", "valid"):
        if tuple(steps[name].shape) != ref:
            raise ValueError(
                f"chunk_transition: field '{name}' has shape "
                f"{tuple(steps[name].shape)}, expected {ref} (same as 'reward')"
            )
    for name in ("obs", "action", "next_obs"):
        shape = tuple(steps[name].shape)
        if shape[: len(ref)] != ref or len(shape) <= len(ref):
            raise ValueError(
                f"chunk_transition: field '{name}' has shape {shape}, expected "
                f"{ref} + feature dims"
            )
    if tuple(steps["obs"].shape) != tuple(steps["next_obs"].shape):
        raise ValueError(
            "chunk_transition: field 'next_obs' has shape "
            f"{tuple(steps['next_obs'].shape)}, expected obs shape "
            f"{tuple(steps['obs'].shape)}"
        )
    return ref[:-1], h


def _take_step(x, idx, axis: int):
    """x[..., idx[...], <trailing>] along `axis` (the chunk axis), squeezed."""
    index = jnp.reshape(idx, idx.shape + (1,) * (x.ndim - axis))
    return jnp.squeeze(jnp.take_along_axis(x, index, axis=axis), axis=axis)


def chunk_transition(steps: dict, discount: float) -> dict:
    """Builds chunk transitions from per-step data (Q-chunking TD target).

    Args:
      steps: per-step data of chunks with leading dims ``[..., h]``:
        ``obs [..., h, *O]``, ``action [..., h, *A]``, ``reward [..., h]``,
        ``next_obs [..., h, *O]``, ``terminated [..., h]`` (bool),
        ``truncated [..., h]`` (bool), ``valid [..., h]`` (bool; False marks
        padding steps that were never executed). Extra fields are ignored.
        ``h = reward.shape[-1]`` is static.
      discount: per-step discount gamma (float or scalar array).

    Returns:
      A dict, one chunk transition per leading index ``[...]``:

      * ``obs [..., *O]``: obs of step 0 (s_t).
      * ``actions [..., h, *A]``: the chunk a_{t:t+h}; entries after the last
        in-episode step are replaced by the last in-episode action.
      * ``step_mask [..., h]`` float32: 1 for in-episode steps (up to and
        including the step on which the episode ended), 0 after.
      * ``reward_sum [...]`` float32: ``sum_k gamma^k r_k step_mask_k``.
      * ``num_steps [...]`` int32: n = number of in-episode steps, in 1..h.
      * ``next_obs [...]``: ``next_obs`` of the last in-episode step
        (s_{t+n}, the bootstrap state).
      * ``discount [...]`` float32: ``gamma^n * (1 - terminated_last)``, i.e.
        the TD target is ``reward_sum + discount * Q(next_obs, a')``; a
        truncated (time-limit) end bootstraps, a terminated end does not
        (if both flags are set, terminated wins).
      * ``terminated [...]`` bool: terminated flag of the last in-episode step.
      * ``done [...]`` bool: the episode ended inside the chunk
        (terminated or truncated on the last in-episode step).
      * ``valid [...]`` float32: ``valid`` of step 0, the loss weight.

    Step k > 0 is in-episode iff no step j < k ended the episode
    (``terminated | truncated``) and steps 1..k are all ``valid``. A run of
    invalid steps not preceded by an episode end (malformed data) therefore
    cuts the chunk like a time limit would (bootstrap with gamma^n). Step 0
    always counts (n >= 1); its validity only sets the ``valid`` weight.

    Pure jnp; safe under ``jit`` and ``vmap``.

    Raises:
      ValueError: a required field is missing or shapes are inconsistent.
    """
    batch_shape, h = _check_steps(steps)
    axis = len(batch_shape)  # the chunk axis

    terminated = jnp.asarray(steps["terminated"]).astype(bool)
    truncated = jnp.asarray(steps["truncated"]).astype(bool)
    valid = jnp.asarray(steps["valid"]).astype(bool)
    done = terminated | truncated

    # Episode ended strictly before step k (exclusive cumulative OR).
    done_i = done.astype(jnp.int32)
    ended_before = (jnp.cumsum(done_i, axis=-1) - done_i) > 0
    # Some step in 1..k is padding (step 0 is always counted).
    not_valid = jnp.logical_not(valid).at[..., 0].set(False)
    cut_by_padding = jnp.cumsum(not_valid.astype(jnp.int32), axis=-1) > 0
    in_episode = jnp.logical_not(ended_before | cut_by_padding)  # prefix mask

    num_steps = jnp.sum(in_episode.astype(jnp.int32), axis=-1)  # in 1..h
    last = num_steps - 1

    reward = jnp.asarray(steps["reward"])
    rdtype = jnp.promote_types(reward.dtype, jnp.float32)
    gamma = jnp.asarray(discount, dtype=rdtype)
    step_mask = in_episode.astype(jnp.float32)
    powers = gamma ** jnp.arange(h, dtype=rdtype)
    reward_sum = jnp.sum(powers * reward.astype(rdtype) * step_mask, axis=-1)

    # Actions: index min(k, last) along the chunk axis.
    action = jnp.asarray(steps["action"])
    act_idx = jnp.minimum(jnp.arange(h, dtype=jnp.int32), last[..., None])
    act_idx = jnp.reshape(act_idx, act_idx.shape + (1,) * (action.ndim - axis - 1))
    actions = jnp.take_along_axis(action, act_idx, axis=axis)

    term_last = _take_step(terminated, last, axis)
    done_last = _take_step(done, last, axis)
    next_obs = _take_step(jnp.asarray(steps["next_obs"]), last, axis)
    disc = (gamma ** num_steps.astype(rdtype)) * (1.0 - term_last.astype(rdtype))

    obs0 = jnp.take(jnp.asarray(steps["obs"]), 0, axis=axis)
    valid0 = jnp.take(valid, 0, axis=axis)

    return {
        "obs": obs0,
        "actions": actions,
        "step_mask": step_mask,
        "reward_sum": reward_sum.astype(jnp.float32),
        "num_steps": num_steps.astype(jnp.int32),
        "next_obs": next_obs,
        "discount": disc.astype(jnp.float32),
        "terminated": term_last,
        "done": done_last,
        "valid": valid0.astype(jnp.float32),
    }


def training_batch(steps: dict, action_steps: int, discount: float) -> dict:
    """A training batch for chunked agents from ``[B, H]`` sampled steps.

    The behaviour-cloning target is the whole predicted chunk of ``H`` actions;
    the critic sees only the executed prefix of ``h = action_steps`` actions
    and the TD ingredients over those ``h`` steps.

    Args:
      steps: ``[B, H, ...]`` step fields (see :func:`chunk_transition`).
      action_steps: ``h <= H`` (static).
      discount: per-step gamma.

    Returns:
      ``obs [B, O]``, ``actions [B, H, A]`` (padded after an episode end with
      the last in-episode action, as Diffusion Policy pads), ``valid [B]``,
      and for the critic ``critic_actions [B, h, A]``, ``reward_sum [B]``,
      ``discount [B]``, ``next_obs [B, O]``, ``terminated [B]``.

    Raises:
      ValueError: ``action_steps`` outside ``[1, H]``.
    """
    horizon = steps["reward"].shape[-1]
    if not 1 <= action_steps <= horizon:
        raise ValueError(f"agent.action_steps must be in [1, horizon={horizon}], got {action_steps}")
    full = chunk_transition(steps, discount)
    executed = full if action_steps == horizon else chunk_transition(
        {k: v[:, :action_steps] for k, v in steps.items()}, discount)
    return {"obs": full["obs"], "actions": full["actions"], "valid": full["valid"],
            "critic_actions": executed["actions"], "reward_sum": executed["reward_sum"],
            "discount": executed["discount"], "next_obs": executed["next_obs"],
            "terminated": executed["terminated"]}

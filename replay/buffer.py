"""Device-resident functional ring buffer of environment steps.

The buffer stores *single steps* in ``S`` parallel streams (one per
vectorized environment) and samples action-chunk transitions of any length
``h`` at sampling time via :func:`replay.chunks.chunk_transition`, so the
same buffer serves any ``action_steps`` setting.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from replay.chunks import REQUIRED_STEP_FIELDS, chunk_transition

_BOOL_FIELDS = ("terminated", "truncated", "valid")
_SCALAR_FIELDS = ("reward", "terminated", "truncated", "valid")


def _dtype_of(x) -> np.dtype:
    """The dtype `x` would be stored with, without silent conversions."""
    if hasattr(x, "dtype"):
        return np.dtype(x.dtype)
    return np.dtype(jnp.asarray(x).dtype)


def _check_fields(steps: dict, where: str) -> None:
    missing = [k for k in REQUIRED_STEP_FIELDS if k not in steps]
    extra = [k for k in steps if k not in REQUIRED_STEP_FIELDS]
    if missing:
        raise ValueError(f"{where}: missing step field(s) {missing}")
    if extra:
        raise ValueError(
            f"{where}: unknown step field(s) {extra}; the buffer stores exactly "
            f"{list(REQUIRED_STEP_FIELDS)}"
        )


def _check_step_spec(spec: dict, where: str) -> None:
    """Per-step (no leading dims) shape/dtype rules."""
    for name in _SCALAR_FIELDS:
        if tuple(spec[name].shape) != ():
            raise ValueError(
                f"{where}: field '{name}' must be a scalar per step, got shape "
                f"{tuple(spec[name].shape)}"
            )
    for name in _BOOL_FIELDS:
        if _dtype_of(spec[name]) != np.dtype(bool):
            raise ValueError(
                f"{where}: field '{name}' must be bool, got {_dtype_of(spec[name])}"
            )
    if tuple(spec["obs"].shape) != tuple(spec["next_obs"].shape) or _dtype_of(
        spec["obs"]
    ) != _dtype_of(spec["next_obs"]):
        raise ValueError(
            f"{where}: field 'next_obs' ({tuple(spec['next_obs'].shape)}, "
            f"{_dtype_of(spec['next_obs'])}) must match 'obs' "
            f"({tuple(spec['obs'].shape)}, {_dtype_of(spec['obs'])})"
        )


@flax.struct.dataclass
class ReplayBuffer:
    """Functional ring buffer of steps in ``S`` streams of ``T`` steps each.

    Fields of ``data`` (each ``[S, T, ...]``): ``obs [S, T, *O]``,
    ``action [S, T, *A]``, ``reward [S, T]``, ``next_obs [S, T, *O]``,
    ``terminated``/``truncated``/``valid [S, T]`` (bool). Step ``t`` of stream
    ``s`` is the transition (obs, action) -> (reward, next_obs) of env ``s``;
    consecutive positions of a stream are consecutive env steps, episode ends
    are marked by ``terminated | truncated`` (the next position starts the next
    episode), ``valid=False`` marks padding that was never executed.

    All streams share one write pointer: ``ptr`` (int32 scalar) is the next
    write position along ``T``, ``size`` (int32 scalar, <= T) the number of
    steps written per stream. Chronological order of stream ``s`` is
    positions ``(ptr - size) % T, ..., (ptr - 1) % T``.

    Memory per stored step (bytes, exact):
    ``2 * prod(O) * obs_itemsize + prod(A) * action_itemsize
    + reward_itemsize + 3`` -- e.g. ``8*O + 4*A + 7`` for float32 obs,
    action and reward. ``next_obs`` is stored explicitly (it differs from the
    following ``obs`` at episode ends), doubling the observation cost. Total
    is ``capacity`` times that; see :meth:`memory_bytes`.

    The object is a pytree (``ptr``/``size`` are traced leaves, array shapes
    are static), so pass it *into* jitted functions; ``add`` returns a new
    buffer. Use ``jax.jit(..., donate_argnums=...)`` on the buffer argument to
    let XLA update the storage in place instead of copying it.
    """

    data: dict
    ptr: jax.Array
    size: jax.Array

    # ------------------------------------------------------------------ build
    @classmethod
    def create(
        cls, example_step: dict, *, capacity: int, num_streams: int
    ) -> "ReplayBuffer":
        """Allocates an empty buffer (zeros; ``valid`` all False).

        Args:
          example_step: one step with no leading dims, arrays or
            ``jax.ShapeDtypeStruct`` per required field (values unused).
          capacity: total capacity in STEPS over all streams; must be a
            positive multiple of ``num_streams``. ``T = capacity // num_streams``.
          num_streams: ``S``, number of parallel streams (envs), >= 1.

        Raises:
          ValueError: bad ``capacity``/``num_streams``, missing/unknown fields,
            non-scalar reward/flags, non-bool flags, obs/next_obs mismatch.
        """
        num_streams = int(num_streams)
        capacity = int(capacity)
        if num_streams < 1:
            raise ValueError(f"num_streams must be >= 1, got {num_streams}")
        if capacity < num_streams or capacity % num_streams != 0:
            raise ValueError(
                f"capacity={capacity} must be a positive multiple of "
                f"num_streams={num_streams} (capacity is in steps over all "
                f"streams; steps per stream T = capacity // num_streams >= 1)"
            )
        _check_fields(example_step, "ReplayBuffer.create")
        example_step = {
            k: v if hasattr(v, "shape") and hasattr(v, "dtype") else jnp.asarray(v)
            for k, v in example_step.items()
        }
        _check_step_spec(example_step, "ReplayBuffer.create")
        T = capacity // num_streams
        data = {
            k: jnp.zeros(
                (num_streams, T) + tuple(example_step[k].shape),
                dtype=_dtype_of(example_step[k]),
            )
            for k in REQUIRED_STEP_FIELDS
        }
        return cls(data=data, ptr=jnp.int32(0), size=jnp.int32(0))

    @classmethod
    def from_steps(cls, steps: dict) -> "ReplayBuffer":
        """A full single-stream buffer (S=1, T=N) holding ``steps`` in order.

        Args:
          steps: flat steps ``[N, ...]``, e.g. an offline dataset of
            concatenated episodes (each episode's last step has
            ``terminated | truncated`` set). ``valid`` may be omitted (=> all
            True). ``terminated``/``truncated``/``valid`` are cast to bool.
            A final episode without an end flag is treated as continuing
            (chunks near the end of the data are simply never sampled).

        Returns:
          Buffer with ``ptr = 0`` and ``size = N``: chronological order is
          position 0..N-1, so chunks never wrap from the last to the first step.

        Raises:
          ValueError: missing/unknown fields or inconsistent ``N``.
        """
        steps = dict(steps)
        if "reward" not in steps:
            raise ValueError("ReplayBuffer.from_steps: missing step field ['reward']")
        reward = jnp.asarray(steps["reward"])
        if reward.ndim != 1 or reward.shape[0] < 1:
            raise ValueError(
                "ReplayBuffer.from_steps: field 'reward' must have shape [N] with "
                f"N >= 1, got {reward.shape}"
            )
        n = reward.shape[0]
        if "valid" not in steps:
            steps["valid"] = jnp.ones((n,), dtype=bool)
        _check_fields(steps, "ReplayBuffer.from_steps")
        data = {}
        for k in REQUIRED_STEP_FIELDS:
            x = jnp.asarray(steps[k])
            if k in _BOOL_FIELDS:
                x = x.astype(bool)
            if x.ndim < 1 or x.shape[0] != n:
                raise ValueError(
                    f"ReplayBuffer.from_steps: field '{k}' has shape {x.shape}, "
                    f"expected leading dim N={n} (from 'reward')"
                )
            data[k] = x[None]
        spec = {k: jax.ShapeDtypeStruct(v.shape[2:], v.dtype) for k, v in data.items()}
        _check_step_spec(spec, "ReplayBuffer.from_steps")
        return cls(data=data, ptr=jnp.int32(0), size=jnp.int32(n))

    # ------------------------------------------------------------ properties
    @property
    def num_streams(self) -> int:
        """S (static)."""
        return int(self.data["reward"].shape[0])

    @property
    def steps_per_stream(self) -> int:
        """T (static)."""
        return int(self.data["reward"].shape[1])

    @property
    def capacity(self) -> int:
        """Total capacity in steps, S * T (static)."""
        return self.num_streams * self.steps_per_stream

    def memory_bytes(self) -> int:
        """Exact bytes held by ``data`` (excludes the two int32 scalars)."""
        return int(
            sum(
                math.prod(x.shape) * np.dtype(x.dtype).itemsize
                for x in jax.tree_util.tree_leaves(self.data)
            )
        )

    # ------------------------------------------------------------------- add
    def add(self, steps: dict) -> "ReplayBuffer":
        """Writes ``L`` steps to every stream at ``ptr .. ptr+L-1 (mod T)``.

        Args:
          steps: dict of the required fields, each ``[S, L, ...]`` with the
            buffer's per-step shape and exactly its dtype; ``L`` (static) in
            ``1..T``. Oldest data is overwritten once the stream is full.

        Returns:
          New buffer with ``ptr = (ptr + L) % T``, ``size = min(size + L, T)``.
          Pure; jit-safe; retraces only if shapes/dtypes change.

        Raises:
          ValueError (at trace time): missing/unknown field, or a field whose
          stream count, per-step shape, ``L`` or dtype does not match.
        """
        where = "ReplayBuffer.add"
        _check_fields(steps, where)
        S, T = self.num_streams, self.steps_per_stream
        L = None
        for k in REQUIRED_STEP_FIELDS:
            x, buf = steps[k], self.data[k]
            shape = tuple(np.shape(x))
            if len(shape) < 2 or shape[0] != S:
                raise ValueError(
                    f"{where}: field '{k}' has shape {shape}; expected "
                    f"[S={S}, L, *{tuple(buf.shape[2:])}] (stream count mismatch)"
                )
            if L is None:
                L = shape[1]
                if not 1 <= L <= T:
                    raise ValueError(
                        f"{where}: field '{k}' has L={L} steps; need 1 <= L <= T={T}"
                    )
            if shape[1] != L or shape[2:] != tuple(buf.shape[2:]):
                raise ValueError(
                    f"{where}: field '{k}' has shape {shape}; expected "
                    f"{(S, L) + tuple(buf.shape[2:])}"
                )
            if _dtype_of(x) != np.dtype(buf.dtype):
                raise ValueError(
                    f"{where}: field '{k}' has dtype {_dtype_of(x)}; buffer stores "
                    f"{np.dtype(buf.dtype)}"
                )
        ptr = jnp.asarray(self.ptr, jnp.int32)
        size = jnp.asarray(self.size, jnp.int32)
        idx = (ptr + jnp.arange(L, dtype=jnp.int32)) % T  # L <= T: unique
        data = {
            k: self.data[k].at[:, idx].set(jnp.asarray(steps[k]), unique_indices=True)
            for k in REQUIRED_STEP_FIELDS
        }
        return self.replace(
            data=data,
            ptr=((ptr + L) % T).astype(jnp.int32),
            size=jnp.minimum(size + L, T).astype(jnp.int32),
        )

    # ---------------------------------------------------------------- sample
    def sample_steps(self, key, batch_size: int, chunk_len: int):
        """Gathers raw chunks of steps.

        Returns ``(steps, ok)``: ``steps`` has fields ``[B, h, ...]`` and
        ``ok`` (bool scalar) is False when ``size < chunk_len`` (then the
        gathered data is meaningless and ``valid`` is forced to False).
        Starts are uniform over (stream, chronological start i) with
        ``0 <= i <= size - h``, so a chunk lies inside the written region
        and never straddles the write pointer.
        """
        batch_size, h = int(batch_size), int(chunk_len)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if h < 1:
            raise ValueError(f"chunk_len must be >= 1, got {h}")
        S, T = self.num_streams, self.steps_per_stream
        ptr = jnp.asarray(self.ptr, jnp.int32)
        size = jnp.asarray(self.size, jnp.int32)
        num_starts = size - h + 1  # per stream
        ok = num_starts > 0
        k_stream, k_start = jax.random.split(key)
        stream = jax.random.randint(k_stream, (batch_size,), 0, S, dtype=jnp.int32)
        start = jax.random.randint(
            k_start, (batch_size,), 0, jnp.maximum(num_starts, 1), dtype=jnp.int32
        )
        oldest = (ptr - size) % T
        pos = (oldest + start[:, None] + jnp.arange(h, dtype=jnp.int32)) % T  # [B, h]
        steps = {k: v[stream[:, None], pos] for k, v in self.data.items()}
        steps["valid"] = steps["valid"] & ok
        return steps, ok

    def sample(self, key, batch_size: int, chunk_len: int, discount: float) -> dict:
        """Samples ``batch_size`` chunk transitions of length ``h = chunk_len``.

        Args:
          key: PRNG key.
          batch_size: B (static).
          chunk_len: h (static), number of steps per chunk.
          discount: per-step gamma.

        Returns:
          ``chunk_transition`` output with leading dim ``[B]`` (``obs [B, *O]``,
          ``actions [B, h, *A]``, ``step_mask [B, h]``, ``reward_sum``,
          ``num_steps``, ``next_obs``, ``discount``, ``terminated``, ``done``,
          ``valid`` ``[B]``). Chunks crossing an episode end are cut there
          (see ``chunk_transition``). If ``size < chunk_len``, ``valid`` is 0
          for every row. Note the newest ``h - 1`` steps of each stream are
          not yet usable as chunk starts.
        """
        steps, _ = self.sample_steps(key, batch_size, chunk_len)
        return chunk_transition(steps, discount)


def sample_mixed_steps(
    offline: ReplayBuffer,
    online: ReplayBuffer,
    key,
    batch_size: int,
    chunk_len: int,
    offline_ratio: float,
) -> dict:
    """Raw ``[B, h]`` steps mixing an offline and an online buffer.

    ``n_off = round(batch_size * offline_ratio)`` rows (Python ``round``,
    static) come from ``offline`` and are placed FIRST, the remaining
    ``batch_size - n_off`` from ``online``; a buffer contributing 0 rows is not
    touched. Both buffers must store the same per-step shapes and dtypes.

    Raises:
      ValueError: ``offline_ratio`` outside [0, 1] (or NaN), or mismatched
        buffer layouts.
    """
    ratio = float(offline_ratio)
    if not 0.0 <= ratio <= 1.0:  # also rejects NaN
        raise ValueError(f"offline_ratio must be in [0, 1], got {offline_ratio}")
    batch_size = int(batch_size)
    n_off = int(round(batch_size * ratio))
    n_on = batch_size - n_off
    if n_off > 0 and n_on > 0:
        for k in REQUIRED_STEP_FIELDS:
            a, b = offline.data[k], online.data[k]
            if a.shape[2:] != b.shape[2:] or a.dtype != b.dtype:
                raise ValueError(
                    f"sample_mixed: field '{k}' differs between buffers: offline "
                    f"{a.shape[2:]} {a.dtype} vs online {b.shape[2:]} {b.dtype}"
                )
    k_off, k_on = jax.random.split(key)
    parts = []
    if n_off > 0:
        parts.append(offline.sample_steps(k_off, n_off, chunk_len)[0])
    if n_on > 0:
        parts.append(online.sample_steps(k_on, n_on, chunk_len)[0])
    if len(parts) == 1:
        return parts[0]
    return jax.tree_util.tree_map(
        lambda a, b: jnp.concatenate([a, b], axis=0), parts[0], parts[1]
    )


def sample_mixed(
    offline: ReplayBuffer,
    online: ReplayBuffer,
    key,
    batch_size: int,
    chunk_len: int,
    discount: float,
    offline_ratio: float,
) -> dict:
    """Chunk transitions mixing two buffers: :func:`sample_mixed_steps` then ``chunk_transition``.

    Returns ``chunk_transition`` output with leading dim ``[batch_size]``.

    Raises:
      ValueError: as :func:`sample_mixed_steps`.
    """
    steps = sample_mixed_steps(offline, online, key, batch_size, chunk_len, offline_ratio)
    return chunk_transition(steps, discount)

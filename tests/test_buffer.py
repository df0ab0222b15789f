"""Tests for replay/chunks.py and replay/buffer.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replay.buffer import ReplayBuffer, sample_mixed
from replay.chunks import chunk_transition

GAMMA = 0.9


# --------------------------------------------------------------------- helpers
def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _example_step(obs_dim=2, act_dim=2):
    return {
        "obs": jax.ShapeDtypeStruct((obs_dim,), jnp.float32),
        "action": jax.ShapeDtypeStruct((act_dim,), jnp.float32),
        "reward": jax.ShapeDtypeStruct((), jnp.float32),
        "next_obs": jax.ShapeDtypeStruct((obs_dim,), jnp.float32),
        "terminated": jax.ShapeDtypeStruct((), jnp.bool_),
        "truncated": jax.ShapeDtypeStruct((), jnp.bool_),
        "valid": jax.ShapeDtypeStruct((), jnp.bool_),
    }


def _reference_chunk(flat, g, h, gamma):
    """Plain-Python reference for the chunk starting at flat index g."""
    n, rsum = 0, 0.0
    for k in range(h):
        i = g + k
        if k > 0 and not flat["valid"][i]:
            break
        rsum += gamma**k * float(flat["reward"][i])
        n += 1
        if flat["terminated"][i] or flat["truncated"][i]:
            break
    last = g + n - 1
    term = bool(flat["terminated"][last])
    done = term or bool(flat["truncated"][last])
    return {
        "num_steps": n,
        "reward_sum": rsum,
        "discount": 0.0 if term else gamma**n,
        "next_obs": flat["next_obs"][last],
        "terminated": term,
        "done": done,
        "step_mask": np.array([1.0] * n + [0.0] * (h - n)),
        "actions": np.stack(
            [flat["action"][g + min(k, n - 1)] for k in range(h)], axis=0
        ),
    }


# ------------------------------------------------------------ 1. hand example
def _hand_steps():
    h = 4
    obs = np.arange(h * 2, dtype=np.float32).reshape(h, 2)
    nobs = obs + 100.0
    act = (np.arange(h * 2, dtype=np.float32).reshape(h, 2) + 1) * -1.0
    rew = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    f = np.zeros(h, bool)
    cases = []
    cases.append(dict(terminated=f.copy(), truncated=f.copy()))  # (a)
    t = f.copy(); t[1] = True
    cases.append(dict(terminated=t, truncated=f.copy()))  # (b)
    tr = f.copy(); tr[2] = True
    cases.append(dict(terminated=f.copy(), truncated=tr))  # (c)
    steps = {
        "obs": np.stack([obs] * 3),
        "action": np.stack([act] * 3),
        "reward": np.stack([rew] * 3),
        "next_obs": np.stack([nobs] * 3),
        "terminated": np.stack([c["terminated"] for c in cases]),
        "truncated": np.stack([c["truncated"] for c in cases]),
        "valid": np.ones((3, h), bool),
    }
    return steps, obs, nobs, act


def test_chunk_transition_hand_computed():
    steps, obs, nobs, act = _hand_steps()
    out = _np(jax.jit(chunk_transition, static_argnums=1)(steps, GAMMA))
    # (a) no episode end
    np.testing.assert_allclose(out["reward_sum"][0], 1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 4, rtol=1e-6)
    np.testing.assert_allclose(out["discount"][0], 0.9**4, rtol=1e-6)
    assert out["num_steps"][0] == 4 and not out["done"][0]
    np.testing.assert_array_equal(out["next_obs"][0], nobs[3])
    np.testing.assert_array_equal(out["actions"][0], act)
    np.testing.assert_array_equal(out["step_mask"][0], [1, 1, 1, 1])
    # (b) terminated at step 1
    np.testing.assert_allclose(out["reward_sum"][1], 1 + 0.9 * 2, rtol=1e-6)
    assert out["discount"][1] == 0.0
    np.testing.assert_array_equal(out["step_mask"][1], [1, 1, 0, 0])
    np.testing.assert_array_equal(out["next_obs"][1], nobs[1])
    np.testing.assert_array_equal(out["actions"][1][:2], act[:2])
    np.testing.assert_array_equal(out["actions"][1][2:], np.stack([act[1], act[1]]))
    assert out["num_steps"][1] == 2 and out["terminated"][1] and out["done"][1]
    # (c) truncated at step 2: bootstrap
    np.testing.assert_allclose(out["reward_sum"][2], 1 + 0.9 * 2 + 0.81 * 3, rtol=1e-6)
    np.testing.assert_allclose(out["discount"][2], 0.9**3, rtol=1e-6)
    np.testing.assert_array_equal(out["next_obs"][2], nobs[2])
    np.testing.assert_array_equal(out["step_mask"][2], [1, 1, 1, 0])
    assert out["num_steps"][2] == 3 and not out["terminated"][2] and out["done"][2]
    # common
    np.testing.assert_array_equal(out["obs"], np.stack([obs[0]] * 3))
    np.testing.assert_array_equal(out["valid"], [1.0, 1.0, 1.0])
    assert out["num_steps"].dtype == np.int32 and out["step_mask"].dtype == np.float32
    # vmap over the batch gives the same result as the batched call.
    vout = _np(jax.vmap(lambda s: chunk_transition(s, GAMMA))(steps))
    for k in out:
        np.testing.assert_allclose(vout[k], out[k], rtol=1e-6)


def test_chunk_transition_terminated_and_truncated_same_step_no_bootstrap():
    steps, _, _, _ = _hand_steps()
    steps["truncated"] = steps["terminated"].copy()  # case (b) has both set
    out = _np(chunk_transition(steps, GAMMA))
    assert out["discount"][1] == 0.0 and out["terminated"][1]


def test_chunk_transition_missing_field_and_bad_shape():
    steps, _, _, _ = _hand_steps()
    bad = dict(steps)
    del bad["truncated"]
    with pytest.raises(ValueError, match="truncated"):
        chunk_transition(bad, GAMMA)
    bad = dict(steps)
    bad["valid"] = np.ones((3, 5), bool)
    with pytest.raises(ValueError, match="valid"):
        chunk_transition(bad, GAMMA)


# ------------------------------------------- 2. episodes never mixed (offline)
EP_LENS = [1, 2, 3, 5, 7, 4, 6, 2]
# end kind per episode: "term", "trunc", or None (dataset cut mid-episode)
EP_ENDS = ["term", "trunc", "term", "trunc", "term", "term", "trunc", None]


def _episodes_dataset():
    obs, act, rew, nobs, term, trunc = [], [], [], [], [], []
    for ep, (n, end) in enumerate(zip(EP_LENS, EP_ENDS)):
        for t in range(n):
            obs.append([ep, t])
            nobs.append([ep, t + 1])
            act.append([ep, t])
            rew.append(10.0 * ep + t + 1.0)
            last = t == n - 1
            term.append(last and end == "term")
            trunc.append(last and end == "trunc")
    f32 = lambda x: np.asarray(x, np.float32)
    return {
        "obs": f32(obs), "action": f32(act), "reward": f32(rew),
        "next_obs": f32(nobs), "terminated": np.asarray(term),
        "truncated": np.asarray(trunc),
    }


@pytest.mark.parametrize("h", [1, 4])
def test_from_steps_chunks_never_mix_episodes(h):
    flat = _episodes_dataset()
    flat_v = dict(flat, valid=np.ones(len(flat["reward"]), bool))
    N = len(flat["reward"])
    buf = ReplayBuffer.from_steps(flat)  # no `valid`: all True
    assert buf.capacity == N and int(buf.size) == N and int(buf.ptr) == 0
    assert bool(np.all(np.asarray(buf.data["valid"])))

    B = 2048
    sample = jax.jit(lambda b, k: b.sample(k, B, h, GAMMA))
    out = _np(sample(buf, jax.random.key(1)))
    assert out["actions"].shape == (B, h, 2) and out["obs"].shape == (B, 2)
    np.testing.assert_array_equal(out["valid"], 1.0)

    index_of = {(int(o[0]), int(o[1])): i for i, o in enumerate(flat["obs"])}
    counts = np.zeros(N, int)
    for b in range(B):
        ep, t0 = int(out["obs"][b, 0]), int(out["obs"][b, 1])
        g = index_of[(ep, t0)]
        counts[g] += 1
        mask = out["step_mask"][b].astype(bool)
        n = int(out["num_steps"][b])
        assert mask.sum() == n and np.all(mask[:n])
        # Steps inside the chunk: one episode, consecutive step indices.
        a = out["actions"][b][mask]
        assert np.all(a[:, 0] == ep), (b, a)
        np.testing.assert_array_equal(a[:, 1], t0 + np.arange(n))
        ep_end = t0 + n - 1 == EP_LENS[ep] - 1
        if n < h:  # only an episode end may cut a chunk here
            assert ep_end and EP_ENDS[ep] is not None
        # Discount: 0 if the chunk ends in a termination, gamma^n otherwise.
        if ep_end and EP_ENDS[ep] == "term":
            assert out["discount"][b] == 0.0 and out["terminated"][b]
        else:
            np.testing.assert_allclose(out["discount"][b], GAMMA**n, rtol=1e-6)
            assert not out["terminated"][b]
        assert out["done"][b] == (ep_end and EP_ENDS[ep] is not None)
        # Everything against the plain-Python reference.
        ref = _reference_chunk(flat_v, g, h, GAMMA)
        assert n == ref["num_steps"]
        np.testing.assert_allclose(out["reward_sum"][b], ref["reward_sum"], rtol=1e-6)
        np.testing.assert_allclose(out["discount"][b], ref["discount"], rtol=1e-6)
        np.testing.assert_array_equal(out["next_obs"][b], ref["next_obs"])
        np.testing.assert_array_equal(out["next_obs"][b], [ep, t0 + n])
        np.testing.assert_array_equal(out["actions"][b], ref["actions"])
        np.testing.assert_array_equal(out["step_mask"][b], ref["step_mask"])

    # Uniform over starts 0..N-h; later starts (would run past the data) never.
    assert np.all(counts[N - h + 1:] == 0)
    expected = B / (N - h + 1)
    assert np.all(np.abs(counts[: N - h + 1] - expected) < 0.5 * expected), counts


# ------------------------------------------------------- 3. ring wrap-around
def _time_block(S, L, t0, obs_dim=2):
    """S streams x L steps; obs = [stream, global time], no episode ends."""
    t = np.arange(t0, t0 + L, dtype=np.float32)
    s = np.arange(S, dtype=np.float32)
    obs = np.stack(np.broadcast_arrays(s[:, None], t[None, :]), axis=-1)
    return {
        "obs": obs, "action": obs.copy(), "reward": np.broadcast_to(t, (S, L)).copy(),
        "next_obs": obs + np.array([0.0, 1.0], np.float32),
        "terminated": np.zeros((S, L), bool), "truncated": np.zeros((S, L), bool),
        "valid": np.ones((S, L), bool),
    }


def _check_consecutive(out, h, t_lo, t_hi, S):
    """Every chunk: one stream, consecutive times, all in [t_lo, t_hi]."""
    a = out["actions"]
    assert np.all(out["valid"] == 1.0) and np.all(out["num_steps"] == h)
    assert np.all(a[:, :, 0] == a[:, :1, 0])
    assert np.all(out["obs"][:, 0] == a[:, 0, 0])
    np.testing.assert_array_equal(a[:, :, 1], a[:, :1, 1] + np.arange(h))
    starts = a[:, 0, 1].astype(int)
    assert starts.min() >= t_lo and starts.max() + h - 1 <= t_hi
    # every legal start in every stream is reachable
    seen = {(int(s), int(t)) for s, t in zip(a[:, 0, 0], starts)}
    assert seen == {(s, t) for s in range(S) for t in range(t_lo, t_hi - h + 2)}


def test_ring_wraparound_chronological_and_pointer():
    S, T, L, h, B = 2, 7, 3, 3, 512
    buf = ReplayBuffer.create(_example_step(), capacity=S * T, num_streams=S)
    assert buf.capacity == 14 and buf.data["obs"].shape == (S, T, 2)
    add = jax.jit(lambda b, s: b.add(s))
    sample = jax.jit(lambda b, k, n: b.sample(k, B, n, GAMMA), static_argnums=2)
    expect = [(3, 3), (6, 6), (2, 7), (5, 7), (1, 7)]  # (ptr, size) after each add
    key = jax.random.key(0)
    for i in range(5):
        buf = add(buf, _time_block(S, L, L * i))
        assert (int(buf.ptr), int(buf.size)) == expect[i]
        t_hi = L * (i + 1) - 1  # newest written time
        t_lo = t_hi - int(buf.size) + 1  # oldest still stored
        key, k = jax.random.split(key)
        _check_consecutive(_np(sample(buf, k, h)), h, t_lo, t_hi, S)
    # Final state: ptr=1, stored times 8..14; position 0 holds t=14, 1 holds t=8.
    np.testing.assert_array_equal(np.asarray(buf.data["obs"])[0, :, 1], [14, 8, 9, 10, 11, 12, 13])
    # Full-length chunk h == T is still legal (exactly one start per stream).
    _check_consecutive(_np(sample(buf, jax.random.key(3), T)), T, 8, 14, S)


def test_sample_too_short_gives_zero_weight():
    S, T = 2, 7
    buf = ReplayBuffer.create(_example_step(), capacity=S * T, num_streams=S)
    sample = jax.jit(lambda b, h: b.sample(jax.random.key(1), 16, h, GAMMA), static_argnums=1)
    empty = _np(sample(buf, 3))
    assert np.all(empty["valid"] == 0.0) and np.all(np.isfinite(empty["reward_sum"]))
    buf = jax.jit(lambda b, s: b.add(s))(buf, _time_block(S, 2, 0))
    assert np.all(_np(sample(buf, 3))["valid"] == 0.0)  # size 2 < h 3
    assert np.all(_np(sample(buf, 9))["valid"] == 0.0)  # h > T
    assert np.all(_np(sample(buf, 2))["valid"] == 1.0)  # now exactly legal


# ----------------------------------------------------------------- 4. padding
def test_padding_steps_get_zero_weight():
    # direct: invalid first step => weight 0
    steps, _, _, _ = _hand_steps()
    steps["valid"][0, 0] = False
    out = _np(chunk_transition(steps, GAMMA))
    np.testing.assert_array_equal(out["valid"], [0.0, 1.0, 1.0])
    # invalid step mid-chunk without an episode end cuts the chunk there
    steps, _, _, _ = _hand_steps()
    steps["valid"][0, 2:] = False
    out = _np(chunk_transition(steps, GAMMA))
    assert out["num_steps"][0] == 2 and out["valid"][0] == 1.0
    np.testing.assert_array_equal(out["step_mask"][0], [1, 1, 0, 0])

    # in a buffer: rollout of 3-step chunks where an episode ends mid-chunk;
    # the rest of that chunk is padding (obs marker -1, valid False).
    # stream: e0 t0,t1,t2 | e0 t3(trunc), pad, pad | e1 t0,t1,t2(term) | e2 t0,t1,t2
    rows = []  # (ep, t, valid, term, trunc)
    rows += [(0, 0, 1, 0, 0), (0, 1, 1, 0, 0), (0, 2, 1, 0, 0)]
    rows += [(0, 3, 1, 0, 1), (-1, -1, 0, 0, 0), (-1, -1, 0, 0, 0)]
    rows += [(1, 0, 1, 0, 0), (1, 1, 1, 0, 0), (1, 2, 1, 1, 0)]
    rows += [(2, 0, 1, 0, 0), (2, 1, 1, 0, 0), (2, 2, 1, 0, 0)]
    r = np.array(rows, np.float32)
    n = len(rows)
    step = {
        "obs": r[None, :, :2], "action": r[None, :, :2], "reward": np.ones((1, n), np.float32),
        "next_obs": r[None, :, :2] + np.array([0, 1], np.float32),
        "valid": r[None, :, 2] > 0, "terminated": r[None, :, 3] > 0,
        "truncated": r[None, :, 4] > 0,
    }
    buf = ReplayBuffer.create(_example_step(), capacity=n, num_streams=1).add(step)
    out = _np(jax.jit(lambda b: b.sample(jax.random.key(5), 1024, 3, GAMMA))(buf))
    pad = out["obs"][:, 0] == -1
    assert pad.any() and (~pad).any()
    np.testing.assert_array_equal(out["valid"][pad], 0.0)
    np.testing.assert_array_equal(out["valid"][~pad], 1.0)
    # chunk starting at e0 t2 is cut at the truncation (t3), never reaches pads
    at = (out["obs"][:, 0] == 0) & (out["obs"][:, 1] == 2)
    assert at.any()
    np.testing.assert_array_equal(out["num_steps"][at], 2)
    np.testing.assert_allclose(out["discount"][at], GAMMA**2, rtol=1e-6)
    np.testing.assert_array_equal(out["next_obs"][at], np.tile([0, 4], (at.sum(), 1)))
    # weight-1 chunks never contain padding in their in-episode steps
    real = out["valid"] == 1.0
    m = out["step_mask"][real].astype(bool)
    assert np.all(out["actions"][real][m][:, 0] >= 0)


# ------------------------------------------------------------ 5. sample_mixed
def _marked_buffers():
    flat = _episodes_dataset()
    flat["obs"] = flat["obs"].copy()
    flat["obs"][:, 0] = 0.0  # marker 0 = offline
    offline = ReplayBuffer.from_steps(flat)
    online = ReplayBuffer.create(_example_step(), capacity=2 * 8, num_streams=2)
    block = _time_block(2, 8, 0)
    block["obs"][..., 0] = 1.0  # marker 1 = online
    return offline, online.add(block)


def test_sample_mixed_proportions_and_bad_ratio():
    offline, online = _marked_buffers()
    f = jax.jit(
        lambda off, on, k, bs, r: sample_mixed(off, on, k, bs, 3, GAMMA, r),
        static_argnums=(3, 4),
    )
    for bs, ratio, n_off in [(40, 0.25, 10), (10, 0.36, 4), (16, 0.0, 0), (16, 1.0, 16)]:
        out = _np(f(offline, online, jax.random.key(2), bs, ratio))
        marker = out["obs"][:, 0]
        assert marker.shape == (bs,)
        np.testing.assert_array_equal(marker[:n_off], 0.0)
        np.testing.assert_array_equal(marker[n_off:], 1.0)
        assert out["actions"].shape == (bs, 3, 2) and np.all(out["valid"] == 1.0)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="offline_ratio"):
            sample_mixed(offline, online, jax.random.key(0), 8, 3, GAMMA, bad)


# ------------------------------------------- 6. tracing, validation, memory
def test_add_and_sample_trace_once():
    traces = {"add": 0, "sample": 0}

    def _add(b, s):
        traces["add"] += 1
        return b.add(s)

    def _sample(b, k):
        traces["sample"] += 1
        return b.sample(k, 8, 2, GAMMA)

    add, sample = jax.jit(_add), jax.jit(_sample)
    buf = ReplayBuffer.create(_example_step(), capacity=2 * 5, num_streams=2)
    buf1 = add(buf, _time_block(2, 3, 0))
    buf2 = add(buf1, _time_block(2, 3, 100))  # different values, ptr, size
    assert traces["add"] == 1
    assert (int(buf2.ptr), int(buf2.size)) == (1, 5)
    np.testing.assert_array_equal(np.asarray(buf2.data["obs"])[1, :, 1], [102, 1, 2, 100, 101])
    sample(buf1, jax.random.key(0))
    sample(buf2, jax.random.key(1))
    assert traces["sample"] == 1


def test_validation_errors():
    ex = _example_step()
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer.create(ex, capacity=10, num_streams=3)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer.create(ex, capacity=2, num_streams=4)
    bad_ex = dict(ex, valid=jax.ShapeDtypeStruct((), jnp.float32))
    with pytest.raises(ValueError, match="valid"):
        ReplayBuffer.create(bad_ex, capacity=4, num_streams=2)

    buf = ReplayBuffer.create(ex, capacity=2 * 5, num_streams=2)
    good = _time_block(2, 3, 0)
    with pytest.raises(ValueError, match="reward"):  # dtype
        buf.add(dict(good, reward=good["reward"].astype(np.int32)))
    with pytest.raises(ValueError, match="obs"):  # stream count
        buf.add(dict(good, obs=good["obs"][:1]))
    with pytest.raises(ValueError, match="next_obs"):  # feature shape
        buf.add(dict(good, next_obs=np.zeros((2, 3, 5), np.float32)))
    with pytest.raises(ValueError, match="terminated"):  # L mismatch
        buf.add(dict(good, terminated=np.zeros((2, 2), bool)))
    with pytest.raises(ValueError, match="truncated"):  # missing
        buf.add({k: v for k, v in good.items() if k != "truncated"})
    with pytest.raises(ValueError, match="action"):  # error raised at trace time
        jax.jit(lambda b, s: b.add(s))(buf, dict(good, action=good["action"].astype(np.int32)))


def test_memory_bytes_exact():
    ex = dict(_example_step(obs_dim=3, act_dim=2), obs=jax.ShapeDtypeStruct((3,), jnp.uint8),
              next_obs=jax.ShapeDtypeStruct((3,), jnp.uint8))
    buf = ReplayBuffer.create(ex, capacity=12, num_streams=3)
    per_step = 3 + 3 + 2 * 4 + 4 + 3  # obs, next_obs (uint8), action, reward, 3 bools
    assert buf.memory_bytes() == 12 * per_step
    assert buf.memory_bytes() == sum(x.nbytes for x in jax.tree_util.tree_leaves(buf.data))
    assert math.prod(buf.data["obs"].shape) == 12 * 3

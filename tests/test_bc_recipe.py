"""Diffusion Policy's BC pieces: the temporal U-Net, temporal ensembling, the DP schedules.

The MSE baseline's mode averaging is tested with the samplers (``test_generative.py``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from agents import bc
from agents.actor import Actor, actor_learning_rate
from envs.chunk import ensemble_action, ensemble_weights, rollout_episodes
from envs.wrappers import ObsHistory, VecEnv, next_history, stack_history
from networks.unet import ChunkUNetDenoiser


@pytest.fixture(scope="module")
def unet():
    net = ChunkUNetDenoiser(down_dims=(8, 16, 32), time_dim=8)
    params = jax.jit(net.init)(jax.random.PRNGKey(0), jnp.zeros((1, 16, 2)), jnp.zeros((1,)), jnp.zeros((1, 6)))
    return net, params, jax.jit(net.apply)


@pytest.mark.parametrize("horizon", [1, 5, 16])
def test_unet_keeps_the_chunk_shape_at_any_length(unet, horizon):
    net, params, apply = unet  # weights do not depend on H: one set serves every length
    x = jax.random.normal(jax.random.PRNGKey(1), (3, horizon, 2))
    out = apply(params, x, jnp.array([0.0, 50.0, 99.0]), jnp.ones((3, 6)))
    assert out.shape == (3, horizon, 2) and np.isfinite(np.asarray(out)).all()


def test_unet_film_conditions_every_output_on_obs_and_time(unet):
    net, params, apply = unet
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 16, 2))
    obs = jax.random.normal(jax.random.PRNGKey(3), (2, 6))
    base = apply(params, x, jnp.array([10.0, 10.0]), obs)
    other_obs = apply(params, x, jnp.array([10.0, 10.0]), obs + 1.0)
    other_t = apply(params, x, jnp.array([60.0, 60.0]), obs)
    assert float(jnp.abs(base - other_obs).min()) > 0 and float(jnp.abs(base - other_t).min()) > 0
    # the conditioning enters only through FiLM: with every FiLM layer zeroed (scale 0, bias 0 after
    # the first conv of each block) the output no longer depends on obs or time
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    film = [path for path, _ in flat if "FiLMResidualBlock" in jax.tree_util.keystr(path)
            and "Dense_0" in jax.tree_util.keystr(path)]
    assert film
    zeroed = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.zeros_like(v) if path in film else v, params)
    a = apply(zeroed, x, jnp.array([10.0, 10.0]), obs)
    b = apply(zeroed, x, jnp.array([60.0, 60.0]), obs + 1.0)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_unet_rejects_widths_groupnorm_cannot_split():
    net = ChunkUNetDenoiser(down_dims=(12, 24))
    with pytest.raises(ValueError, match="unet_down_dims"):
        net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 2)), jnp.zeros((1,)), jnp.zeros((1, 3)))


def test_ensemble_weights_match_act_by_hand():
    m = 0.5
    ages = jnp.arange(4)
    valid = jnp.array([[True, True, True, True], [True, True, False, False], [True, False, False, False]])
    w = np.asarray(ensemble_weights(ages, valid, m))
    # ACT: w_i = exp(-m i), i = 0 the oldest prediction, normalised
    full = np.exp(-m * np.arange(4))[::-1]  # ages 0..3 are i = 3..0
    np.testing.assert_allclose(w[0], full / full.sum(), rtol=1e-6)
    two = np.exp(-m * np.arange(2))[::-1]
    np.testing.assert_allclose(w[1], np.r_[two / two.sum(), 0, 0], rtol=1e-6)
    np.testing.assert_allclose(w[2], [1, 0, 0, 0])
    np.testing.assert_allclose(np.asarray(ensemble_weights(ages, valid, 0.0))[0], 0.25)  # m = 0: the mean


def test_ensemble_action_reads_each_chunks_action_for_now():
    H = 3
    # past[:, a, j] = 10 a + j: the chunk of age a predicted action j; now is j = a
    past = (10 * jnp.arange(H)[:, None] + jnp.arange(H)[None, :]).astype(jnp.float32)[None, :, :, None]
    past = jnp.tile(past, (2, 1, 1, 1))
    out = np.asarray(ensemble_action(past, jnp.array([5, 1]), 0.0))[:, 0]
    assert out[0] == pytest.approx((0 + 11 + 22) / 3)  # all three chunks: (age, index) = (0,0), (1,1), (2,2)
    assert out[1] == pytest.approx((0 + 11) / 2)       # one step into the episode: two chunks exist


class _Integrator:
    """A stand-in task (no physics, fast to compile): ``obs`` is the sum of the actions so far."""

    observation_size, action_size = 2, 2

    def __init__(self, start_scale: float = 0.0):
        self.start_scale = start_scale  # > 0: a random start observation per episode

    def reset(self, rng):
        from mujoco_playground._src import mjx_env
        zero = jnp.zeros((), jnp.float32)
        start = self.start_scale * jax.random.normal(rng, (2,))
        return mjx_env.State(start, start, zero, zero, {},
                             {"terminated": jnp.zeros((), bool), "success": jnp.zeros((), bool)})

    def step(self, state, action):
        return state.replace(data=state.data + action, obs=state.obs + action)


def test_ensembled_rollout_executes_the_hand_computed_actions():
    """A policy whose chunk is fixed, ``c_j``: step t executes sum_a w_a c_a over the ages a <= t."""
    H, m, T = 4, 0.3, 7
    vec = VecEnv(_Integrator(), num_envs=2, episode_length=T)
    c = jnp.array([[0.8, 0.2], [0.0, -0.6], [-0.5, 0.4], [0.3, 0.9]])

    def policy(obs, key):
        return jnp.tile(c[None], (obs.shape[0], 1, 1))

    out = jax.jit(lambda k: rollout_episodes(vec, policy, k, 1, 1.0, temporal_ensemble=m))(jax.random.PRNGKey(4))
    executed = np.diff(np.asarray(out["obs"]), axis=0)  # [T, N, A]: the action of each step
    for t in range(T):
        k = min(t, H - 1) + 1  # chunks predicted in this episode that cover step t
        w = np.exp(m * np.arange(k))  # ages 0..k-1; ACT's exp(-m i) from the oldest, normalised
        expected = (w[:, None] * np.asarray(c)[np.arange(k)]).sum(0) / w.sum()
        np.testing.assert_allclose(executed[t], np.tile(expected, (2, 1)), atol=1e-6)
    assert (np.asarray(out["length"]) == T).all()
    # without ensembling (h = 1) every step executes c_0
    plain = jax.jit(lambda k: rollout_episodes(vec, policy, k, 1, 1.0))(jax.random.PRNGKey(4))
    np.testing.assert_allclose(np.diff(np.asarray(plain["obs"]), axis=0), np.tile(c[0], (T, 2, 1)), atol=1e-6)


def test_ensembled_rollout_reports_the_first_querys_chunk():
    """``first_chunk`` (the value plots' chunk) is the query at the episode's start, not a later one."""
    vec = VecEnv(_Integrator(), num_envs=2, episode_length=5)

    def policy(obs, key):  # the chunk moves with the state, so every query differs
        return jnp.tile(obs[:, None, :], (1, 3, 1)) + 0.1

    out = jax.jit(lambda k: rollout_episodes(vec, policy, k, 1, 1.0, temporal_ensemble=0.2))(jax.random.PRNGKey(1))
    np.testing.assert_allclose(out["first_chunk"], policy(out["obs"][0], None), atol=1e-6)
    assert not np.allclose(out["first_chunk"], policy(out["obs"][-2], None))


def test_dp_learning_rate_warms_up_then_decays_and_ema_power_warms_up():
    c = ml_collections.ConfigDict({"actor_lr": 1e-4, "actor_lr_warmup_steps": 10, "actor_lr_decay_steps": 110})
    lr = actor_learning_rate(c)
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(5e-5)
    assert float(lr(10)) == pytest.approx(1e-4) and float(lr(60)) == pytest.approx(5e-5, rel=1e-3)
    assert float(lr(110)) == pytest.approx(0.0, abs=1e-12) and float(lr(500)) == pytest.approx(0.0, abs=1e-12)
    assert actor_learning_rate(ml_collections.ConfigDict({"actor_lr": 3e-4})) == 3e-4
    # EMA with power 0.75: after n updates the decay is min(ceiling, 1 - (1 + n)^-0.75)
    cfg = bc.get_config()
    cfg.actor_hidden_dims, cfg.ema_power, cfg.ema_decay = (8,), 0.75, 0.9999
    actor = Actor.create(jax.random.PRNGKey(0), 2, 1, cfg)
    zero = jax.tree.map(jnp.zeros_like, actor.state.params)
    ema0 = actor.ema_params
    actor = actor.replace(ema_params=jax.tree.map(jnp.ones_like, ema0),
                          state=actor.state.replace(params=zero, tx=optax.set_to_zero(),
                                                    opt_state=optax.set_to_zero().init(zero)))
    for n in range(1, 4):  # params stay 0: the EMA holds prod of the decays
        actor = actor.apply_gradients(zero)
    leaf = float(jax.tree.leaves(actor.ema_params)[0].ravel()[0])
    expected = np.prod([1 - (1 + n) ** -0.75 for n in range(1, 4)])
    assert leaf == pytest.approx(expected, rel=1e-5)


def test_history_windows_of_the_demonstrations_pad_with_the_episode_start():
    obs = np.array([[1.0], [2.0], [3.0], [10.0], [20.0]])
    episode_id = np.array([0, 0, 0, 1, 1])
    windows = stack_history(obs, episode_id, 3)
    np.testing.assert_array_equal(windows, [[1, 1, 1], [1, 1, 2], [1, 2, 3], [10, 10, 10], [10, 10, 20]])
    nxt = next_history(windows, np.array([[2.0], [3.0], [4.0], [20.0], [30.0]]))
    np.testing.assert_array_equal(nxt, [[1, 1, 2], [1, 2, 3], [2, 3, 4], [10, 10, 20], [10, 20, 30]])
    np.testing.assert_array_equal(stack_history(obs, episode_id, 1), obs)  # T_o = 1: the observations


def test_history_env_window_restarts_at_every_episode():
    """Online windows (ObsHistory under VecEnv's auto-reset) equal the demonstrations' windows of the same
    observations, and a new episode's window holds only its own first observation."""
    env = ObsHistory(_Integrator(start_scale=1.0), 3)
    vec = VecEnv(env, num_envs=2, episode_length=4)
    assert vec.observation_size == 6
    state = vec.reset(jax.random.PRNGKey(0))
    first = np.asarray(state.obs[:, -2:])
    np.testing.assert_allclose(np.asarray(state.obs), np.tile(first, 3))
    raw, windows = [first], [np.asarray(state.obs)]
    for t in range(4):
        state = vec.step(state, jnp.full((2, 2), 0.1 * (t + 1)))
        raw.append(np.asarray(state.obs[:, -2:]))
        windows.append(np.asarray(state.obs))
    for i in range(2):  # env i: its raw observations 0..4 as one episode
        expected = stack_history(np.stack([r[i] for r in raw]), np.zeros(5, int), 3)
        np.testing.assert_allclose(np.stack([w[i] for w in windows]), expected, atol=1e-6)
    assert (np.asarray(state.done) == 1).all()  # the time limit ended both episodes
    state = vec.reset_done(state, jax.random.PRNGKey(1))
    new_first = np.asarray(state.obs[:, -2:])
    assert not np.allclose(new_first, raw[-1])
    np.testing.assert_allclose(np.asarray(state.obs), np.tile(new_first, 3))  # nothing of the last episode

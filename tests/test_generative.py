"""Diffusion / flow math: schedules, exact samplers, and multimodal chunk generation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from networks.denoiser import ChunkMLPDenoiser
from networks.generative import DDPM, FlowMatching, Regression, cosine_alphas_cumprod
from networks.mlp import mish


def test_mish_and_its_derivative_match_the_textbook_formula():
    # the one-exp Mish must equal x tanh(softplus(x)) and keep a finite, correct slope
    # at large |x| (where a naive e^x overflows)
    x = jnp.linspace(-60.0, 60.0, 4001)
    f_ref = lambda v: v * jnp.tanh(jnp.logaddexp(v, 0.0))  # noqa: E731
    np.testing.assert_allclose(mish(x), f_ref(x), atol=2e-6)
    slope, slope_ref = jax.vmap(jax.grad(mish))(x), jax.vmap(jax.grad(f_ref))(x)
    np.testing.assert_allclose(slope, slope_ref, atol=1e-5)
    assert np.isfinite(np.asarray(jax.vmap(jax.grad(jax.grad(mish)))(x))).all()
    assert float(jax.grad(mish)(1e4)) == 1.0 and float(mish(-1e4)) == 0.0


def test_cosine_schedule_matches_closed_form():
    T, s = 100, 0.008
    ab = np.asarray(cosine_alphas_cumprod(T))
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    expected = np.array([f(t + 1) / f(0) for t in range(T)])
    # betas are capped at 0.999, which only touches the very last step
    np.testing.assert_allclose(ab[:-1], expected[:-1], rtol=1e-4, atol=1e-6)
    assert np.all(np.diff(ab) < 0) and 0 < ab[-1] < 1e-3


def test_ddim_timesteps_and_validation():
    d = DDPM(train_steps=100, denoising_steps=10)
    assert np.asarray(d.timesteps).tolist() == list(range(90, -1, -10))
    with pytest.raises(ValueError, match="denoising_steps"):
        DDPM(train_steps=10, denoising_steps=20)
    with pytest.raises(ValueError, match="schedule"):
        DDPM(schedule="quadratic")


X_STAR = jnp.array([[[0.3, -0.5], [0.1, 0.7]]])  # one target chunk [1, H=2, A=2]


def test_ddim_with_oracle_denoiser_recovers_the_data_point():
    d = DDPM(train_steps=100, denoising_steps=10)
    ab = d.alphas_cumprod

    def oracle_eps(params, x, t, obs):  # exact epsilon when the data is the single point X_STAR
        a = ab[t][:, None, None]
        return (x - jnp.sqrt(a) * X_STAR) / jnp.sqrt(1 - a)

    out = d.sample(oracle_eps, None, jnp.zeros((4, 1)), jax.random.PRNGKey(0), 2, 2)
    np.testing.assert_allclose(np.asarray(out), np.broadcast_to(X_STAR, (4, 2, 2)), atol=1e-4)


def test_flow_euler_with_oracle_velocity_recovers_the_data_point():
    f = FlowMatching(denoising_steps=10)

    def oracle_v(params, x, t, obs):  # velocity of the linear path towards X_STAR
        t = (t / 1000.0)[:, None, None]
        return (X_STAR - x) / (1 - t)

    out = f.sample(oracle_v, None, jnp.zeros((4, 1)), jax.random.PRNGKey(0), 2, 2)
    np.testing.assert_allclose(np.asarray(out), np.broadcast_to(X_STAR, (4, 2, 2)), atol=1e-5)


def _bimodal_chunks(key, n):
    """Chunks [n, 4, 2]: half at +0.6, half at -0.6 (plus small noise)."""
    k_mode, k_noise = jax.random.split(key)
    sign = jnp.where(jax.random.bernoulli(k_mode, 0.5, (n, 1, 1)), 1.0, -1.0)
    return sign * 0.6 + 0.03 * jax.random.normal(k_noise, (n, 4, 2))


def _train(loss_fn, params, steps=1500, lr=3e-3):
    opt = optax.adam(lr)

    @jax.jit
    def step(params, opt_state, key):
        k_data, k_loss = jax.random.split(key)
        loss, grads = jax.value_and_grad(loss_fn)(params, _bimodal_chunks(k_data, 256), k_loss)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = opt.init(params)
    for key in jax.random.split(jax.random.PRNGKey(0), steps):
        params, opt_state, loss = step(params, opt_state, key)
    return params


@pytest.mark.parametrize("sampler", [FlowMatching(denoising_steps=10),
                                     DDPM(train_steps=100, denoising_steps=10)], ids=["flow", "ddpm"])
def test_sampler_recovers_both_modes_not_the_mean(sampler):
    net = ChunkMLPDenoiser(hidden_dims=(128, 128))
    obs = jnp.zeros((256, 1))
    params = net.init(jax.random.PRNGKey(1), jnp.zeros((1, 4, 2)), jnp.zeros((1,)), jnp.zeros((1, 1)))
    params = _train(lambda p, x, k: sampler.loss(net.apply, p, obs, x, k).mean(), params)
    samples = np.asarray(sampler.sample(net.apply, params, jnp.zeros((512, 1)), jax.random.PRNGKey(2), 4, 2))
    centre = samples.mean(axis=(1, 2))
    near_pos, near_neg = np.mean(np.abs(centre - 0.6) < 0.2), np.mean(np.abs(centre + 0.6) < 0.2)
    assert near_pos > 0.3 and near_neg > 0.3, (near_pos, near_neg)
    assert np.mean(np.abs(centre) < 0.2) < 0.1  # hardly any sample at the mean of the modes


@pytest.mark.parametrize("sampler", [FlowMatching(denoising_steps=5),
                                     DDPM(train_steps=5, denoising_steps=5, schedule="vp", eta=1.0)], ids=["flow", "ddpm"])
def test_unrolled_chain_equals_the_scanned_one_with_its_gradient(sampler):
    net = ChunkMLPDenoiser(hidden_dims=(32, 32))
    obs = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    params = net.init(jax.random.PRNGKey(1), jnp.zeros((1, 4, 2)), jnp.zeros((1,)), jnp.zeros((1, 3)))

    def out(p, unroll):
        return sampler.sample(net.apply, p, obs, jax.random.PRNGKey(2), 4, 2, unroll=unroll)

    np.testing.assert_allclose(out(params, True), out(params, False), atol=1e-5)
    g_unrolled = jax.grad(lambda p: out(p, True).sum())(params)
    g_scanned = jax.grad(lambda p: out(p, False).sum())(params)
    for a, b in zip(jax.tree.leaves(g_unrolled), jax.tree.leaves(g_scanned)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_mse_regression_baseline_collapses_to_the_mean():
    """The ``generative='mse'`` BC baseline (:class:`Regression`), same denoiser and data as the
    test above: it predicts the mean of the two modes, a chunk no demonstration contains."""
    sampler = Regression()
    net = ChunkMLPDenoiser(hidden_dims=(128, 128))
    obs = jnp.zeros((256, 1))
    params = net.init(jax.random.PRNGKey(1), jnp.zeros((1, 4, 2)), jnp.zeros((1,)), jnp.zeros((1, 1)))
    params = _train(lambda p, x, k: sampler.loss(net.apply, p, obs, x, k).mean(), params, steps=500)
    samples = np.asarray(sampler.sample(net.apply, params, jnp.zeros((8, 1)), jax.random.PRNGKey(2), 4, 2))
    assert np.all(np.abs(samples) < 0.15), samples[0]
    np.testing.assert_array_equal(samples[0], samples[-1])  # deterministic: one chunk per observation
    # the sampler API holds: one "step", the clean estimate is the prediction, noise is ignored
    x = jax.random.normal(jax.random.PRNGKey(3), (8, 4, 2))
    np.testing.assert_allclose(sampler.clean_estimate(net.apply, params, jnp.zeros((8, 1)), x, 0), samples,
                               atol=1e-6)
    assert sampler.denoising_steps == 1


@pytest.mark.parametrize("generative", ["flow", "ddpm"])
def test_denoising_chain_ends_in_the_sampled_chunk(generative):
    """The inspection chain (notebooks) runs the same steps as sampling: noise first, the sampled chunk last."""
    from agents.actor import Actor
    from agents.bc import get_config

    c = get_config()
    c.generative, c.denoising_steps, c.actor_hidden_dims, c.horizon = generative, 4, (16, 16), 3
    actor = Actor.create(jax.random.PRNGKey(0), 5, 2, c)
    obs, key = jax.random.normal(jax.random.PRNGKey(1), (6, 5)), jax.random.PRNGKey(2)
    chain = actor.denoising_chain(obs, key)
    assert chain.shape == (5, 6, 3, 2)
    np.testing.assert_allclose(chain[-1], actor.sample(obs, key), atol=1e-6)
    assert float(jnp.abs(chain[0]).max()) > 1.0  # starts from unclipped Gaussian noise
    assert float(jnp.abs(chain[1] - chain[0]).max()) > 0 and float(jnp.abs(chain[-1]).max()) <= 1.0

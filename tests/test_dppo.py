"""The on-policy core shared by Gaussian PPO and DPPO, the DDPM step as a Gaussian policy, and DPPO itself."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import dppo, onpolicy, ppo
from agents.actor import Actor
from agents.dppo import DPPOAgent
from agents.onpolicy import clip_schedule, gae, minibatch_epochs
from networks.generative import DDPM, chain_log_prob, policy_chain

# --- GAE over chunk transitions ----------------------------------------------------------------


def test_both_ppo_variants_use_the_one_core():
    assert ppo.gae is onpolicy.gae and dppo.gae is onpolicy.gae
    assert ppo.minibatch_epochs is onpolicy.minibatch_epochs and dppo.minibatch_epochs is onpolicy.minibatch_epochs
    assert ppo.clipped_surrogate is onpolicy.clipped_surrogate is dppo.clipped_surrogate


def test_gae_over_chunks_that_end_mid_rollout_by_hand():
    # Chunks of h = 2 steps, gamma = 0.9, lambda = 0.5, V(s) = 0.5 everywhere; three envs, three transitions.
    # env 0: no episode end: every transition discounts gamma^2 = 0.81.
    # env 1: the time limit cuts transition 1 after one step (truncated: bootstraps with gamma^1 from V(s') = 2);
    #        a new episode follows, whose transition 2 ends by termination (no bootstrap).
    # env 2: transition 1 terminates (no bootstrap, V(s') = 3 ignored).
    g, lam = 0.9, 0.5
    reward = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    discount = np.array([[g**2, g**2, g**2], [g**2, g, 0.0], [g**2, 0.0, g**2]])
    done = np.array([[0, 0, 0], [0, 1, 1], [0, 1, 0]], bool)
    next_value = np.array([[0.5, 0.5, 0.5], [0.5, 2.0, 3.0], [0.5, 3.0, 0.5]])
    value = np.full((3, 3), 0.5)
    adv, ret = gae(*(jnp.asarray(x.T) for x in (reward, value, next_value, discount)), jnp.asarray(done.T), lam)
    adv, ret = np.asarray(adv).T, np.asarray(ret).T
    d_full = 1 + 0.81 * 0.5 - 0.5  # 0.905
    # env 0: A2 = d, A1 = d + lam 0.81 A2, A0 = d + lam 0.81 A1
    a1 = d_full + 0.405 * d_full
    np.testing.assert_allclose(adv[0], [d_full + 0.405 * a1, a1, d_full], rtol=1e-6)
    # env 1: A1 = 1 + 0.9 * 2 - 0.5 = 2.3 (bootstrapped, not chained into the next episode); A2 = 1 - 0.5
    np.testing.assert_allclose(adv[1], [d_full + 0.405 * 2.3, 2.3, 0.5], rtol=1e-6)
    # env 2: A1 = 1 - 0.5 (terminated); A2 = 0.905 (a new episode, its own bootstrap)
    np.testing.assert_allclose(adv[2], [d_full + 0.405 * 0.5, 0.5, d_full], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + 0.5, rtol=1e-6)


def test_gae_with_unit_lambda_is_the_discounted_monte_carlo_return():
    rng = np.random.default_rng(0)
    T = 6
    reward, value = rng.normal(size=(T, 1)), rng.normal(size=(T, 1))
    next_value = np.concatenate([value[1:], rng.normal(size=(1, 1))])
    disc = np.full((T, 1), 0.9**3)  # chunks of 3 steps
    adv = np.asarray(gae(*(jnp.asarray(x) for x in (reward, value, next_value, disc)), jnp.zeros((T, 1), bool),
                         1.0)[0])[:, 0]
    expected = [sum(disc[0, 0] ** (j - t) * reward[j, 0] for j in range(t, T)) + disc[0, 0] ** (T - t)
                * next_value[-1, 0] - value[t, 0] for t in range(T)]
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)


def test_minibatch_epochs_visits_every_sample_and_stops_on_target_kl():
    data = {"x": jnp.arange(12.0)}

    def step(total, mb):
        return total + mb["x"].sum(), {"approx_kl": mb["x"].max()}

    total, info = minibatch_epochs(jnp.zeros(()), data, jax.random.PRNGKey(0), 2, 4, step)
    assert float(total) == 2 * 66 and float(info["updates"]) == 6  # 2 passes x 3 minibatches, nothing left out
    # early stop: every minibatch's max is >= 3 > target: only the first update runs, none after it
    stopped, info = minibatch_epochs(jnp.zeros(()), data, jax.random.PRNGKey(0), 2, 4, step, target_kl=2.5)
    assert float(info["updates"]) == 1 and 6 <= float(stopped) <= 11 + 10 + 9 + 8


def test_clip_schedule_grows_from_base_to_final():
    clip = np.asarray(clip_schedule(10, 0.001, 0.01, 3.0))
    assert clip[0] == pytest.approx(0.001) and clip[-1] == pytest.approx(0.01)
    assert np.all(np.diff(clip) > 0)
    u = 4 / 9
    assert clip[4] == pytest.approx(0.001 + 0.009 * (math.exp(3 * u) - 1) / (math.exp(3) - 1), rel=1e-5)


def test_reward_scaler_divides_by_the_std_of_the_discounted_return():
    scaler = onpolicy.RewardScaler.create(2)
    reward = jnp.asarray([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    done = jnp.asarray([[False, False], [True, False], [False, False]])
    scaler, scaled = scaler.scale(reward, done, 0.5)
    returns = np.array([1.0, 2.0, 1.5, 3.0, 1.0, 3.5])  # G per step: env 0 resets after t = 1
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(reward) / np.sqrt(returns.var() + 1e-8), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(scaler.ret), [1.0, 3.5])


# --- the DDPM step as a Gaussian policy --------------------------------------------------------


def _denoiser(params, x, t, obs):
    """A fixed 'network': eps = tanh(w x + 0.01 t + obs)."""
    return jnp.tanh(params["w"] * x + 0.01 * t[:, None, None] + obs[:, :1, None])


def test_step_log_prob_is_the_closed_form_ddpm_posterior_density():
    sampler = DDPM(train_steps=10, denoising_steps=10, schedule="linear", eta=1.0)
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
    x = jnp.asarray(rng.normal(size=(3, 4, 2)), jnp.float32)
    x_next = jnp.asarray(rng.normal(size=(3, 4, 2)), jnp.float32)
    k = jnp.asarray([2, 5, 9], jnp.int32)
    params = {"w": jnp.float32(0.7)}
    for min_std in (0.1, 0.5):
        logp = np.asarray(chain_log_prob(sampler, _denoiser, params, obs, x, x_next, k, min_std=min_std,
                                         reduce="sum"))
        betas = np.linspace(1e-4, 2e-2, 10)
        abar = np.cumprod(1 - betas)
        for i in range(3):
            t = 9 - int(k[i])  # sampling index k runs from the noise end
            ab, ab_prev = abar[t], (abar[t - 1] if t > 0 else 1.0)
            eps = np.tanh(0.7 * np.asarray(x[i]) + 0.01 * t + float(obs[i, 0]))
            x0 = np.clip((np.asarray(x[i]) - np.sqrt(1 - ab) * eps) / np.sqrt(ab), -1, 1)
            # DDPM posterior q(x_{t-1} | x_t, x0) (Ho et al. 2020, Eq. 7)
            mean = (np.sqrt(ab_prev) * betas[t] / (1 - ab)) * x0 + (np.sqrt(1 - betas[t]) * (1 - ab_prev) / (1 - ab)) \
                * np.asarray(x[i])
            var = (1 - ab_prev) / (1 - ab) * betas[t]
            std = max(np.sqrt(var), min_std)  # the floor
            expected = np.sum(-0.5 * ((np.asarray(x_next[i]) - mean) / std) ** 2 - np.log(std)
                              - 0.5 * np.log(2 * np.pi))
            assert logp[i] == pytest.approx(expected, rel=1e-4, abs=1e-3), (min_std, i)
    mean_logp = chain_log_prob(sampler, _denoiser, params, obs, x, x_next, k, min_std=0.1, reduce="mean")
    np.testing.assert_allclose(mean_logp, chain_log_prob(sampler, _denoiser, params, obs, x, x_next, k,
                                                         min_std=0.1, reduce="sum") / 8, rtol=1e-5)
    # only the executed actions count
    first = chain_log_prob(sampler, _denoiser, params, obs, x, x_next, k, action_steps=2, reduce="sum")
    moved = x_next.at[:, 2:].add(5.0)
    np.testing.assert_allclose(first, chain_log_prob(sampler, _denoiser, params, obs, x, moved, k,
                                                     action_steps=2, reduce="sum"), rtol=1e-6)


def test_sampling_std_floor_and_frozen_early_steps():
    sampler = DDPM(train_steps=6, denoising_steps=6, schedule="linear", eta=1.0)
    obs = jnp.zeros((4000, 2))
    base, ft = {"w": jnp.float32(0.3)}, {"w": jnp.float32(-0.8)}
    chain_fn = jax.jit(lambda ft, obs, key: policy_chain(sampler, _denoiser, base, ft, 2, obs, key, 3, 2,
                                                         min_std=0.25))
    chunk, chain = chain_fn(ft, obs, jax.random.PRNGKey(0))
    assert chunk.shape == (4000, 3, 2) and chain.shape == (4000, 3, 3, 2)
    np.testing.assert_allclose(chunk, jnp.clip(chain[:, -1], -1, 1))
    # the last step has std 0 in DDPM: the floor sets its spread (noise clipped at 3 std barely changes it)
    mean_last, std_last = sampler.step_distribution(_denoiser, ft, obs, chain[:, -2], 5)
    assert float(std_last) == 0.0
    assert float(jnp.std(chain[:, -1] - mean_last)) == pytest.approx(0.25, rel=0.05)
    # the first K - K' steps run the frozen weights: the chain's start does not depend on the fine-tuned ones
    _, chain2 = chain_fn({"w": jnp.float32(2.0)}, obs, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(chain[:, 0], chain2[:, 0])
    assert not np.allclose(chain[:, 1], chain2[:, 1])
    grads = jax.jacrev(lambda p: chain_fn(p, obs[:8], jax.random.PRNGKey(1))[1][:, (0, -1)].sum((0, 2, 3)))(ft)
    assert float(grads["w"][0]) == 0.0 and float(grads["w"][1]) != 0.0


# --- the DPPO agent ---------------------------------------------------------------------------


def _dppo_config(**kw):
    c = dppo.get_config()
    c.horizon = c.action_steps = 2
    c.train_denoising_steps = c.denoising_steps = 5
    c.ft_denoising_steps = 3
    c.actor_hidden_dims = (32, 32)
    c.critic_hidden_dims = (32, 32)
    c.critic_warmup_iters = 0
    for k, v in kw.items():
        c[k] = v
    return c


def _bandit_rollout(agent, key, n=128):
    """One-chunk episodes (all terminated): reward 1 when the chunk's first action component is > 0.5."""
    obs = jnp.zeros((n, 3))
    chunk, extras = agent.act(obs, key)
    reward = (chunk[:, 0, 0] > 0.5).astype(jnp.float32)
    return {"obs": obs[None], "reward": reward[None], "discount": jnp.zeros((1, n)), "done": jnp.ones((1, n), bool),
            "next_obs": obs[None], **jax.tree.map(lambda x: x[None], extras)}


def test_first_ratio_is_one_and_critic_warmup_holds_the_actor():
    # one epoch, one minibatch holding every pair, one warm-up iteration: one compile serves both checks
    c = _dppo_config(num_epochs=1, minibatch_size=128 * 3, critic_warmup_iters=1)
    agent = DPPOAgent.create(0, 3, 2, c, num_envs=128)
    after, info = agent.update(_bandit_rollout(agent, jax.random.PRNGKey(1)))
    # 1 up to float rounding (the loss's log-probs are recomputed inside the gradient's own XLA program)
    assert abs(float(info["ratio_max"]) - 1.0) < 1e-5 and float(info["approx_kl"]) < 1e-10
    assert float(info["clip_frac"]) == 0.0 and float(info["updates"]) == 1
    # warm-up: the critic moved, the actor did not
    assert float(info["actor_on"]) == 0.0
    jax.tree.map(np.testing.assert_array_equal, after.actor.params, agent.actor.params)
    assert not all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), after.value.params,
                                                agent.value.params)))
    again, info = after.update(_bandit_rollout(after, jax.random.PRNGKey(2)))
    assert float(info["actor_on"]) == 1.0 and abs(float(info["ratio_max"]) - 1.0) < 1e-5
    assert not all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), again.actor.params,
                                                after.actor.params)))
    jax.tree.map(np.testing.assert_array_equal, again.base_params, agent.base_params)  # frozen steps stay

    pc = ppo.get_config()
    pc.num_epochs, pc.num_minibatches = 1, 1
    pagent = ppo.PPOAgent.create(0, 3, 2, pc)
    chunk, extras = pagent.act(jnp.ones((64, 3)), jax.random.PRNGKey(2))
    prollout = {"obs": jnp.ones((1, 64, 3)), "reward": chunk[None, :, 0, 0], "discount": jnp.zeros((1, 64)),
                "done": jnp.ones((1, 64), bool), "next_obs": jnp.ones((1, 64, 3)), "u": extras["u"][None]}
    _, pinfo = pagent.update(prollout)
    assert abs(float(pinfo["ratio_max"]) - 1.0) < 1e-5 and float(pinfo["approx_kl"]) < 1e-10
    assert float(pinfo["clip_frac"]) == 0.0


def test_dppo_lifts_a_weak_policy_on_a_bandit():
    """A fresh (untrained) DDPM actor hits the rewarded region ~30% of the time; DPPO must raise it clearly."""
    c = _dppo_config(actor_lr=1e-3, clip_eps=0.2, clip_eps_base=0.05, num_epochs=4, minibatch_size=128,
                     reward_scaling=False, target_kl=0.0)
    agent = DPPOAgent.create(0, 3, 2, c)
    update = jax.jit(lambda a, r: a.update(r))
    key = jax.random.PRNGKey(3)
    rates = []
    for _ in range(25):
        key, k = jax.random.split(key)
        rollout = _bandit_rollout(agent, k, n=256)
        rates.append(float(rollout["reward"].mean()))
        agent, info = update(agent, rollout)
    assert all(np.isfinite(float(v)) for v in info.values())
    assert np.mean(rates[-3:]) > rates[0] + 0.3, rates


def test_bad_dppo_fields_are_named():
    with pytest.raises(ValueError, match="agent.ft_denoising_steps"):
        DPPOAgent.check(_dppo_config(ft_denoising_steps=6))
    with pytest.raises(ValueError, match="agent.generative"):
        DPPOAgent.check(_dppo_config(generative="flow"))
    flow = _dppo_config(generative="flow")
    with pytest.raises(ValueError, match="agent.generative"):
        DPPOAgent.create(0, 3, 2, _dppo_config(), actor=Actor.create(jax.random.PRNGKey(0), 3, 2, flow))

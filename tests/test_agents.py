"""Agents: chunked TD targets, best-of-N, one-compile updates that lower their losses."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import bc, qc
from agents.common import StaticConfig
from agents.critic import td_target
from agents.select import best_of_n
from replay.chunks import training_batch

OBS, ACT, H = 6, 2, 5


def _steps(rewards, terminated, truncated, horizon=4):
    """One chunk of per-step data [1, horizon]; obs encode the step index."""
    idx = jnp.arange(horizon, dtype=jnp.float32)
    return {
        "obs": jnp.tile(idx[None, :, None], (1, 1, 3)), "next_obs": jnp.tile(idx[None, :, None] + 1, (1, 1, 3)),
        "action": jnp.tile(idx[None, :, None], (1, 1, 2)) / 10,
        "reward": jnp.asarray([rewards], jnp.float32),
        "terminated": jnp.asarray([terminated], bool), "truncated": jnp.asarray([truncated], bool),
        "valid": jnp.ones((1, horizon), bool),
    }


def test_chunked_td_target_hand_computed():
    gamma, next_q = 0.9, jnp.array([10.0])
    # no episode end in the executed h=3 steps: 1 + .9 + .81, bootstrap gamma^3
    b = training_batch(_steps([1, 1, 1, 5], [0, 0, 0, 0], [0, 0, 0, 0]), 3, gamma)
    np.testing.assert_allclose(td_target(b["reward_sum"], b["discount"], next_q), [2.71 + 0.729 * 10], rtol=1e-6)
    assert b["actions"].shape == (1, 4, 2) and b["critic_actions"].shape == (1, 3, 2)
    np.testing.assert_allclose(b["next_obs"], [[3, 3, 3]])  # s_{t+3}
    # terminated on step 1 (success): r0 + gamma r1, no bootstrap, chunk cut there
    b = training_batch(_steps([0, 1, 7, 7], [0, 1, 0, 0], [0, 0, 0, 0]), 3, gamma)
    np.testing.assert_allclose(td_target(b["reward_sum"], b["discount"], next_q), [0.9], rtol=1e-6)
    np.testing.assert_allclose(b["critic_actions"][0, 2], b["critic_actions"][0, 1])  # padded
    # truncated on step 1 (time limit): bootstrap from s_{t+2} with gamma^2
    b = training_batch(_steps([0.5, 0, 7, 7], [0, 0, 0, 0], [0, 1, 0, 0]), 3, gamma)
    np.testing.assert_allclose(td_target(b["reward_sum"], b["discount"], next_q), [0.5 + 0.81 * 10], rtol=1e-6)
    np.testing.assert_allclose(b["next_obs"], [[2, 2, 2]])


def test_best_of_n_picks_the_highest_value():
    chunks = jnp.arange(2 * 4 * H * ACT, dtype=jnp.float32).reshape(2, 4, H, ACT) % 7
    q_fn = lambda obs, c: -jnp.abs(c[:, :3].sum(axis=(1, 2)) - 20.0)  # noqa: E731  prefer a sum near 20
    best, q = best_of_n(chunks, q_fn, jnp.zeros((2, OBS)))
    for b in range(2):
        values = [-abs(float(chunks[b, i, :3].sum()) - 20.0) for i in range(4)]
        np.testing.assert_array_equal(best[b], chunks[b, int(np.argmax(values))])
        assert float(q[b]) == max(values)


def _config(module):
    c = module.get_config()
    c.horizon, c.action_steps, c.batch_size = H, H, 64
    c.actor_hidden_dims, c.denoising_steps = (64, 64), 4
    if "critic_hidden_dims" in c:
        c.critic_hidden_dims, c.num_samples, c.target_num_samples = (64, 64), 4, 2
    return c


def _batch(key, n=64):
    ks = jax.random.split(key, 5)
    obs = jax.random.normal(ks[0], (n, OBS))
    mixing = jax.random.normal(ks[1], (OBS, H * ACT))
    return {
        "obs": obs,
        "actions": jnp.tanh(obs @ mixing).reshape(n, H, ACT),  # a learnable chunk per observation
        "critic_actions": None, "reward_sum": jax.random.uniform(ks[2], (n,)),
        "discount": jnp.full((n,), 0.99**H) * (jax.random.uniform(ks[3], (n,)) > 0.2),
        "next_obs": jax.random.normal(ks[4], (n, OBS)), "valid": jnp.ones((n,)),
        "terminated": jnp.zeros((n,), bool),
    }


@pytest.fixture(scope="module")
def batch():
    b = _batch(jax.random.PRNGKey(0))
    b["critic_actions"] = b["actions"]
    return b


@pytest.mark.parametrize("generative", ["flow", "ddpm"])
def test_bc_update_traces_once_and_lowers_loss(batch, generative):
    config = _config(bc)
    config.generative = generative
    agent = bc.BCAgent.create(0, OBS, ACT, config)
    key = jax.random.PRNGKey(7)  # the same noise and times before and after training

    def loss(agent):
        return float(agent.actor.bc_loss(agent.actor.state.params, batch["obs"], batch["actions"],
                                         batch["valid"], key))

    before = loss(agent)
    chex.clear_trace_counter()
    update = jax.jit(chex.assert_max_traces(bc.BCAgent.update.__wrapped__, n=1))
    for _ in range(300):
        agent, _ = update(agent, batch)
    assert loss(agent) < 0.7 * before, (before, loss(agent))
    chunk = agent.sample_actions(batch["obs"], jax.random.PRNGKey(1))
    assert chunk.shape == (64, H, ACT) and float(jnp.abs(chunk).max()) <= 1.0


def test_qc_update_traces_once_and_lowers_losses(batch):
    agent = qc.QCAgent.create(0, OBS, ACT, _config(qc))
    key = jax.random.PRNGKey(7)

    def losses(agent):
        c = agent.critic
        target = td_target(batch["reward_sum"], batch["discount"],
                           c.target_value(batch["next_obs"], agent.target_rule(batch["next_obs"], key)))
        critic, _ = c.loss(c.state.params, batch, target)
        actor = agent.actor.bc_loss(agent.actor.state.params, batch["obs"], batch["actions"], batch["valid"], key)
        return float(critic), float(actor)

    before = losses(agent)
    chex.clear_trace_counter()
    update = jax.jit(chex.assert_max_traces(qc.QCAgent.update.__wrapped__, n=1))
    for _ in range(300):
        agent, _ = update(agent, batch)
    after = losses(agent)
    assert after[0] < 0.7 * before[0] and after[1] < 0.7 * before[1], (before, after)
    # the jitted method itself also compiles once for repeated calls
    for _ in range(2):
        agent, _ = agent.update(batch)
        agent.sample_actions(batch["obs"], jax.random.PRNGKey(0))
    assert qc.QCAgent.update._cache_size() == 1
    assert qc.QCAgent.sample_actions._cache_size() == 1


def test_static_config_compares_by_value_so_jit_never_mixes_configs():
    # jit keys its cache on the agent's static config: configs that differ in one
    # field must not compare equal, equal ones (even as different objects) must
    a, b = StaticConfig(_config(qc)), StaticConfig(_config(qc))
    assert a == a and a == b and hash(a) == hash(b)
    other = _config(qc)
    other.num_samples += 1
    assert a != StaticConfig(other)
    small = qc.QCAgent.create(0, OBS, ACT, other).replace(config=StaticConfig(other))
    big = qc.QCAgent.create(0, OBS, ACT, _config(qc))
    assert small.sample_actions(jnp.zeros((1, OBS)), jax.random.PRNGKey(0)).shape == (1, H, ACT)
    assert big.sample_actions(jnp.zeros((1, OBS)), jax.random.PRNGKey(0)).shape == (1, H, ACT)
    assert qc.QCAgent.sample_actions._cache_size() >= 2


def test_qc_acts_best_of_n_under_its_critic(batch):
    agent = qc.QCAgent.create(0, OBS, ACT, _config(qc))
    obs = batch["obs"][:8]
    chunk = agent.sample_actions(obs, jax.random.PRNGKey(3))
    # the same candidates, scored by the agent's critic: the chosen one has the max value
    cands = agent.actor.sample(obs, jax.random.PRNGKey(3), agent.config.num_samples)
    q = agent.critic.state.apply_fn(agent.critic.state.params, jnp.repeat(obs, 4, 0),
                              cands.reshape(32, H, ACT)).mean(0).reshape(8, 4)
    expected = cands[jnp.arange(8), jnp.argmax(q, axis=1)]
    np.testing.assert_allclose(chunk, expected, atol=1e-6)


@pytest.mark.parametrize("field,value", [("num_samples", 0), ("target_num_samples", 0), ("action_steps", 6)])
def test_qc_create_rejects_bad_config(field, value):
    c = _config(qc)
    c[field] = value
    with pytest.raises(ValueError, match=f"agent.{field}"):
        qc.QCAgent.create(0, OBS, ACT, c)


def test_qc_td_target_uses_the_polyak_target_critic(batch):
    """The TD target is ``r + gamma^h (1 - term) max_i Q_target(s', a'_i)``, with the *target* critic.

    The target critic gets other weights than the online one, so a target
    computed with the online critic (a classic bug) gives other numbers.
    """
    agent = qc.QCAgent.create(0, OBS, ACT, _config(qc))
    other = qc.QCAgent.create(5, OBS, ACT, _config(qc))  # same structure, other weights
    agent = agent.replace(critic=agent.critic.replace(target_params=other.critic.state.params))
    key = jax.random.PRNGKey(11)
    _, info = agent.critic.update(batch, agent.target_rule, key)
    # by hand: the same candidates (same key), scored and selected by the target critic's ensemble mean
    n = agent.config.target_num_samples
    cands = agent.actor.sample(batch["next_obs"], key, n)
    q_t = agent.critic.state.apply_fn(agent.critic.target_params, jnp.repeat(batch["next_obs"], n, 0),
                                cands.reshape(-1, H, ACT)).mean(0).reshape(-1, n)
    expected = batch["reward_sum"] + batch["discount"] * q_t.max(axis=1)
    np.testing.assert_allclose(float(info["target_mean"]), float(expected.mean()), rtol=1e-5)
    q_online = agent.critic.state.apply_fn(agent.critic.state.params, jnp.repeat(batch["next_obs"], n, 0),
                                     cands.reshape(-1, H, ACT)).mean(0).reshape(-1, n)
    wrong = batch["reward_sum"] + batch["discount"] * q_online.max(axis=1)
    assert abs(float(wrong.mean()) - float(expected.mean())) > 1e-3  # the test can tell them apart


def test_qc_update_moves_the_target_by_polyak_averaging(batch):
    agent = qc.QCAgent.create(0, OBS, ACT, _config(qc))
    other = qc.QCAgent.create(5, OBS, ACT, _config(qc)).critic.state.params
    agent = agent.replace(critic=agent.critic.replace(target_params=other))
    new, _ = agent.update(batch)
    tau = agent.config.tau
    for old_t, p, t in zip(jax.tree.leaves(agent.critic.target_params), jax.tree.leaves(new.critic.state.params),
                           jax.tree.leaves(new.critic.target_params)):
        np.testing.assert_allclose(t, (1 - tau) * old_t + tau * p, rtol=1e-5, atol=1e-6)

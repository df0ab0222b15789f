"""PPO baseline: GAE against hand-computed values, the agent's update, and a learning test."""

from __future__ import annotations

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import ppo
from agents.ppo import PPOAgent, RunningNorm, gae


def _gae(**kw):
    arrays = {k: jnp.asarray(np.array(v).T) for k, v in kw.items()}  # given per env as [N, T] -> [T, N]
    adv, ret = gae(arrays["reward"], arrays["value"], arrays["next_value"], arrays["terminated"],
                   arrays["truncated"], discount=0.9, lam=0.5)
    return np.asarray(adv).T, np.asarray(ret).T


def test_gae_hand_computed_truncation_vs_termination():
    # gamma=0.9, lambda=0.5, V(s_t)=0.5 everywhere. Env 0: no episode end; env 1 ends at t=1 by the
    # time limit (bootstraps V(s'_1)=2), env 2 ends at t=1 by termination (no bootstrap); envs 1 and 2
    # then start a new episode that terminates at t=2 (V(s'_2)=3 must be ignored).
    adv, ret = _gae(reward=[[1, 1, 1]] * 3, value=[[0.5] * 3] * 3,
                    next_value=[[0.5, 0.5, 2.0], [0.5, 2.0, 3.0], [0.5, 2.0, 3.0]],
                    terminated=[[0, 0, 0], [0, 0, 1], [0, 1, 1]], truncated=[[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    # env 0: deltas 0.95, 0.95, 2.3; A2 = 2.3, A1 = 0.95 + 0.45 * 2.3, A0 = 0.95 + 0.45 * A1
    a1 = 0.95 + 0.45 * 2.3
    np.testing.assert_allclose(adv[0], [0.95 + 0.45 * a1, a1, 2.3], rtol=1e-6)
    # env 1: delta1 = 1 + 0.9 * 2 - 0.5 = 2.3 (bootstrapped), not chained into t=2 (delta2 = 0.5)
    np.testing.assert_allclose(adv[1], [0.95 + 0.45 * 2.3, 2.3, 0.5], rtol=1e-6)
    # env 2: delta1 = 1 - 0.5 = 0.5 (terminated: no bootstrap)
    np.testing.assert_allclose(adv[2], [0.95 + 0.45 * 0.5, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + 0.5, rtol=1e-6)


def test_gae_with_unit_lambda_and_discount_is_monte_carlo():
    rng = np.random.default_rng(0)
    reward, value = rng.normal(size=(1, 6)), rng.normal(size=(1, 6))
    next_value = np.concatenate([value[:, 1:], rng.normal(size=(1, 1))], axis=1)  # V(s'_t) = V(s_{t+1})
    adv = np.asarray(gae(*(jnp.asarray(x.T) for x in (reward, value, next_value)),
                         jnp.zeros((6, 1), bool), jnp.zeros((6, 1), bool), discount=1.0, lam=1.0)[0]).T
    # A_t = sum_{k>=t} r_k + V(s'_{T-1}) - V(s_t)
    expected = np.cumsum(reward[0][::-1])[::-1] + next_value[0, -1] - value[0]
    np.testing.assert_allclose(adv[0], expected, rtol=1e-5, atol=1e-5)


def test_running_norm_matches_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(3.0, 2.0, size=(50, 4)), rng.normal(-1.0, 0.5, size=(7, 3, 4))
    norm = RunningNorm.create(4).update(jnp.asarray(a)).update(jnp.asarray(b))
    both = np.concatenate([a, b.reshape(-1, 4)])
    np.testing.assert_allclose(norm.mean, both.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.var, both.var(0), rtol=1e-4)
    assert float(norm.count) == len(both)
    assert np.allclose(RunningNorm.create(4)(jnp.ones(4)), 1.0)  # identity before any data


def _bandit_rollout(agent, key, n=256):
    """One-step episodes (all terminated): reward 1 when the action's first component is > 0.3."""
    obs = jnp.ones((1, n, 3))
    action, u = agent.act(obs[0], key)
    return {"obs": obs, "u": u[None], "reward": (action[None, :, 0] > 0.3).astype(jnp.float32),
            "next_obs": obs, "terminated": jnp.ones((1, n), bool), "truncated": jnp.zeros((1, n), bool)}


def test_update_traces_once_and_improves_a_bandit_policy():
    config = ppo.get_config()
    config.num_minibatches, config.num_epochs, config.lr = 4, 4, 3e-3
    config.policy_hidden_dims = config.value_hidden_dims = (16, 16)
    agent = PPOAgent.create(0, 3, 2, config)
    update = chex.assert_max_traces(PPOAgent.update.__wrapped__, n=1)
    update = jax.jit(update)
    mean0 = float(agent.mean_actions(jnp.ones((1, 3)))[0, 0, 0])
    key = jax.random.PRNGKey(1)
    rewards = []
    for _ in range(12):
        key, k = jax.random.split(key)
        rollout = _bandit_rollout(agent, k)
        rewards.append(float(rollout["reward"].mean()))
        agent, info = update(agent, rollout)
    assert all(np.isfinite(float(v)) for v in info.values())
    assert float(info["approx_kl"]) > 0
    mean1 = float(agent.mean_actions(jnp.ones((1, 3)))[0, 0, 0])
    assert mean1 > mean0 + 0.3, (mean0, mean1)  # the rewarded direction
    assert np.mean(rewards[-3:]) > rewards[0] + 0.2, rewards
    assert float(agent.obs_norm.count) == 12 * 256


def test_bad_squash_is_rejected():
    config = ppo.get_config()
    config.squash = "sigmoid"
    with pytest.raises(ValueError, match="agent.squash"):
        PPOAgent.create(0, 3, 2, config)


# --- learning test -----------------------------------------------------------------------------
# CartpoleBalance with 200-step episodes: the zero action scores about 139, a std-0.5 random policy
# about 124, a balancing policy close to 200 (measured with seed 0, 64 episodes each). With these
# settings seeds 0-3 reached 199.3-199.8 (deterministic policy) after 300k env steps.

LEARN_EPISODE_LENGTH = 200
LEARN_THRESHOLD = 185.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """PPO trained once for the module on CartpoleBalance (200-step episodes): ``(config, agent, summary)``."""
    from configs.ppo import get_config
    from launch import ppo as ppo_loop

    config = get_config("cartpole_balance")
    config.run_dir = str(tmp_path_factory.mktemp("ppo") / "run")
    config.env.episode_length = LEARN_EPISODE_LENGTH
    config.env.num_envs = 128
    config.env.num_eval_episodes = 16
    config.agent.rollout_length = 16
    config.agent.num_minibatches = 4
    config.agent.num_epochs = 8
    config.train.env_steps = 300_000
    lines = []
    agent, summary = ppo_loop.train(config, log=lines.append)
    summary["lines"] = lines
    return config, agent, summary


def test_ppo_learns_cartpole_balance(trained):
    config, _, summary = trained
    ret = summary["eval"]["deterministic"]["return_mean"]
    assert ret > LEARN_THRESHOLD, (ret, summary["lines"])
    assert summary["eval"]["stochastic"]["return_mean"] > LEARN_THRESHOLD - 10
    assert summary["compiles"]["train"] == 1
    assert summary["env_steps"] >= config.train.env_steps


def test_run_folder_and_checkpoint_round_trip(trained):
    from launch import ppo as ppo_loop

    config, agent, summary = trained
    for name in ("config.json", "metrics.csv", "summary.json"):
        assert os.path.exists(os.path.join(config.run_dir, name))
    with open(os.path.join(config.run_dir, "summary.json")) as f:
        assert json.load(f)["env_steps"] == summary["env_steps"]
    with open(os.path.join(config.run_dir, "metrics.csv")) as f:
        header = f.readline()
    assert "episode_return" in header and "value_loss" in header
    restored = ppo_loop.restore_agent(config.run_dir, config)
    obs = jnp.ones((2, 5))
    np.testing.assert_allclose(restored.mean_actions(obs), agent.mean_actions(obs), rtol=1e-6)
    with pytest.raises(FileExistsError, match="run_dir"):  # never overwrites a trained agent
        ppo_loop.train(config, log=lambda _: None)


def test_policy_demos_from_a_trained_policy(trained, data_dir):
    from launch.policy_demos import ppo_dataset

    config, _, summary = trained
    steps, card = ppo_dataset("playground:CartpoleBalance", 4, 0, data_dir, log=lambda _: None, config=config)
    assert card["num_episodes"] == 4 and card["num_steps"] == 4 * LEARN_EPISODE_LENGTH
    assert steps["obs"].shape == (4 * LEARN_EPISODE_LENGTH, 5) and steps["action"].shape == (800, 1)
    assert np.abs(steps["action"]).max() <= 1.0
    assert steps["truncated"].sum() == 4 and not steps["terminated"].any()
    assert (steps["mode"] == -1).all() and not steps["success"].any()
    assert card["return"]["min"] > LEARN_THRESHOLD - 20  # the stochastic policy balances
    assert card["return"]["min"] <= card["return"]["mean"] <= card["return"]["max"]
    assert card["policy"]["env_steps"] == summary["env_steps"] and card["seed"] == 0
    again, _ = ppo_dataset("playground:CartpoleBalance", 4, 0, data_dir, log=lambda _: None, config=config)
    np.testing.assert_array_equal(again["obs"], steps["obs"])  # loaded from the cache


def test_train_cli_dispatches_ppo_and_rejects_bad_fields_before_work(tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "launch", "train.py"), "--config=configs/ppo.py:smoke",
                          "--config.agent.num_minibatches=3", f"--config.run_dir={tmp_path / 'run'}"],
                         check=False, cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "config.agent.num_minibatches" in out.stderr and "divisor" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "run").exists()  # rejected before the run folder was made

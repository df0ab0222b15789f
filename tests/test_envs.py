"""The default task, its wrappers, the chunk executor and the scripted expert."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import demos
from envs.chunk import execute_chunk, rollout_episodes
from envs.point_obstacle import hits_wall
from envs.wrappers import VecEnv


def test_registry_names_and_unknown_task():
    assert "point_obstacle" in envs.names()
    with pytest.raises(ValueError, match="env.name.*point_obstacle"):
        envs.make("no_such_task")


EPISODE_LENGTH = 40


@pytest.fixture(scope="module")
def vec(task):
    """One batched env and its jitted functions, compiled once for the module."""
    env = VecEnv(task, num_envs=8, episode_length=EPISODE_LENGTH)
    env.jit_reset, env.jit_step = jax.jit(env.reset), jax.jit(env.step)
    return env


def _push(vec, direction, steps, seed=0):
    """Applies a constant action; returns the state at each env's first episode end (or the last)."""
    state = vec.jit_reset(jax.random.PRNGKey(seed))
    action = jnp.tile(jnp.asarray([direction], jnp.float32), (vec.num_envs, 1))
    for _ in range(steps):
        active = state.done == 0  # VecEnv.step does not freeze ended episodes: keep the first end
        state = jax.tree.map(lambda n, o: jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o),
                             vec.jit_step(state, action), state)
    return state


def test_batch_reset_and_step_shapes_finite(vec, task):
    state = vec.jit_reset(jax.random.PRNGKey(0))
    assert state.obs.shape == (8, task.observation_size) == (8, 6)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (8, 2), minval=-1, maxval=1)
    for _ in range(3):
        state = vec.jit_step(state, actions)
    assert state.obs.shape == (8, 6) and state.reward.shape == (8,)
    assert np.isfinite(np.asarray(state.obs)).all()
    assert np.asarray(state.info["steps"]).tolist() == [3] * 8
    assert float(jnp.abs(state.obs[:, 2:4]).mean()) > 1e-3  # the disc moved under the applied force


def test_truncation_and_termination_are_distinct(vec):
    # pushing left, away from goal and wall: only the time limit can end the episode
    state = _push(vec, [-1.0, 0.0], EPISODE_LENGTH)
    assert np.asarray(state.info["truncated"]).all()
    assert not np.asarray(state.info["terminated"]).any()
    assert np.asarray(state.done).all()
    # driving right into the wall terminates (failure), without truncation
    state = _push(vec, [1.0, 0.0], EPISODE_LENGTH, seed=1)
    assert np.asarray(state.info["terminated"]).all()
    assert not np.asarray(state.info["truncated"]).any()
    assert not np.asarray(state.info["success"]).any()
    assert np.asarray(hits_wall(state.obs[:, :2])).all()
    assert float(state.info["episode_return"].sum()) == 0.0


def test_chunk_executor_cuts_at_episode_end_and_resets(vec):
    state = _push(vec, [0.0, 0.0], EPISODE_LENGTH - 4)  # 4 steps left before the time limit
    run = jax.jit(execute_chunk, static_argnums=(0, 3))
    state, steps = run(vec, state, jnp.zeros((8, 6, 2)), 6, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(np.asarray(steps["valid"]), np.array([[1, 1, 1, 1, 0, 0]] * 8, bool))
    np.testing.assert_array_equal(np.asarray(steps["truncated"])[:, 3], True)
    assert not np.asarray(steps["truncated"])[:, 4:].any()
    assert np.asarray(steps["episode_end"]).all()
    assert np.asarray(steps["episode_length"]).tolist() == [EPISODE_LENGTH] * 8
    # ended envs were reset: a fresh episode, step counter 0
    assert np.asarray(state.info["steps"]).tolist() == [0] * 8
    assert np.asarray(state.done).sum() == 0
    with pytest.raises(ValueError, match="action_steps"):
        execute_chunk(vec, state, jnp.zeros((8, 6, 2)), action_steps=7)


def test_rollout_episodes_runs_one_episode_each(vec):
    def policy(obs, key):
        return jnp.zeros((obs.shape[0], 5, 2))

    out = jax.jit(rollout_episodes, static_argnums=(0, 1, 3))(vec, policy, jax.random.PRNGKey(0), 5)
    assert np.asarray(out["length"]).tolist() == [EPISODE_LENGTH] * 8  # idle disc: all hit the time limit
    assert not np.asarray(out["success"]).any()


@pytest.fixture(scope="module")
def expert_episodes():
    return demos.collect_expert_episodes("point_obstacle", num_episodes=400, seed=123)


def test_expert_success_rate_and_both_modes(expert_episodes):
    episodes = expert_episodes
    stats = demos.episode_stats(episodes)
    # Stated in envs/point_obstacle.py and the dataset card: about 0.74 overall.
    assert 0.62 <= stats["success_rate"] <= 0.85, stats
    assert 0.4 <= stats["mode_split"]["0"] <= 0.6, stats
    for mode in ("0", "1"):
        assert stats["success_by_mode"][mode] >= 0.55, stats
    # both failure kinds occur, so the data is realistically imperfect
    assert stats["failed_terminated"] > 0.05 and stats["failed_timeout"] > 0.0, stats
    # successful episodes really pass above (mode 0) or below (mode 1) the wall; a sloppy
    # expert may change its mind, so allow a few exceptions
    agree = [(ep["obs"][np.argmin(np.abs(ep["obs"][:, 0])), 1] > 0) == (ep["mode"] == 0)
             for ep in episodes if ep["success"]]
    assert np.mean(agree) > 0.95, np.mean(agree)


def test_mode_classifier_labels_each_side(expert_episodes, vec):
    """``info['mode']``: the side of the wall a successful expert passed (a sloppy one may switch: 5% slack)."""
    won = [ep for ep in expert_episodes if ep["success"]]
    for m in (0, 1):
        seen = np.array([ep["observed_mode"] for ep in won if ep["mode"] == m])
        assert len(seen) >= 50 and (seen == m).mean() >= 0.95, (m, seen)
    # driven straight right from the start: it hits the wall, and the episode has no mode
    state = _push(vec, [1.0, 0.0], EPISODE_LENGTH)
    hit = np.asarray(state.info["terminated"] & ~state.info["success"])
    assert hit.any() and (np.asarray(state.info["mode"])[hit] == -1).all()


def test_expert_is_reproducible_from_seed(expert_episodes):
    again = demos.collect_expert_episodes("point_obstacle", num_episodes=400, seed=123)  # compiled already
    other = demos.collect_expert_episodes("point_obstacle", num_episodes=400, seed=124)
    for i in (0, 17, 399):
        np.testing.assert_array_equal(expert_episodes[i]["action"], again[i]["action"])
    assert not np.array_equal(expert_episodes[0]["obs"][0], other[0]["obs"][0])


def test_sloppy_share_sets_the_data_quality_and_names_the_dataset(tmp_path):
    """``sloppy_prob``: all-clean data succeed far more often than all-sloppy data; the dataset's name and card say so."""
    quiet = {"log": lambda *_: None, "progress": False}
    _, clean = demos.expert_dataset("point_obstacle", 64, 5, str(tmp_path), sloppy_prob=0.0, **quiet)
    _, sloppy = demos.expert_dataset("point_obstacle", 64, 5, str(tmp_path), sloppy_prob=1.0, **quiet)
    assert clean["success_rate"] > 0.75 and sloppy["success_rate"] < 0.3, (clean, sloppy)
    assert clean["sloppy_prob"] == 0.0 and sloppy["sloppy_prob"] == 1.0
    for name in ("point_obstacle_n64_s5_sloppy0", "point_obstacle_n64_s5_sloppy1"):
        assert os.path.isdir(tmp_path / name)
    assert demos.dataset_name("point_obstacle", 50, 0) == "point_obstacle_n50_s0"  # the expert's own share: no suffix
    assert demos.dataset_name("point_obstacle", 50, 0, 0.5) == "point_obstacle_n50_s0_sloppy0.5"
    with pytest.raises(ValueError, match="data.sloppy_prob"):
        demos.expert_dataset("point_obstacle", 50, 0, str(tmp_path), sloppy_prob=1.5)


def test_rollout_discounted_return_and_first_chunk(task):
    """``discounted_return`` is ``gamma^(T-1)`` for a success on step T (reward 1 once), 0 otherwise."""
    vec = VecEnv(task, 8, 100)  # long enough to reach the goal (about 60 steps)

    def policy(obs, key):  # around the wall above it, then to the goal; one action held for the chunk
        pos, vel, goal = obs[:, :2], obs[:, 2:4], obs[:, 4:6]
        target = jnp.where(pos[:, :1] < -0.3, jnp.array([-0.25, 0.68]),
                           jnp.where(pos[:, :1] < 0.25, jnp.array([0.25, 0.68]), goal))
        action = jnp.clip(6.0 * (target - pos) - 1.5 * vel, -1.0, 1.0)
        return jnp.repeat(action[:, None], 5, axis=1)

    gamma = 0.9
    out = jax.jit(rollout_episodes, static_argnums=(0, 1, 3, 4))(vec, policy, jax.random.PRNGKey(1), 2, gamma)
    success, length = np.asarray(out["success"]), np.asarray(out["length"])
    assert success.any(), length
    expected = np.where(success, gamma ** (length - 1.0), 0.0)
    np.testing.assert_allclose(out["discounted_return"], expected, rtol=1e-5)
    np.testing.assert_allclose(out["first_chunk"], policy(out["obs"][0], None))

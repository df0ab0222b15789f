"""Gymnasium adapters: check_env on GymEnv, batched VectorEnv with NEXT_STEP autoreset."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from envs.gym_adapter import GymEnv, VectorEnv
from envs.point_obstacle import GOAL_HIGH, GOAL_LOW, START_HIGH, START_LOW, WALL_HALF
from envs.render import gl_available

NUM_ENVS, EPISODE_LENGTH = 4, 80


def waypoint_action(obs: np.ndarray) -> np.ndarray:
    """Noise-free PD controller over the wall to the goal (point_obstacle obs [..., 6] -> action [..., 2])."""
    pos, vel, goal = obs[..., :2], obs[..., 2:4], obs[..., 4:6]
    x = pos[..., :1]
    target = np.where(x < -0.3, [-0.25, 0.68], np.where(x < 0.25, [0.25, 0.68], goal))
    return np.clip(6.0 * (target - pos) - 1.5 * vel, -1.0, 1.0).astype(np.float32)


def assert_fresh_episode(obs: np.ndarray) -> None:
    """obs [6] is a point_obstacle reset observation: start and goal in their boxes, at rest."""
    assert START_LOW[0] <= obs[0] <= START_HIGH[0] and START_LOW[1] <= obs[1] <= START_HIGH[1], obs
    np.testing.assert_array_equal(obs[2:4], 0.0)
    assert GOAL_LOW[0] <= obs[4] <= GOAL_HIGH[0] and GOAL_LOW[1] <= obs[5] <= GOAL_HIGH[1], obs


@pytest.fixture(scope="module")
def gym_env():
    env = GymEnv("point_obstacle", render_mode="rgb_array" if gl_available() else None)
    yield env
    env.close()


@pytest.fixture(scope="module")
def vec():
    return VectorEnv("point_obstacle", NUM_ENVS, seed=0, episode_length=EPISODE_LENGTH)


def test_check_env_passes_and_compiles_once(gym_env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym_env, skip_render_check=gym_env.render_mode is None)
    expected = ("infinity", "not having a spec")  # unbounded observations; no gymnasium registration
    unexpected = [str(w.message) for w in caught if not any(e in str(w.message) for e in expected)]
    assert not unexpected, unexpected
    assert gym_env._reset_fn._cache_size() == 1 and gym_env._step_fn._cache_size() == 1
    assert gym_env.metadata["render_fps"] == pytest.approx(20.0)  # ctrl_dt 0.05 s


def test_gym_env_termination_truncation_success(gym_env):
    env = gym_env
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (6,) and info == {"success": False}
    assert_fresh_episode(obs)
    # pushing left: only the time limit (100 steps) ends the episode
    for t in range(1, env.episode_length + 1):
        obs, reward, terminated, truncated, info = env.step(np.array([-1.0, 0.0], np.float32))
        assert type(terminated) is bool and type(truncated) is bool and type(reward) is float
        assert not terminated and truncated == (t == env.episode_length) and reward == 0.0
    # pushing right: the wall terminates the episode (failure), no truncation
    env.reset(seed=4)
    for t in range(1, 40):
        obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], np.float32))
        if terminated:
            break
    assert terminated and not truncated and not info["success"] and reward == 0.0
    assert abs(obs[0]) < WALL_HALF[0] + 0.05 + 1e-6
    # the waypoint controller reaches the goal: terminated with success and reward 1
    obs, _ = env.reset(seed=5)
    for t in range(1, env.episode_length):
        obs, reward, terminated, truncated, info = env.step(waypoint_action(obs))
        if terminated or truncated:
            break
    assert terminated and not truncated and info["success"] and reward == 1.0
    assert np.linalg.norm(obs[:2] - obs[4:6]) < 0.1
    assert env._step_fn._cache_size() == 1


def test_gym_env_seeding_render_and_errors(gym_env):
    first = gym_env.reset(seed=11)[0]
    np.testing.assert_array_equal(gym_env.reset(seed=11)[0], first)
    assert not np.array_equal(gym_env.reset(seed=12)[0], first)
    seeded = GymEnv("point_obstacle", seed=11)
    with pytest.raises(gymnasium.error.ResetNeeded):
        seeded.step(np.zeros(2, np.float32))
    gym_env.reset(seed=11)
    with pytest.raises(ValueError, match=r"action \[action_size\] must have shape \(2,\), got \(1, 2\)"):
        gym_env.step(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="NaN"):
        gym_env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="render_mode"):
        GymEnv("point_obstacle", render_mode="human")
    if gym_env.render_mode is not None:
        frame = gym_env.render()
        assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8 and frame.std() > 10
        gym_env.reset(seed=12)
        assert np.abs(gym_env.render().astype(int) - frame).sum() > 0  # another start and goal


def test_vector_spaces_and_seeding(vec):
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vec.single_observation_space.shape == (6,) and vec.single_observation_space.dtype == np.float32
    assert vec.observation_space.shape == (NUM_ENVS, 6)
    assert vec.action_space.shape == (NUM_ENVS, 2)
    np.testing.assert_array_equal(vec.single_action_space.low, -1.0)
    np.testing.assert_array_equal(vec.single_action_space.high, 1.0)
    obs, infos = vec.reset(seed=5)
    assert obs.dtype == np.float32 and obs.shape == (NUM_ENVS, 6) and obs in vec.observation_space
    assert len({tuple(o) for o in obs}) == NUM_ENVS  # independent episodes
    np.testing.assert_array_equal(vec.reset(seed=5)[0], obs)
    assert not np.array_equal(vec.reset(seed=6)[0], obs)
    assert infos["success"].shape == (NUM_ENVS,) and not infos["_episode_return"].any()


def test_vector_steps_batch_with_next_step_autoreset(vec):
    """env 0 reaches the goal, env 1 hits the wall (twice), envs 2-3 hit the time limit."""
    env = RecordEpisodeStatistics(vec)  # gymnasium's own episode counting, to cross-check ours
    obs, _ = env.reset(seed=1)
    start = np.zeros(NUM_ENVS, int)  # step index before each env's current episode
    prev_done = np.zeros(NUM_ENVS, bool)
    ends = {i: [] for i in range(NUM_ENVS)}
    for t in range(1, EPISODE_LENGTH + 3):
        actions = np.empty((NUM_ENVS, 2), np.float32)
        actions[0] = waypoint_action(obs[0])
        actions[1] = [1.0, 0.0]
        actions[2:] = [-1.0, 0.0]
        obs, reward, terminated, truncated, info = env.step(actions)
        assert obs.dtype == np.float32 and obs.shape == (NUM_ENVS, 6)
        assert reward.dtype == np.float32 and terminated.dtype == bool and truncated.dtype == bool
        assert not (terminated & truncated).any()
        for i in np.flatnonzero(prev_done):  # the step after an end: a new episode, action ignored
            assert_fresh_episode(obs[i])
            assert reward[i] == 0.0 and not terminated[i] and not truncated[i] and not info["success"][i]
            start[i] = t
        done = terminated | truncated
        np.testing.assert_array_equal(info["_episode_length"], done)
        for i in np.flatnonzero(done):
            ends[i].append((t, bool(terminated[i]), bool(info["success"][i]), float(reward[i])))
            assert info["episode_length"][i] == t - start[i] == info["episode"]["l"][i]
            assert info["episode_return"][i] == pytest.approx(info["episode"]["r"][i])
        prev_done = done
    (t0, term0, succ0, rew0), *_ = ends[0]
    assert term0 and succ0 and rew0 == 1.0 and t0 < EPISODE_LENGTH
    assert len(ends[1]) >= 2 and all(term and not succ for _, term, succ, _ in ends[1])
    for i in (2, 3):
        assert ends[i] == [(EPISODE_LENGTH, False, False, 0.0)]  # truncated exactly at the limit
    assert vec._step_fn._cache_size() == 1 and vec._reset_fn._cache_size() == 1


def test_vector_rejects_bad_actions(vec):
    with pytest.raises(gymnasium.error.ResetNeeded):
        VectorEnv("point_obstacle", 2).step(np.zeros((2, 2)))
    vec.reset(seed=0)
    before = np.asarray(vec.state.obs).copy()
    with pytest.raises(ValueError, match=r"actions \[num_envs, action_size\] must have shape \(4, 2\), got \(3, 2\)"):
        vec.step(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"must have shape \(4, 2\), got \(2,\)"):
        vec.step(np.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        vec.step(np.full((4, 2), np.inf))
    np.testing.assert_array_equal(np.asarray(vec.state.obs), before)  # a rejected step changes nothing

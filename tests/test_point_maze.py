"""The long-horizon maze: walls, batch stepping and the two-route scripted expert."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import demos, point_maze
from envs.wrappers import VecEnv


@pytest.fixture(scope="module")
def vec():
    env = VecEnv(envs.make("point_maze"), num_envs=8, episode_length=60)
    env.jit_reset, env.jit_step = jax.jit(env.reset), jax.jit(env.step)
    return env


def test_batch_reset_and_step_finite(vec):
    state = vec.jit_reset(jax.random.PRNGKey(0))
    assert state.obs.shape == (8, 6)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (8, 2), minval=-1, maxval=1)
    for _ in range(3):
        state = vec.jit_step(state, actions)
    assert np.isfinite(np.asarray(state.obs)).all()
    assert float(jnp.abs(state.obs[:, 2:4]).mean()) > 1e-3


def test_walls_block_without_ending_the_episode(vec):
    state = vec.jit_reset(jax.random.PRNGKey(2))
    push_right = jnp.tile(jnp.array([[1.0, 0.0]]), (8, 1))
    xs = []
    for _ in range(40):
        state = vec.jit_step(state, push_right)
        xs.append(np.asarray(state.obs[:, 0]))
    wall_left_face = point_maze.cell_center(4, 2)[0] - point_maze.CELL / 2
    assert (np.array(xs) <= wall_left_face - point_maze.DISC_RADIUS + 1e-5).all()  # never enters the wall
    assert xs[-1].max() > wall_left_face - point_maze.DISC_RADIUS - 0.02          # but is pressed against it
    np.testing.assert_allclose(np.asarray(state.obs[:, 2]), 0.0, atol=1e-6)        # stopped along x
    assert not np.asarray(state.info["terminated"]).any()
    assert not np.asarray(point_maze.in_wall(state.obs[:, :2])).any()


@pytest.fixture(scope="module")
def episodes():
    return demos.collect_expert_episodes("point_maze", num_episodes=256, seed=7)


def test_mode_classifier_labels_each_route(episodes):
    """``info['mode']`` (the half of the maze entered first) equals the expert's route on its successes."""
    won = [ep for ep in episodes if ep["success"]]
    for m in (0, 1):
        seen = np.array([ep["observed_mode"] for ep in won if ep["mode"] == m])
        assert len(seen) >= 20 and (seen == m).all(), (m, seen)


def test_expert_success_modes_and_route(episodes):
    stats = demos.episode_stats(episodes)
    assert abs(stats["success_rate"] - point_maze.EXPERT_SUCCESS) < 0.1, stats
    assert 0.35 <= stats["mode_split"]["0"] <= 0.65, stats
    assert min(stats["success_by_mode"].values()) > 0.5, stats
    assert stats["episode_length"]["min"] > 200, stats        # long horizon: no short cut exists
    all_pos = np.concatenate([ep["obs"][:, :2] for ep in episodes] + [ep["next_obs"][:, :2] for ep in episodes])
    assert not np.asarray(point_maze.in_wall(all_pos)).any()
    for ep in episodes:
        if ep["success"]:  # mode 0 went through the upper half, mode 1 through the lower half
            assert (ep["obs"][:, 1].max() > 2.0) == (ep["mode"] == 0)
            assert (ep["obs"][:, 1].min() < -2.0) == (ep["mode"] == 1)
            assert ep["reward"].sum() == 1.0 and ep["terminated"][-1]

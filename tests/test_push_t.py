"""The Push-T task: batched stepping, contact physics, success and termination, the scripted expert.

One jitted reset and one jitted step (batch 128) serve every test. The expert
is rolled out with that same step in a Python loop rather than through
``envs.demos`` (whose scan would compile the contact-rich step a second time).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import push_t
from envs.wrappers import VecEnv, select

N = 128


@pytest.fixture(scope="module")
def vec():
    """The batched task and its jitted functions, compiled once for the module."""
    env = VecEnv(envs.make("push_t"), num_envs=N, episode_length=200)
    env.jit_reset, env.jit_step = jax.jit(env.reset), jax.jit(env.step)
    return env


def _posed(vec, qpos):
    """A fresh batch with ``qpos [N, 5]`` (pusher x, y, T x, y, angle) set and everything at rest."""
    state = vec.jit_reset(jax.random.PRNGKey(0))
    qpos = jnp.asarray(qpos, jnp.float32)
    data = state.data.replace(qpos=qpos, qvel=jnp.zeros_like(state.data.qvel))
    goal = jnp.asarray(push_t.GOAL_POSE, jnp.float32)
    obs = jax.vmap(lambda q, v: push_t.observation(q, v, goal))(qpos, data.qvel)
    return state.replace(data=data, obs=obs)


def _run(vec, state, actions, steps):
    """Applies constant ``actions [N, 2]`` for ``steps`` control steps, freezing ended episodes."""
    freeze = jax.jit(select)
    for _ in range(steps):
        state = freeze(state.done == 0, vec.jit_step(state, actions), state)
    return state


def test_registry_builds_push_t():
    assert "push_t" in envs.names()
    assert type(envs.expert("push_t")).__name__ == "PushTExpert"


def test_batch_reset_and_step_shapes_finite(vec):
    state = vec.jit_reset(jax.random.PRNGKey(3))
    obs = np.asarray(state.obs)
    assert obs.shape == (N, 15) and obs.dtype == np.float32 and vec.observation_size == 15
    assert vec.action_size == 2
    # start distribution as documented: T 0.1-0.25 m from the goal, pusher clear of the T
    dist = np.linalg.norm(obs[:, 4:6] - np.asarray(push_t.GOAL_POSE[:2]), axis=1)
    assert (dist > 0.1 - 1e-4).all() and (dist < 0.25 + 1e-4).all()
    assert (np.linalg.norm(obs[:, :2] - obs[:, 4:6], axis=1) > push_t.T_RADIUS + push_t.PUSHER_RADIUS).all()
    np.testing.assert_allclose(obs[:, 6] ** 2 + obs[:, 7] ** 2, 1.0, atol=1e-5)
    np.testing.assert_allclose(obs[:, 11:15], np.tile([0.0, 0.0, 1.0, 0.0], (N, 1)), atol=1e-6)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (N, 2), minval=-1, maxval=1)
    for _ in range(3):
        state = vec.jit_step(state, actions)
    obs = np.asarray(state.obs)
    assert obs.shape == (N, 15) and np.isfinite(obs).all()
    assert state.reward.shape == (N,) and state.reward.dtype == jnp.float32
    assert np.asarray(state.info["steps"]).tolist() == [3] * N
    # the pusher follows the command: velocity along the action, near the documented top speed
    vel = obs[:, 2:4]
    assert (np.sum(vel * np.asarray(actions), axis=1) > 0).mean() > 0.9
    assert 0.2 < np.abs(vel).max() < 0.45


def test_pusher_moves_the_t_only_by_contact(vec):
    t_pose = (0.15, 0.1, 0.0)
    qpos = np.zeros((N, 5))
    qpos[:, 2:] = t_pose
    actions = np.zeros((N, 2))
    thirds = np.arange(N) % 3
    # 0: left of the stem's side (5.5 cm gap) driving right, into the T
    qpos[thirds == 0, :2] = (t_pose[0] - 0.1, t_pose[1] - 0.008)
    actions[thirds == 0] = (1.0, 0.0)
    # 1: same place driving left, away from the T
    qpos[thirds == 1, :2] = (t_pose[0] - 0.1, t_pose[1] - 0.008)
    actions[thirds == 1] = (-1.0, 0.0)
    # 2: passing 0.25 m left of the T's centre along y, never touching it
    qpos[thirds == 2, :2] = (t_pose[0] - 0.25, t_pose[1] - 0.25)
    actions[thirds == 2] = (0.0, 1.0)
    state = _run(vec, _posed(vec, qpos), jnp.asarray(actions, jnp.float32), 10)
    q = np.asarray(state.data.qpos)
    pushed, away, past = q[thirds == 0], q[thirds == 1], q[thirds == 2]
    assert (pushed[:, 2] - t_pose[0] > 0.08).all(), pushed[:3]  # moved right with the pusher
    assert (np.abs(pushed[:, 3] - t_pose[1]) < 0.03).all()
    assert (pushed[:, 0] < pushed[:, 2] - push_t.STEM_HALF[0]).all()  # the pusher stayed behind it
    for free in (away, past):
        np.testing.assert_allclose(free[:, 2:], np.tile(t_pose, (len(free), 1)), atol=1e-6)
    assert (away[:, 0] < t_pose[0] - 0.3).all() and (past[:, 1] > t_pose[1] + 0.05).all()  # they moved
    assert not np.asarray(state.info["terminated"]).any()


def test_success_and_termination_logic(vec):
    deg = math.radians
    far = (-0.45, -0.45)
    cases = [  # (T pose, success, off table)
        ((0.0, 0.0, 0.0), True, False),
        ((0.02, 0.0, deg(10)), True, False),
        ((0.0, -0.02, deg(-14)), True, False),
        ((0.03, 0.0, 0.0), False, False),
        ((0.0, 0.0, deg(20)), False, False),
        ((0.0, 0.0, deg(180)), False, False),
        ((0.55, 0.1, 0.0), False, True),
        ((0.1, -0.52, 0.0), False, True),
        ((0.3, 0.3, 1.0), False, False),
    ]
    qpos = np.tile([*far, 0.3, 0.3, 1.0], (N, 1))
    for i, (pose, _, _) in enumerate(cases):
        qpos[i, 2:] = pose
    state = vec.jit_step(_posed(vec, qpos), jnp.zeros((N, 2)))
    k = len(cases)
    success = np.asarray(state.info["success"])[:k]
    off = np.asarray(state.metrics["off_table"])[:k]
    np.testing.assert_array_equal(success, [c[1] for c in cases])
    np.testing.assert_array_equal(off, [float(c[2]) for c in cases])
    np.testing.assert_array_equal(np.asarray(state.info["terminated"])[:k], [c[1] or c[2] for c in cases])
    np.testing.assert_array_equal(np.asarray(state.reward)[:k], success.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(state.done)[:k], [float(c[1] or c[2]) for c in cases])
    assert not np.asarray(state.info["truncated"]).any()
    np.testing.assert_allclose(np.asarray(state.metrics["angle_error"])[5], math.pi, atol=1e-4)
    np.testing.assert_allclose(np.asarray(state.metrics["position_error"])[3], 0.03, atol=1e-5)


@pytest.fixture(scope="module")
def expert_rollout(vec):
    """One episode of the scripted expert in each of the N envs (fixed seed)."""
    expert = envs.expert("push_t")
    act = jax.jit(jax.vmap(expert.act))
    freeze = jax.jit(select)
    state = vec.jit_reset(jax.random.PRNGKey(100))
    plan = jax.vmap(expert.init)(jax.random.split(jax.random.PRNGKey(101), N))
    pushes = []
    for k in jax.random.split(jax.random.PRNGKey(102), vec.episode_length):
        action, plan = act(plan, state.obs, jax.random.split(k, N))
        pushes.append(np.asarray(plan["push"]))
        state = freeze(state.done == 0, vec.jit_step(state, action), state)
    return {"success": np.asarray(state.info["success"]), "mode": np.asarray(plan["mode"]),
            "length": np.asarray(state.info["steps"]), "obs": np.asarray(state.obs),
            "truncated": np.asarray(state.info["truncated"]), "pushes": np.stack(pushes, 1),
            "observed_mode": np.asarray(state.info["mode"])}


def test_expert_success_rate_and_both_modes(expert_rollout):
    out = expert_rollout
    success, mode = out["success"], out["mode"]
    # stated in envs/push_t.py (EXPERT_SUCCESS, measured on 1000 episodes); 128 episodes have a
    # standard error of about 0.035
    assert abs(success.mean() - push_t.EXPERT_SUCCESS) < 0.12, success.mean()
    assert success.mean() < 0.97  # imperfect: time-outs occur
    assert (out["truncated"] == ~success).all()  # every failure here is a time-out
    assert 0.3 < mode.mean() < 0.7, mode.mean()
    for m in (0, 1):
        assert success[mode == m].mean() > 0.5, (m, success[mode == m].mean())
    # a successful episode really ends within tolerance of the goal pose
    obs = out["obs"][success]
    assert (np.linalg.norm(obs[:, 4:6] - obs[:, 11:13], axis=1) < push_t.POS_TOL).all()
    angle = np.arctan2(obs[:, 7], obs[:, 6]) - np.arctan2(obs[:, 14], obs[:, 13])
    assert (np.abs((angle + np.pi) % (2 * np.pi) - np.pi) < push_t.ANGLE_TOL).all()
    assert (out["length"][success] < 200).all() and out["length"].min() > 5


def test_expert_modes_push_from_different_sides(expert_rollout):
    """Mode 0 first translates along the T's x axis (pushes 6, 7), mode 1 along its y axis (8, 9)."""
    pushes, mode = expert_rollout["pushes"], expert_rollout["mode"]
    translating = pushes >= 6
    has = translating.any(axis=1)
    first = pushes[np.arange(N), np.argmax(translating, axis=1)]
    first_axis = (first - 6) // 2
    assert has.mean() > 0.8
    agree = (first_axis == mode)[has]
    assert agree.mean() > 0.75, agree.mean()
    # rotation pushes are used too, from both sides of the T (turning either way)
    assert (pushes[(pushes >= 0) & (pushes < 3)].size > 0) and (pushes[(pushes >= 3) & (pushes < 6)].size > 0)


def test_mode_classifier_labels_the_first_translation_axis(expert_rollout):
    """``info['mode']`` names the T-frame axis of the expert's first translation push (pushes 6-7: x, 8-9: y).

    Measured on these 128 episodes: 0.945 agreement on the successes, 5% of them undecided (no
    translation within 10 deg of the goal angle while turning slower than 0.2 rad/s).
    """
    out = expert_rollout
    pushes, success, seen = out["pushes"], out["success"], out["observed_mode"]
    translating = pushes >= 6
    first_axis = (pushes[np.arange(N), np.argmax(translating, axis=1)] - 6) // 2
    checked = success & translating.any(axis=1) & (seen >= 0)
    assert checked.sum() >= 0.8 * success.sum()
    assert (seen[checked] == first_axis[checked]).mean() >= 0.85
    for m in (0, 1):  # both modes are recognised
        assert (seen[checked] == m).sum() >= 10
    assert set(np.unique(seen)) <= {-1, 0, 1}

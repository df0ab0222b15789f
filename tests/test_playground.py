"""MuJoCo Playground adapter: CheetahRun through VecEnv, one trace of step, clear errors offline."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

import envs
from envs import playground
from envs.wrappers import VecEnv

NUM_ENVS = 4


def _avals(tree):
    return jax.tree.map(lambda x: (x.shape, x.dtype, getattr(x, "weak_type", False)), tree)


@pytest.fixture(scope="module")
def cheetah():
    """CheetahRun in a VecEnv with jitted reset/step; ``traces`` counts how often step was traced."""
    task = envs.make("playground:CheetahRun")
    vec = VecEnv(task, NUM_ENVS, task.episode_length)
    traces = []

    def step(state, action):
        traces.append(1)
        return vec.step(state, action)

    vec.jit_reset, vec.jit_step, vec.traces = jax.jit(vec.reset), jax.jit(step), traces
    return task, vec


def test_cheetah_loads_with_jax_backend_and_task_interface(cheetah):
    task, _ = cheetah
    assert isinstance(task, playground.PlaygroundEnv)
    assert task.mjx_model.impl.value == "jax"
    assert task.episode_length == 1000
    assert (task.observation_size, task.action_size) == (17, 6)
    assert isinstance(task.mj_model, mujoco.MjModel)  # delegated
    assert callable(task.render) and task.dt == pytest.approx(0.01)


def test_cheetah_steps_in_batch_and_step_traces_once(cheetah):
    _, vec = cheetah
    state = vec.jit_reset(jax.random.PRNGKey(0))
    assert state.obs.shape == (NUM_ENVS, 17) and state.obs.dtype == jnp.float32
    actions = jax.random.uniform(jax.random.PRNGKey(1), (NUM_ENVS, 6), minval=-1, maxval=1)
    obs0 = np.asarray(state.obs)
    for _ in range(3):
        state = vec.jit_step(state, actions)
    assert len(vec.traces) == 1  # reset and step states have the same dtypes and weak types
    assert np.isfinite(np.asarray(state.obs)).all()
    assert np.abs(np.asarray(state.obs) - obs0).max() > 1e-3  # the cheetah moved
    assert np.asarray(state.info["steps"]).tolist() == [3] * NUM_ENVS
    for flag in ("terminated", "success", "truncated"):
        assert state.info[flag].dtype == jnp.bool_ and not np.asarray(state.info[flag]).any()
    assert state.reward.shape == (NUM_ENVS,) and np.isfinite(np.asarray(state.reward)).all()


def test_reset_and_step_states_have_identical_types(cheetah):
    task, _ = cheetah
    raw = task.env
    key, action = jax.random.PRNGKey(0), jnp.zeros(task.action_size)
    # Playground's own CheetahRun differs (data.time is weakly typed after reset): the reason for the cast
    raw_reset = jax.eval_shape(raw.reset, key)
    assert _avals(raw_reset) != _avals(jax.eval_shape(raw.step, raw_reset, action))
    wrapped_reset = jax.eval_shape(task.reset, key)
    assert _avals(wrapped_reset) == _avals(jax.eval_shape(task.step, wrapped_reset, action))


def test_episode_length_override_reaches_the_config():
    task = envs.make("playground:CartpoleBalance", episode_length=200)
    assert task.episode_length == 200 and task.mjx_model.impl.value == "jax"


def test_menagerie_env_fails_fast_with_a_clear_message():
    t0 = time.time()
    with pytest.raises(playground.PlaygroundUnavailableError) as err:
        envs.make("playground:PandaPickCube")
    assert time.time() - t0 < 10.0  # no git clone attempt
    message = str(err.value)
    assert "PandaPickCube" in message and "Menagerie" in message and "playground:CheetahRun" in message


def test_unknown_name_and_bad_override_raise_value_error():
    with pytest.raises(ValueError, match="NoSuchTask.*CartpoleBalance"):
        envs.make("playground:NoSuchTask")
    with pytest.raises(ValueError, match="episode_len.*episode_length"):
        envs.make("playground:CartpoleBalance", episode_len=10)
    with pytest.raises(ValueError, match="no scripted expert"):
        envs.expert("playground:CheetahRun")

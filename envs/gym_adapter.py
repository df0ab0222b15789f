"""Gymnasium views of the project's MJX tasks: one env (:class:`GymEnv`) or a batch (:class:`VectorEnv`).

Both take a task name (anything :func:`envs.make` accepts, ``playground:<Name>``
included) or an ``MjxEnv`` instance with a flat observation, and speak numpy:
observations ``float32``, actions in ``[-1, 1]``. The time limit, the
``terminated``/``truncated`` split and ``success`` come from
:class:`envs.wrappers.VecEnv`, so they mean exactly what they mean in training.
Reset and step are each one ``jax.jit``-compiled call (compiled once; the
state is kept on the device and only the outputs cross to the host).

Randomness follows Gymnasium: ``reset(seed=s)`` (or the constructor's
``seed``) seeds ``np_random``; every reset draws its JAX key from it, so a
seeded sequence of resets and steps is reproducible.

Throughput of :class:`VectorEnv` (env steps/s, ``point_obstacle``, numpy
in/out, a Python loop of ``step`` calls; ``python benchmarks/env_speed.py
--env=point_obstacle --backend=gym``, 2-core CPU): 1,176 at batch 1 (host
round trips dominate), 50,479 at batch 256, 14,609 at batch 4096.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs import registry
from envs.wrappers import VecEnv, select


def _resolve(task, episode_length: int | None):
    """(task env, time limit) from a task name or an env instance. Raises TypeError for non-flat obs."""
    env = registry.make(task) if isinstance(task, str) else task
    size = env.observation_size
    if not isinstance(size, (int, np.integer)):
        raise TypeError(f"the gymnasium adapters need a flat observation; {task!r} has observation_size {size}")
    if episode_length is None:
        episode_length = getattr(env, "episode_length", None)
        if episode_length is None:
            raise ValueError(f"{task!r} has no default episode_length; pass episode_length=<control steps>")
    return env, int(episode_length)


def _spaces(env) -> tuple[gymnasium.spaces.Box, gymnasium.spaces.Box]:
    obs = gymnasium.spaces.Box(-np.inf, np.inf, (int(env.observation_size),), np.float32)
    act = gymnasium.spaces.Box(-1.0, 1.0, (int(env.action_size),), np.float32)
    return obs, act


def _render_fps(env) -> float:
    dt = getattr(env, "dt", None)
    return float(round(1.0 / float(dt), 3)) if dt else 30.0


def _strong(tree):
    """Drops weak types so that reset and step states have identical avals (one compile of step)."""
    return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), tree)


def _outputs(state) -> dict:
    info = state.info
    return {"obs": state.obs.astype(jnp.float32), "reward": state.reward.astype(jnp.float32),
            "terminated": info["terminated"], "truncated": info["truncated"], "success": info["success"],
            "episode_return": info["episode_return"], "episode_length": info["steps"]}


def _check_actions(actions, shape: tuple[int, ...], what: str) -> np.ndarray:
    a = np.asarray(actions, dtype=np.float32)
    if a.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contain NaN or infinity")
    return a


class VectorEnv(gymnasium.vector.VectorEnv):
    """``num_envs`` copies of a task as a Gymnasium vector env, stepped by one jitted ``vmap``.

    Autoreset: ``AutoresetMode.NEXT_STEP`` (declared in ``metadata``). The step
    on which an episode ends returns its true last observation, reward and
    ``terminated`` or ``truncated``; the next ``step`` of that env ignores its
    action and returns the first observation of a new episode, reward 0 and
    both flags False.

    Args:
      task: task name (see :func:`envs.make`) or an ``MjxEnv``.
      num_envs: N (>= 1).
      seed: seeds ``np_random`` for the first ``reset()`` without a seed.
      episode_length: time limit in control steps; the task default if None.

    ``step(actions [N, A]) -> (obs float32 [N, O], reward float32 [N],
    terminated bool [N], truncated bool [N], infos)``; ``infos`` holds
    ``success`` (bool [N], the goal is reached at this step) and, for the envs
    whose episode ended at this step (mask ``_episode_return``),
    ``episode_return`` (float32 [N], undiscounted) and ``episode_length``
    (int32 [N], control steps); every key ``k`` has its mask ``_k``.

    Raises:
      ValueError: no time limit, ``num_envs < 1``; in
        ``step``, actions not of shape ``[N, A]`` or not finite.
      TypeError: the task's observation is not flat (a dict of arrays).
      gymnasium.error.ResetNeeded: ``step`` before ``reset``.
    """

    def __init__(self, task, num_envs: int, seed: int | None = None, episode_length: int | None = None):
        self.task, episode_length = _resolve(task, episode_length)
        self.vec = VecEnv(self.task, num_envs, episode_length)
        self.num_envs = self.vec.num_envs
        self.episode_length = episode_length
        self.single_observation_space, self.single_action_space = _spaces(self.task)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": [],
                         "render_fps": _render_fps(self.task)}
        if seed is not None:
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(seed)
        self._reset_fn, self._step_fn = jax.jit(self._reset_impl), jax.jit(self._step_impl)
        self._merge_fn = jax.jit(self._merge_impl)
        self.state, self._ended = None, np.zeros(self.num_envs, bool)

    # Three compiled functions: the autoreset reuses the batched reset instead of tracing a
    # second copy of it inside step (that would double step's compile time).
    def _reset_impl(self, seed):
        state = _strong(self.vec.reset(jax.random.PRNGKey(seed)))
        return state, _outputs(state)

    def _step_impl(self, state, actions):
        state = _strong(self.vec.step(state, actions))
        return state, _outputs(state)

    def _merge_impl(self, ended, fresh, stepped):
        state = _strong(select(ended, fresh, stepped))
        return state, _outputs(state)

    def _draw_seed(self) -> np.uint32:
        return np.uint32(self.np_random.integers(0, 2**32, dtype=np.uint32))

    def _finish(self, out) -> dict:
        out = {k: np.array(v) for k, v in jax.device_get(out).items()}
        self._ended = out["terminated"] | out["truncated"]
        return out

    def _infos(self, out: dict) -> dict:
        done = out["terminated"] | out["truncated"]
        every = np.ones(self.num_envs, bool)
        return {"success": out["success"], "_success": every,
                "episode_return": np.where(done, out["episode_return"], 0.0).astype(np.float32),
                "_episode_return": done.copy(),
                "episode_length": np.where(done, out["episode_length"], 0).astype(np.int32),
                "_episode_length": done.copy()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Starts N new episodes. Returns ``(obs float32 [N, O], infos)``; ``options`` is unused."""
        super().reset(seed=seed)
        self.state, out = self._reset_fn(self._draw_seed())
        out = self._finish(out)
        return out["obs"], self._infos(out)

    def step(self, actions):
        """Steps every env (see class docstring for the returned tuple and autoreset)."""
        if self.state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        actions = _check_actions(actions, (self.num_envs, self.vec.action_size), "actions [num_envs, action_size]")
        state, out = self._step_fn(self.state, actions)
        if self._ended.any():  # NEXT_STEP autoreset of the envs whose episode ended on the last step
            fresh, _ = self._reset_fn(self._draw_seed())
            state, out = self._merge_fn(self._ended, fresh, state)
        self.state = state
        out = self._finish(out)
        return out["obs"], out["reward"], out["terminated"], out["truncated"], self._infos(out)


class GymEnv(gymnasium.Env):
    """One task as a ``gymnasium.Env`` (no autoreset: call ``reset`` after an episode ends).

    Args:
      task: task name (see :func:`envs.make`) or an ``MjxEnv``.
      render_mode: None or ``"rgb_array"`` (``render()`` returns ``uint8 [H, W, 3]``).
      seed: seeds ``np_random`` for the first ``reset()`` without a seed.
      episode_length: time limit in control steps (``truncated``); the task default if None.
      width, height, camera: frame size and camera for ``render()`` (see :class:`envs.render.Renderer`).

    ``step(action [A]) -> (obs float32 [O], reward float, terminated bool,
    truncated bool, info)`` with ``info['success']`` (bool). ``terminated``
    ends the episode without bootstrap (goal reached or failure),
    ``truncated`` is the time limit.

    Raises:
      ValueError: bad render mode, no time limit; in
        ``step``, an action not of shape ``[A]`` or not finite.
      TypeError: the task's observation is not flat (a dict of arrays).
      gymnasium.error.ResetNeeded: ``step`` or ``render`` before ``reset``.
      envs.render.RenderUnavailableError: ``render()`` on a machine without OpenGL.
    """

    def __init__(self, task, render_mode: str | None = None, seed: int | None = None,
                 episode_length: int | None = None, width: int = 320, height: int = 240,
                 camera: str | int | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task, episode_length = _resolve(task, episode_length)
        self.vec = VecEnv(self.task, 1, episode_length)
        self.episode_length = episode_length
        self.observation_space, self.action_space = _spaces(self.task)
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": _render_fps(self.task)}
        self.render_mode = render_mode
        self._render_args = (width, height, camera)
        self._renderer = None
        if seed is not None:
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(seed)
        self._reset_fn, self._step_fn = jax.jit(self._reset_impl), jax.jit(self._step_impl)
        self.state = None

    def _reset_impl(self, seed):
        state = _strong(self.vec.reset(jax.random.PRNGKey(seed)))
        return state, _outputs(state)

    def _step_impl(self, state, action):
        state = _strong(self.vec.step(state, action[None]))
        return state, _outputs(state)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Starts an episode. Returns ``(obs float32 [O], {'success': False})``; ``options`` is unused."""
        super().reset(seed=seed)
        self.state, out = self._reset_fn(np.uint32(self.np_random.integers(0, 2**32, dtype=np.uint32)))
        out = jax.device_get(out)
        return np.array(out["obs"][0]), {"success": bool(out["success"][0])}

    def step(self, action):
        """Applies ``action [A]`` for one control step (see class docstring)."""
        if self.state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        action = _check_actions(action, (self.vec.action_size,), "action [action_size]")
        self.state, out = self._step_fn(self.state, action)
        out = jax.device_get(out)
        return (np.array(out["obs"][0]), float(out["reward"][0]), bool(out["terminated"][0]),
                bool(out["truncated"][0]), {"success": bool(out["success"][0])})

    def render(self):
        """The current frame, ``uint8 [height, width, 3]``; None (with a warning) if ``render_mode`` is None."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called with render_mode=None; pass render_mode='rgb_array'")
            return None
        if self.state is None:
            raise gymnasium.error.ResetNeeded("call reset() before render()")
        if self._renderer is None:
            from envs.render import Renderer
            width, height, camera = self._render_args
            self._renderer = Renderer(self.task, width=width, height=height, camera=camera)
        return self._renderer.frame(self.state, env_index=0)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

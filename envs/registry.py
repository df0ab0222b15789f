"""Task registry: ``envs.make(name, **overrides)``, ``envs.expert(name)`` and ``envs.names()``.

Two kinds of names:

* the project's own MJX tasks (``point_obstacle``, ``push_t``, ...), each with
  a scripted expert (``envs.expert(name)``);
* ``playground:<Name>`` for any environment of ``mujoco_playground.registry``
  (e.g. ``playground:CheetahRun``), loaded through :mod:`envs.playground`
  with the pure-JAX MJX backend. These have no scripted expert: their
  demonstrations come from a policy trained here (``launch/make_dataset.py``).

Task modules are imported on first use, so importing :mod:`envs` stays cheap.
"""

from __future__ import annotations

import importlib

PLAYGROUND_PREFIX = "playground:"

# name -> (module, env class, scripted expert class)
_TASKS: dict[str, tuple[str, str, str]] = {
    "point_obstacle": ("envs.point_obstacle", "PointObstacle", "PointObstacleExpert"),
    "point_maze": ("envs.point_maze", "PointMaze", "PointMazeExpert"),
    "push_t": ("envs.push_t", "PushT", "PushTExpert"),
    "pick_place": ("envs.pick_place", "PickPlace", "PickPlaceExpert"),
    "pick_place_two": ("envs.pick_place", "PickPlaceTwo", "PickPlaceTwoExpert"),
}


def names() -> list[str]:
    """The project's own task names, sorted (``playground:<Name>`` is accepted besides)."""
    return sorted(_TASKS)


def is_playground(name: str) -> bool:
    """Whether ``name`` refers to a MuJoCo Playground environment (``playground:<Name>``)."""
    return name.startswith(PLAYGROUND_PREFIX)


def _entry(name: str) -> tuple[str, str, str]:
    if name not in _TASKS:
        raise ValueError(f"env.name: unknown task {name!r}; expected one of {names()} "
                         f"or '{PLAYGROUND_PREFIX}<Name>' for a MuJoCo Playground environment")
    return _TASKS[name]


def _load(module: str, attr: str):
    return getattr(importlib.import_module(module), attr)


def make(name: str, **overrides):
    """Builds task ``name`` with its default config updated by ``overrides``.

    Returns:
      an ``MjxEnv`` (MuJoCo Playground interface): ``reset(rng)``,
      ``step(state, action)`` on one environment, ``observation_size``,
      ``action_size`` and ``episode_length`` (default time limit, control steps).

    Raises:
      ValueError: unknown task name (the message lists the known ones).
      envs.playground.PlaygroundUnavailableError: a ``playground:`` task that
        cannot be loaded on this machine (e.g. Menagerie-based ones, which need
        a git clone).
    """
    if is_playground(name):
        from envs import playground
        return playground.load(name[len(PLAYGROUND_PREFIX):], **overrides)
    module, env_cls, _ = _entry(name)
    return _load(module, env_cls)(config_overrides=overrides or None)


def expert(name: str, **kwargs):
    """The scripted expert of task ``name`` (``init(key)``/``act(plan, obs, key)``).

    Raises:
      ValueError: unknown task, or a ``playground:`` task (no scripted expert:
        its demonstrations come from a policy trained with PPO, see
        ``launch/make_dataset.py``).
    """
    if is_playground(name):
        raise ValueError(f"env.name: {name!r} has no scripted expert; its demonstrations come from a "
                         f"PPO policy trained here: python launch/make_dataset.py --task={name}")
    module, _, expert_cls = _entry(name)
    return _load(module, expert_cls)(**kwargs)


def mode_names(name: str) -> tuple[str, ...]:
    """Names of task ``name``'s modes, in the order of ``state.info['mode']`` (``()``: none, e.g. Playground).

    Raises:
      ValueError: unknown task name.
    """
    if is_playground(name):
        return ()
    module, env_cls, _ = _entry(name)
    return tuple(getattr(_load(module, env_cls), "MODES", ()))


def _module(name: str):
    return importlib.import_module(_entry(name)[0])


def throughput(name: str) -> dict:
    """Measured env steps/s of task ``name`` on the project's 2-core CPU, as stated in its docstring.

    Returns the entry for ``name`` of its module's ``THROUGHPUT`` dict
    (``{"mjx": {batch: steps_per_s}, "c": {batch: steps_per_s}, "command": ...}``, keyed by task
    name as one module may hold several tasks), or ``{}`` where none is stated (``playground:`` tasks).
    """
    if is_playground(name):
        return {}
    return dict(getattr(_module(name), "THROUGHPUT", {}).get(name, {}))


def demo_batch_size(name: str) -> int:
    """Envs simulated at once when collecting demonstrations of ``name`` (the module's
    ``DEMO_BATCH_SIZE``, default 1024; contact-rich tasks use less to bound compile time and memory)."""
    if is_playground(name):
        return 256
    return int(getattr(_module(name), "DEMO_BATCH_SIZE", 1024))

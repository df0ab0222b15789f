"""Task registry: ``envs.make(name, **overrides)`` and ``envs.names()``.

Each entry builds an ``MjxEnv`` (MuJoCo Playground interface) and, when the
task has one, its scripted expert (``envs.expert(name)``).
"""

from __future__ import annotations

from typing import Callable

from envs import point_obstacle

_TASKS: dict[str, tuple[Callable, Callable | None]] = {
    "point_obstacle": (point_obstacle.PointObstacle, point_obstacle.PointObstacleExpert),
}


def names() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_TASKS)


def _entry(name: str):
    if name not in _TASKS:
        raise ValueError(f"env.name: unknown task {name!r}; expected one of {names()}")
    return _TASKS[name]


def make(name: str, **overrides):
    """Builds task ``name`` with its default config updated by ``overrides``.

    Raises:
      ValueError: unknown task name (the message lists the known ones).
    """
    env_cls, _ = _entry(name)
    return env_cls(config_overrides=overrides or None)


def expert(name: str, **kwargs):
    """The scripted expert of task ``name`` (``init(key)``/``act(plan, obs, key)``).

    Raises:
      ValueError: unknown task, or the task has no scripted expert.
    """
    _, expert_cls = _entry(name)
    if expert_cls is None:
        raise ValueError(f"env.name: task {name!r} has no scripted expert")
    return expert_cls(**kwargs)

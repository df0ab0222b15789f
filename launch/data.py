"""A task's demonstration dataset, whatever produces it (scripted expert or a trained PPO policy)."""

from __future__ import annotations

from envs import demos, registry
from envs.demos import expert_dataset


def dataset_name(task: str, num_episodes: int, seed: int, sloppy_prob: float | None = None) -> str:
    """The folder name under ``data_dir`` that :func:`task_dataset` reads and writes."""
    if registry.is_playground(task):
        from launch.policy_demos import dataset_name as ppo_name
        return ppo_name(task, num_episodes, seed)
    return demos.dataset_name(task, num_episodes, seed, sloppy_prob)


def task_dataset(task: str, num_episodes: int, seed: int, data_dir: str, log=print,
                 sloppy_prob: float | None = None) -> tuple[dict, dict]:
    """Loads the demonstrations of ``task`` from ``data_dir``, building them first if missing.

    * The project's own tasks: episodes of the scripted expert
      (:func:`envs.demos.expert_dataset`).
    * ``playground:<Name>``: a Gaussian PPO policy is trained here, then rolled
      out for medium-quality demonstrations (:func:`launch.policy_demos.ppo_dataset`).

    ``sloppy_prob`` (scripted experts only; None: the expert's default): the
    share of sloppy, mostly failing expert episodes, i.e. the data's quality.

    Returns:
      ``(steps, card)``: flat steps (``obs [N, O]``, ``action [N, A]``, ``reward [N]``,
      ``next_obs``, ``terminated``, ``truncated``, ``episode_id``) and the dataset card.

    Raises:
      ValueError: unknown task, ``num_episodes < 1``, ``sloppy_prob`` outside [0, 1]
        or given for a ``playground:`` task.
      envs.dataset.DatasetMismatchError: a stored dataset does not fit the task.
    """
    check_sloppy_prob(task, sloppy_prob)
    if registry.is_playground(task):
        from launch.policy_demos import ppo_dataset
        return ppo_dataset(task, num_episodes, seed, data_dir, log=log)
    return expert_dataset(task, num_episodes, seed, data_dir, log=log, sloppy_prob=sloppy_prob)


def check_sloppy_prob(task: str, sloppy_prob: float | None) -> None:
    """Raises ValueError (naming ``data.sloppy_prob``) unless ``sloppy_prob`` is None, or in [0, 1]
    for a task with a scripted expert (not a ``playground:`` task)."""
    demos.check_sloppy_prob(sloppy_prob)
    if sloppy_prob is not None and registry.is_playground(task):
        raise ValueError(f"data.sloppy_prob: {task!r} has no scripted expert (its data come from PPO); "
                         f"leave it at -1")


def sloppy_arg(value: float) -> float | None:
    """A ``sloppy_prob`` flag or config value as :func:`task_dataset` takes it: -1 -> None (the expert's default)."""
    return None if float(value) == -1.0 else float(value)


def sloppy_prob(config) -> float | None:
    """``config.data.sloppy_prob`` as :func:`task_dataset` takes it (-1 or absent: None, the expert's default)."""
    return sloppy_arg(config.data.get("sloppy_prob", -1.0))

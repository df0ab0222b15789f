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
    if registry.is_playground(task):
        if sloppy_prob is not None:
            raise ValueError(f"data.sloppy_prob: {task!r} has no scripted expert (its data come from PPO); "
                             f"leave it at -1")
        from launch.policy_demos import ppo_dataset
        return ppo_dataset(task, num_episodes, seed, data_dir, log=log)
    return expert_dataset(task, num_episodes, seed, data_dir, log=log, sloppy_prob=sloppy_prob)


def sloppy_prob(config) -> float | None:
    """``config.data.sloppy_prob`` as :func:`task_dataset` takes it (-1 or absent: None, the expert's default)."""
    value = float(config.data.get("sloppy_prob", -1.0))
    return None if value == -1.0 else value

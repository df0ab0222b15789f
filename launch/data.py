"""A task's demonstration dataset, whatever produces it (scripted expert or a trained PPO policy)."""

from __future__ import annotations

from envs import demos, registry
from envs.demos import expert_dataset


def dataset_name(task: str, num_episodes: int, seed: int) -> str:
    """The folder name under ``data_dir`` that :func:`task_dataset` reads and writes."""
    if registry.is_playground(task):
        from launch.policy_demos import dataset_name as ppo_name
        return ppo_name(task, num_episodes, seed)
    return demos.dataset_name(task, num_episodes, seed)


def task_dataset(task: str, num_episodes: int, seed: int, data_dir: str, log=print) -> tuple[dict, dict]:
    """Loads the demonstrations of ``task`` from ``data_dir``, building them first if missing.

    * The project's own tasks: episodes of the scripted expert
      (:func:`envs.demos.expert_dataset`).
    * ``playground:<Name>``: a Gaussian PPO policy is trained here, then rolled
      out for medium-quality demonstrations (:func:`launch.policy_demos.ppo_dataset`).

    Returns:
      ``(steps, card)``: flat steps (``obs [N, O]``, ``action [N, A]``, ``reward [N]``,
      ``next_obs``, ``terminated``, ``truncated``, ``episode_id``) and the dataset card.

    Raises:
      ValueError: unknown task or ``num_episodes < 1``.
      envs.dataset.DatasetMismatchError: a stored dataset does not fit the task.
    """
    if registry.is_playground(task):
        from launch.policy_demos import ppo_dataset
        return ppo_dataset(task, num_episodes, seed, data_dir, log=log)
    return expert_dataset(task, num_episodes, seed, data_dir, log=log)

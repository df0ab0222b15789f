"""Demonstrations from a PPO policy trained here, for tasks without a scripted expert.

Playground's locomotion tasks (``playground:CheetahRun``, ...) have no
scripted expert. :func:`ppo_dataset` gives them demonstrations of *medium*
quality, the usual starting point for RL fine-tuning: it trains PPO on the
task with a fixed, deliberately short budget (``configs/ppo.py`` preset for
the task: roughly a third to a half of a good return, e.g. a few hundred on
CheetahRun), then rolls out ``num_episodes`` full episodes with the
stochastic policy and stores them with :mod:`envs.dataset`. Same contract as
:func:`envs.demos.expert_dataset`; the card adds the policy's training
budget and the demos' return statistics.

The policy's run folder (config, metrics, checkpoint) is kept next to the
dataset, ``<data_dir>/<name>_policy``; if it already holds a finished
checkpoint (e.g. the dataset build was interrupted after training), the
policy is restored instead of trained again.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import envs
from configs import ppo as ppo_configs
from envs import dataset as dataset_lib
from envs.demos import collect_episodes, episode_stats
from launch import experiment

# task -> configs/ppo.py preset (its env_steps is the fixed "medium" budget); others use the default
PRESETS = {"playground:CheetahRun": "cheetah_run", "playground:CartpoleBalance": "cartpole_balance"}


def policy_config(task: str, seed: int):
    """The PPO config that trains the demonstrator of ``task`` (preset budget, ``seed``)."""
    config = ppo_configs.get_config(PRESETS.get(task, "cheetah_run"))
    config.env.name, config.seed = task, seed
    return config


def dataset_name(task: str, num_episodes: int, seed: int) -> str:
    """Canonical name, e.g. ``playground_CheetahRun_ppo_n1000_s0``."""
    return f"{task.replace(':', '_')}_ppo_n{num_episodes}_s{seed}"


class _AgentPolicy:
    """The stochastic PPO policy in :func:`envs.demos.collect_episodes`'s interface (the agent is its ``params``)."""

    name = "ppo"

    def init(self, key: jax.Array) -> dict:
        del key
        return {"mode": jnp.int32(-1)}

    def act(self, agent, plan: dict, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        return agent.act(obs[None], key)[0][0, 0], plan


def collect_policy_episodes(agent, task: str, num_episodes: int, seed: int, episode_length: int | None = None,
                            batch_size: int = 256) -> list[dict]:
    """Rolls out ``num_episodes`` episodes of the stochastic PPO policy ``agent`` on ``task``.

    Returns:
      episode dicts as :func:`envs.demos.collect_expert_episodes` does:
      ``obs [T, O]``, ``action [T, A]`` (the env action, in ``[-1, 1]``),
      ``reward [T]``, ``next_obs [T, O]``, ``terminated [T]``,
      ``truncated [T]``, ``success`` (False where the task has no success
      criterion) and ``mode`` (-1: unknown).

    Raises:
      ValueError: ``num_episodes < 1``.
    """
    return collect_episodes(task, _AgentPolicy(), num_episodes, seed, params=agent,
                            episode_length=episode_length, batch_size=batch_size)


def return_stats(episodes: list[dict]) -> dict:
    """Undiscounted episode returns: ``mean``, ``std``, ``min``, ``max``."""
    returns = np.array([float(np.sum(e["reward"])) for e in episodes])
    return {"mean": float(returns.mean()), "std": float(returns.std()), "min": float(returns.min()),
            "max": float(returns.max())}


def _demonstrator(config, log):
    """Restores the policy from ``config.run_dir`` if it holds a finished checkpoint, else trains it."""
    try:
        agent, _ = experiment.restore_agent(config.run_dir, config)
    except FileNotFoundError:
        pass
    else:
        log(f"  restored the PPO demonstrator from {config.run_dir}")
        summary_path = os.path.join(config.run_dir, "summary.json")
        if os.path.exists(summary_path):
            with open(summary_path) as f:
                return agent, json.load(f)
        return agent, None
    log(f"  training the PPO demonstrator: {config.online.env_steps} env steps, {config.env.num_envs} envs "
        f"(run folder {config.run_dir})")
    summary = experiment.run(config, log=log)
    agent, _ = experiment.restore_agent(config.run_dir, config)
    return agent, summary


def ppo_dataset(task: str, num_episodes: int, seed: int, data_dir: str, log=print, config=None) -> tuple[dict, dict]:
    """Loads the PPO-policy dataset of ``task`` from ``data_dir``, training the policy and building it if missing.

    Args:
      task: an ``envs.make`` name, e.g. ``'playground:CheetahRun'``.
      num_episodes: episodes to record (full ``episode_length`` episodes).
      seed: seeds PPO training and the rollouts (same seed, same dataset).
      data_dir: dataset cache directory.
      log: progress sink.
      config: PPO config of the demonstrator (default :func:`policy_config`);
        its ``run_dir`` ('' -> ``<data_dir>/<name>_policy``) is where the
        policy is trained, or restored from if it has a checkpoint.

    Returns:
      ``(steps, card)`` as :func:`envs.demos.expert_dataset`: flat steps and
      the card (policy budget, demo return mean/std/min/max, seed, episode
      statistics of :func:`envs.demos.episode_stats`).

    Raises:
      envs.dataset.DatasetMismatchError: stored obs/action sizes differ from the task's.
      launch.checkpoint.CheckpointMismatchError: the policy folder holds a
        checkpoint of another config.
    """
    env = envs.make(task)
    name = dataset_name(task, num_episodes, seed)
    if config is None:
        config = policy_config(task, seed)
    if not config.run_dir:
        config.run_dir = os.path.join(data_dir, f"{name}_policy")
    metadata = {"task": task, "seed": seed, "expert": "ppo",
                "policy": {"algorithm": "ppo", "env_steps": int(config.online.env_steps),
                           "num_envs": int(config.env.num_envs), "episode_length": int(config.env.episode_length),
                           "run_dir": os.path.abspath(config.run_dir)}}

    def episodes_fn():
        log(f"building dataset {name}: {num_episodes} episodes of a PPO policy (seed {seed})")
        t0 = time.time()
        agent, summary = _demonstrator(config, log)
        if summary is not None:
            metadata["policy"].update(train_wall_s=summary["wall_time_s"], env_steps=summary["online"]["env_steps"],
                                      eval_return=summary["finetuned"]["return"])
        episodes = collect_policy_episodes(agent, task, num_episodes, seed + 1, config.env.episode_length)
        metadata.update(episode_stats(episodes))
        metadata["return"] = return_stats(episodes)
        metadata["build_wall_s"] = time.time() - t0
        r = metadata["return"]
        log(f"  demo return {r['mean']:.1f} +- {r['std']:.1f} (min {r['min']:.1f}, max {r['max']:.1f}) "
            f"over {num_episodes} episodes")
        return episodes

    return dataset_lib.load_or_build(name, episodes_fn, obs_size=int(env.observation_size),
                                     action_size=int(env.action_size), data_dir=data_dir, metadata=metadata, log=log)

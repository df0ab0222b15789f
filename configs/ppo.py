"""Gaussian PPO from scratch (no demonstrations): ``python launch/train.py --config=configs/ppo.py:<preset>``.

It runs through the same pipeline and on-policy loop as DPPO (``launch/experiment.py``,
``launch/loops.make_onpolicy_iterations``), with a one-action chunk. Presets after the colon:

* ``cartpole_balance`` (default): ``playground:CartpoleBalance``, reaches a
  return near the maximum (~1000 per 1000-step episode); see the README for
  the measured budget and wall time;
* ``cheetah_run``: ``playground:CheetahRun`` with a CPU-sized budget; the
  policy is "medium" (a few hundred return), the demonstrator of
  :mod:`launch.policy_demos`;
* ``smoke``: tiny sizes for tests (CartpoleBalance, 20-step episodes);
* any task preset of ``configs/common.py`` (``point_obstacle``, ``pick_place``, ...): that task with the
  online env-step budget every other method gets.

Override anything: ``--config.seed=1 --config.online.env_steps=2000000
--config.agent.lr=1e-3``. The run folder holds config.json, metrics.csv, tb/,
checkpoints/, learning_curve.png and summary.json.
"""

from __future__ import annotations

import ml_collections

from agents import ppo
from configs import common


def _cartpole(c: ml_collections.ConfigDict) -> None:
    c.env.name = "playground:CartpoleBalance"
    c.env.num_envs = 256
    c.env.episode_length = 1000
    c.env.num_eval_episodes = 32
    c.env.num_video_episodes = 0
    c.online.env_steps = 1_000_000
    c.online.log_every = 4
    c.online.eval_every = 0
    c.agent.lr = 1e-3


def _cheetah(c: ml_collections.ConfigDict) -> None:
    _cartpole(c)
    c.env.name = "playground:CheetahRun"
    c.env.num_envs = 512
    c.online.env_steps = 2_000_000       # "medium" demonstrator: return ~350 (see launch/policy_demos.py)
    c.agent.lr = 3e-4


def _smoke(c: ml_collections.ConfigDict) -> None:
    _cartpole(c)
    c.env.episode_length = 20
    c.env.num_envs = 16
    c.env.num_eval_episodes = 4
    c.online.env_steps = 16 * 8 * 6
    c.online.log_every = 3
    c.online.eval_every = 3
    c.agent.rollout_length = 8
    c.agent.num_minibatches = 2
    c.agent.num_epochs = 2
    c.agent.policy_hidden_dims = (16, 16)
    c.agent.value_hidden_dims = (16, 16)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    presets = {"cartpole_balance": _cartpole, "cheetah_run": _cheetah, "smoke": _smoke}
    return common.make("ppo", ppo.get_config(), arg or "cartpole_balance", "configs/ppo.py", on_policy=True,
                       from_scratch=True, presets=presets)

"""PPO baseline (Gaussian policy) on MuJoCo Playground tasks: ``python launch/train.py --config=configs/ppo.py:<preset>``.

Presets after the colon:

* ``cartpole_balance`` (default): ``playground:CartpoleBalance``, reaches a
  return near the maximum (~1000 per 1000-step episode); see README/report
  for the measured budget and wall time;
* ``cheetah_run``: ``playground:CheetahRun`` with a CPU-sized budget; the
  policy is "medium" (a few hundred return), the demonstrator of
  :mod:`launch.policy_demos`;
* ``smoke``: tiny sizes for tests (CartpoleBalance, 20-step episodes).

Override anything: ``--config.seed=1 --config.train.env_steps=2000000
--config.agent.lr=1e-3``. The run folder (``runs/ppo_<env>_s<seed>_<time>``)
holds config.json, metrics.csv, tb/, checkpoints/ and summary.json.
"""

from __future__ import annotations

import ml_collections

from agents import ppo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.agent_name = "ppo"                # launch/train.py dispatches to launch/ppo.py
    c.seed = 0                          # seeds networks, env resets and sampling
    c.run_dir = ""                      # run folder; '' -> runs/ppo_<env>_s<seed>_<time>
    c.env = ml_collections.ConfigDict()
    c.env.name = "playground:CartpoleBalance"  # any envs.make name
    c.env.num_envs = 256                # parallel envs (N)
    c.env.episode_length = 1000         # time limit in control steps (truncation, bootstrapped)
    c.env.num_eval_episodes = 32        # final evaluation episodes (deterministic and stochastic policy)
    c.train = ml_collections.ConfigDict()
    c.train.env_steps = 1_000_000       # env steps of training (all envs together)
    c.train.log_every = 0               # iterations per compiled call / progress line (0: one episode's worth)
    c.agent = ppo.get_config()

    if arg in (None, "", "default", "cartpole_balance"):
        c.agent.lr = 1e-3
    elif arg == "cheetah_run":
        c.env.name = "playground:CheetahRun"
        c.env.num_envs = 512
        c.train.env_steps = 2_000_000      # "medium" demonstrator: return ~350 (see launch/policy_demos.py)
    elif arg == "smoke":
        c.env.episode_length = 20
        c.env.num_envs = 16
        c.env.num_eval_episodes = 4
        c.train.env_steps = 16 * 8 * 6
        c.train.log_every = 3
        c.agent.rollout_length = 8
        c.agent.num_minibatches = 2
        c.agent.num_epochs = 2
        c.agent.policy_hidden_dims = (16, 16)
        c.agent.value_hidden_dims = (16, 16)
    else:
        raise ValueError(f"configs/ppo.py: unknown preset {arg!r}; expected 'cartpole_balance', 'cheetah_run' "
                         "or 'smoke'")
    return c

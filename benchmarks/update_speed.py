"""Update and sampling throughput of the agents on this machine.

    python benchmarks/update_speed.py [--config=configs/qc.py[:preset]] [--config.agent.x=y] [--iters=50]

Prints compile time and steady-state updates/s for ``agent.update`` on a
fixed batch, and chunks/s for ``agent.sample_actions`` at ``env.num_envs``.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/qc.py", lock_config=True)
_ITERS = flags.DEFINE_integer("iters", 50, "timed calls")


def _time(fn, iters):
    t0 = time.time()
    out = fn()
    jax.block_until_ready(out)
    compile_s = time.time() - t0
    t0 = time.time()
    for _ in range(iters):
        out = fn()
    jax.block_until_ready(out)
    return compile_s, iters / (time.time() - t0)


def main(_):
    import envs
    from agents import agent_class

    config = _CONFIG.value
    task = envs.make(config.env.name)
    o, a, c = int(task.observation_size), int(task.action_size), config.agent
    agent = agent_class(config.agent_name).create(config.seed, o, a, c)
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    b = c.batch_size
    batch = {"obs": jax.random.normal(k[0], (b, o)),
             "actions": jax.random.uniform(k[1], (b, c.horizon, a), minval=-1, maxval=1),
             "critic_actions": jax.random.uniform(k[1], (b, c.action_steps, a), minval=-1, maxval=1),
             "reward_sum": jnp.zeros(b), "discount": jnp.full(b, 0.95), "next_obs": jax.random.normal(k[2], (b, o)),
             "valid": jnp.ones(b), "terminated": jnp.zeros(b, bool)}
    state = {"agent": agent}

    def upd():
        state["agent"], info = state["agent"].update(batch)
        return info

    comp, rate = _time(upd, _ITERS.value)
    print(f"{config.agent_name} update: batch {b}, compile {comp:.1f} s, {rate:.1f} updates/s")
    obs = jax.random.normal(k[3], (config.env.num_envs, o))
    comp, rate = _time(lambda: state["agent"].sample_actions(obs, k[3]), _ITERS.value)
    print(f"{config.agent_name} sample_actions: {config.env.num_envs} obs, compile {comp:.1f} s, "
          f"{rate * config.env.num_envs:.0f} chunks/s")


if __name__ == "__main__":
    app.run(main)

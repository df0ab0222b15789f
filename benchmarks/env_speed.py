"""Raw MJX throughput of a task: env steps/s of ``VecEnv.step`` inside one jitted ``lax.scan``.

    python benchmarks/env_speed.py [--env=point_obstacle] [--batch=1,256,2048] [--steps=200]

Prints compile time and steady-state env steps/s per batch size (random
actions, no policy, no auto-reset). The time limit is set above ``--steps`` so
no episode is truncated while timing.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

_ENV = flags.DEFINE_string("env", "point_obstacle", "registered task")
_BATCH = flags.DEFINE_list("batch", ["1", "256", "2048"], "batch sizes")
_STEPS = flags.DEFINE_integer("steps", 200, "env steps per timed call")


def main(_):
    import envs
    from envs.wrappers import VecEnv

    task = envs.make(_ENV.value)
    for batch in map(int, _BATCH.value):
        vec = VecEnv(task, batch, episode_length=_STEPS.value + 1)

        @jax.jit
        def rollout(key):
            state = vec.reset(key)

            def body(state, k):
                action = jax.random.uniform(k, (batch, vec.action_size), minval=-1, maxval=1)
                return vec.step(state, action), None

            state, _ = jax.lax.scan(body, state, jax.random.split(key, _STEPS.value))
            return state.obs

        t0 = time.time()
        jax.block_until_ready(rollout(jax.random.PRNGKey(0)))
        compile_s = time.time() - t0
        t0 = time.time()
        jax.block_until_ready(rollout(jax.random.PRNGKey(1)))
        rate = batch * _STEPS.value / (time.time() - t0)
        print(f"{_ENV.value} batch {batch:>5}: compile {compile_s:5.1f} s, {rate:12,.0f} env steps/s", flush=True)


if __name__ == "__main__":
    app.run(main)

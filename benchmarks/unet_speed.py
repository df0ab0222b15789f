"""BC update rate and chunk latency of the chunk denoisers (MLP, temporal U-Net) on this machine.

    python benchmarks/unet_speed.py --batch=256 --horizon=16

For each denoiser: the time of one BC gradient step (loss, gradient, AdamW,
EMA; DDPM loss) at ``--batch``, and the latency of one chunk at batch 1
through the whole DDIM chain (``--denoising_steps``), both compiled, median of
``--reps``. Printed as a Markdown table.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents import bc  # noqa: E402
from agents.actor import Actor  # noqa: E402

flags.DEFINE_integer("batch", 256, "BC batch size")
flags.DEFINE_integer("horizon", 16, "chunk length H")
flags.DEFINE_integer("obs_dim", 6, "observation size")
flags.DEFINE_integer("action_dim", 2, "action size")
flags.DEFINE_integer("denoising_steps", 10, "DDIM steps when sampling")
flags.DEFINE_integer("reps", 20, "timed repetitions")
flags.DEFINE_string("nets", "mlp:256-256,unet:32-64-128,unet:64-128-256,unet:256-512-1024", "denoisers: kind:widths")
FLAGS = flags.FLAGS


def _median_time(fn, reps):
    jax.block_until_ready(fn())
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(_):
    print(f"batch {FLAGS.batch}, H {FLAGS.horizon}, obs {FLAGS.obs_dim}, action {FLAGS.action_dim}, "
          f"DDPM 100 / DDIM {FLAGS.denoising_steps}, {jax.devices()[0].platform}")
    print("| denoiser | parameters | BC update (ms) | updates/s | chunk latency, batch 1 (ms) |")
    print("|---|---|---|---|---|")
    for spec in FLAGS.nets.split(","):
        kind, widths = spec.split(":")
        c = bc.get_config()
        c.generative, c.horizon, c.action_steps, c.denoising_steps = "ddpm", FLAGS.horizon, FLAGS.horizon, FLAGS.denoising_steps
        c.actor_network = kind
        dims = tuple(int(w) for w in widths.split("-"))
        if kind == "mlp":
            c.actor_hidden_dims = dims
        else:
            c.unet_down_dims = dims
        agent = bc.BCAgent.create(0, FLAGS.obs_dim, FLAGS.action_dim, c)
        n_params = sum(x.size for x in jax.tree.leaves(agent.actor.state.params))
        key = jax.random.PRNGKey(1)
        batch = {"obs": jax.random.normal(key, (FLAGS.batch, FLAGS.obs_dim)),
                 "actions": jnp.clip(jax.random.normal(key, (FLAGS.batch, FLAGS.horizon, FLAGS.action_dim)), -1, 1),
                 "valid": jnp.ones(FLAGS.batch)}
        state = {"agent": agent}

        def update():
            state["agent"], info = state["agent"].update(batch)
            return info["bc_loss"]

        t_update = _median_time(update, FLAGS.reps)
        obs1 = jnp.zeros((1, FLAGS.obs_dim))
        t_chunk = _median_time(lambda: agent.sample_actions(obs1, key), FLAGS.reps)
        print(f"| {kind} {widths} | {n_params / 1e6:.2f}M | {t_update * 1e3:.1f} | {1 / t_update:.1f} | "
              f"{t_chunk * 1e3:.2f} |", flush=True)


if __name__ == "__main__":
    app.run(main)

"""Does the critic rank chunks by how hard they drive? Q of BC's candidates against their action magnitude.

    python benchmarks/q_vs_action_magnitude.py --run=runs/<qc run> [--step=S] [--states=64] [--num_samples=32]

Loads a QC run's checkpoint (``launch.load_run``), resets ``--states`` envs
of its task, draws ``--num_samples`` chunks per start state from the
checkpoint's actor (EMA weights, as acting does), scores them with its
critic and prints: the mean over states of the Pearson correlation between a
candidate's value and its mean absolute (normalised) action; the mean
magnitude of the argmax chunk against all candidates; the value spread per
state. README (issue 7, part 1) used it to show why best-of-N drives the maze
policy into walls.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_RUN = flags.DEFINE_string("run", None, "a run folder of an agent with a BC actor and a critic (QC)", required=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the last)")
_STATES = flags.DEFINE_integer("states", 64, "start states (one env each)")
_N = flags.DEFINE_integer("num_samples", 32, "candidates per state")


def main(_):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from envs.wrappers import VecEnv
    from launch.experiment import load_run

    run = load_run(_RUN.value, step=_STEP.value)
    agent, norm = run.agent, run.normalizer
    if not hasattr(agent, "critic"):
        raise SystemExit(f"--run: the checkpoint at step {run.step} holds a {type(agent).__name__} (no critic)")
    b, n = _STATES.value, _N.value
    state = VecEnv(run.task, b, run.config.env.episode_length).reset(jax.random.PRNGKey(0))
    obs = norm.obs(state.obs)
    chunks = agent.actor.sample(obs, jax.random.PRNGKey(1), n)                  # [B, N, H, A]
    q = agent.critic.value(jnp.repeat(obs, n, 0), chunks.reshape(b * n, *chunks.shape[2:])).reshape(b, n)
    mag = jnp.abs(chunks).mean(axis=(2, 3))                                     # [B, N]
    best = jnp.argmax(q, axis=1)
    corr = np.mean([np.corrcoef(np.asarray(q[i]), np.asarray(mag[i]))[0, 1] for i in range(b)])
    print(f"{run.path} step {run.step}: {b} start states x {n} candidates")
    print(f"  corr(Q, mean |action|) per state, mean: {corr:+.2f}")
    print(f"  mean |action| of the argmax chunk {float(jnp.mean(mag[jnp.arange(b), best])):.2f}, "
          f"of all candidates {float(jnp.mean(mag)):.2f}")
    print(f"  Q: mean {float(q.mean()):.3f}, spread per state (max - min) {float(jnp.mean(q.max(1) - q.min(1))):.3f}")


if __name__ == "__main__":
    app.run(main)

"""Chunk execution compared on trained policies: open-loop h steps per chunk against ACT's temporal ensembling.

    python benchmarks/temporal_ensemble.py <run_dir> [<run_dir> ...] --decays=0.01,0.1 --episodes=256

Each run folder's last checkpoint is evaluated, on the same episodes (same
key), with:

* its own execution: a chunk every ``action_steps`` steps, executed open loop;
* ``h = 1``: a chunk every step, only its first action executed
  (receding horizon, no averaging);
* temporal ensembling with each decay ``m`` of ``--decays``: a chunk every
  step, the overlapping chunks' actions for now averaged with weights
  ``exp(-m i)``, the oldest first (Zhao et al. 2023, ACT;
  :func:`envs.chunk.ensemble_weights`);
* with ``--fixed_noise``, every rule with the sampler's noise fixed for the
  whole episode (the same key at every query), which makes the policy a
  deterministic map from observation to chunk, as ACT's is at test time:
  consecutive chunks then come from the same mode instead of independent
  draws.

Prints a Markdown table: success (with its standard error), the modes of the
successes, and the evaluation's wall time (compile included).
"""

from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402
from envs.wrappers import VecEnv  # noqa: E402
from launch.experiment import evaluation_result, load_run  # noqa: E402
from launch.loops import make_evaluate  # noqa: E402

flags.DEFINE_string("decays", "0.01", "comma-separated ensembling decays m (ACT: 0.01)")
flags.DEFINE_integer("episodes", 256, "evaluation episodes per execution rule")
flags.DEFINE_integer("seed", 0, "evaluation key")
flags.DEFINE_bool("fixed_noise", False, "fix the sampler's noise for the whole episode in every rule")
FLAGS = flags.FLAGS


def main(argv):
    runs = argv[1:]
    if not runs:
        raise app.UsageError("give one or more run folders (each with config.json and a checkpoint)")
    print("| run | task | H | execution | success | modes of successes | s |")
    print("|---|---|---|---|---|---|---|")
    for path in runs:
        run = load_run(path)
        cfg = run.config
        env = VecEnv(run.task, FLAGS.episodes, cfg.env.episode_length)
        names = envs.mode_names(cfg.env.name)
        rules = [(f"h = {cfg.agent.action_steps} open loop", cfg.agent.action_steps, None),
                 ("h = 1 (receding)", 1, None)]
        rules += [(f"ensemble m = {m}", 1, float(m)) for m in FLAGS.decays.split(",")]
        fixed = FLAGS.fixed_noise
        for label, steps, decay in rules:
            label += ", fixed noise" if fixed else ""
            t0 = time.time()
            evaluate = make_evaluate(env, run.normalizer, steps, cfg.agent.discount, temporal_ensemble=decay,
                                     fixed_noise=fixed)
            out = jax.tree.map(np.asarray, evaluate(run.agent, jax.random.PRNGKey(FLAGS.seed)))
            result = evaluation_result(out, lambda line: None, names)
            modes = " / ".join(f"{n} {result[f'mode_{n}']:.2f}" for n in names)
            print(f"| {os.path.basename(os.path.normpath(path))} | {cfg.env.name} | {cfg.agent.horizon} | {label} "
                  f"| {result['success']:.3f} +- {result['success_stderr']:.3f} | {modes} "
                  f"| {time.time() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    app.run(main)

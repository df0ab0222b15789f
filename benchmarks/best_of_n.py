"""Success of a trained QC agent against the number of best-of-N candidates, on the same episodes.

    python benchmarks/best_of_n.py <run_dir> [<run_dir> ...] --n=1,4,8,16,32,64 --episodes=512

Each run folder's last checkpoint (its agent and critic unchanged) is
evaluated with ``agent.num_samples`` set to each N of ``--n``: the critic's
argmax over more candidates finds more of the chunks it over-values, so
success need not grow with N (README, "What was wrong", item 4). To look at
the agent right after the offline phase, stop a run just after it:
``--config.online.env_steps=320`` (one online iteration of 64 envs x 5 steps,
8 updates). Prints a Markdown table: success with its standard error, mean
episode length, and the critic's value of the chosen first chunk against the
discounted return obtained.
"""

from __future__ import annotations

import os
import sys

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.common import StaticConfig  # noqa: E402
from envs.wrappers import VecEnv  # noqa: E402
from launch.experiment import load_run  # noqa: E402
from launch.loops import make_evaluate  # noqa: E402

flags.DEFINE_string("n", "1,4,8,16,32,64", "comma-separated numbers of candidates")
flags.DEFINE_integer("episodes", 512, "evaluation episodes per N")
flags.DEFINE_integer("seed", 1, "evaluation key (the same episodes for every N)")
FLAGS = flags.FLAGS


def main(argv):
    runs = argv[1:]
    if not runs:
        raise app.UsageError("give one or more run folders of a best-of-N agent (qc)")
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    print("| run | N | success | mean length | Q(s0, a0) | discounted return |")
    print("|---|---|---|---|---|---|")
    for path in runs:
        run = load_run(path)
        cfg = run.config
        if "num_samples" not in cfg.agent:
            raise app.UsageError(f"{path}: agent {cfg.agent_name!r} has no agent.num_samples")
        env = VecEnv(run.task, FLAGS.episodes, cfg.env.episode_length)
        evaluate = make_evaluate(env, run.normalizer, cfg.agent.action_steps, cfg.agent.discount)
        for n in (int(x) for x in FLAGS.n.split(",")):
            agent_config = ml_collections.ConfigDict(cfg.agent.to_dict())
            agent_config.num_samples = n
            agent = run.agent.replace(config=StaticConfig(agent_config))
            out = jax.tree.map(np.asarray, evaluate(agent, jax.random.PRNGKey(FLAGS.seed)))
            success = out["success"].astype(np.float32)
            q = f"{out['q_start'].mean():.3f}" if "q_start" in out else "-"
            print(f"| {os.path.basename(os.path.normpath(path))} | {n} | {success.mean():.3f} +- "
                  f"{success.std() / np.sqrt(len(success)):.3f} | {out['length'].mean():.1f} | {q} "
                  f"| {out['discounted_return'].mean():.3f} |", flush=True)


if __name__ == "__main__":
    app.run(main)

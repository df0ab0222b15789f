"""How well each task's mode classifier (``state.info['mode']``) recovers its scripted expert's planned mode.

    python benchmarks/mode_classifier.py --tasks=point_obstacle,point_maze --episodes=256

Per task: of the expert's successful episodes, the share the classifier
labels with the expert's own mode, the share left undecided, and the mode
split both ways. Printed as a Markdown table.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402
from envs.demos import collect_expert_episodes  # noqa: E402

flags.DEFINE_string("tasks", ",".join(envs.names()), "comma-separated task names")
flags.DEFINE_integer("episodes", 256, "expert episodes per task")
flags.DEFINE_integer("seed", 0, "seed of the expert episodes")
FLAGS = flags.FLAGS


def main(_):
    print("| task | expert successes | classified as planned | undecided | planned split | classified split | s |")
    print("|---|---|---|---|---|---|---|")
    for task in FLAGS.tasks.split(","):
        t0 = time.time()
        eps = [e for e in collect_expert_episodes(task, FLAGS.episodes, FLAGS.seed) if e["success"]]
        planned = np.array([e["mode"] for e in eps])
        seen = np.array([e["observed_mode"] for e in eps])
        names = envs.mode_names(task)
        split = lambda m: " / ".join(f"{n} {np.mean(m == i):.2f}" for i, n in enumerate(names))  # noqa: E731
        print(f"| {task} | {len(eps)} | {np.mean(planned == seen):.3f} | {np.mean(seen < 0):.3f} | "
              f"{split(planned)} | {split(seen)} | {time.time() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    app.run(main)

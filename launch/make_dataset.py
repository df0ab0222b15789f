"""Builds a task's demonstration dataset (TFDS array_record + ``card.json``), with a progress bar.

    python launch/make_dataset.py --task=push_t --num_episodes=1000 --seed=0 [--data_dir=data]

* The project's own tasks (``envs.names()``): episodes of the task's scripted
  expert (:func:`envs.demos.expert_dataset`).
* ``playground:<Name>`` tasks (e.g. ``playground:CheetahRun``): a Gaussian PPO
  policy is trained here first, then rolled out for medium-quality
  demonstrations (:func:`launch.policy_demos.ppo_dataset`).

The dataset lands in ``<data_dir>/<task>_n<num_episodes>_s<seed>/`` (with
``:`` -> ``_`` and ``_ppo`` before ``_n`` for Playground tasks, and
``_sloppy<p>`` at the end with ``--sloppy_prob=p``; the name
``launch/train.py`` looks for, so a training run with the same
``data.num_episodes`` and ``data.seed`` finds it; ``train.py`` also builds a
missing dataset itself). An existing, intact dataset is loaded, not rebuilt;
``--rebuild`` deletes it first. The card (expert success rate, mode split,
episode lengths, env steps/s, seed) is printed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging

_TASK = flags.DEFINE_string("task", "point_obstacle", "registered task, or playground:<Name>")
_NUM = flags.DEFINE_integer("num_episodes", 1000, "episodes to collect")
_SEED = flags.DEFINE_integer("seed", 0, "dataset seed (same seed, same episodes)")
_DATA_DIR = flags.DEFINE_string("data_dir", "data", "datasets directory")
_SLOPPY = flags.DEFINE_float("sloppy_prob", -1.0, "share of sloppy expert episodes (-1: the expert's default); "
                             "like train.py's --config.data.sloppy_prob")
_REBUILD = flags.DEFINE_bool("rebuild", False, "delete an existing dataset of that name first")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from launch.data import dataset_name, sloppy_arg, task_dataset

    sloppy = sloppy_arg(_SLOPPY.value)
    name = dataset_name(_TASK.value, _NUM.value, _SEED.value, sloppy)
    path = os.path.join(_DATA_DIR.value, name)
    if _REBUILD.value and os.path.isdir(path):
        print(f"--rebuild: deleting {path}")
        shutil.rmtree(path)
    steps, card = task_dataset(_TASK.value, _NUM.value, _SEED.value, _DATA_DIR.value,
                               log=lambda m: print(m, flush=True), sloppy_prob=sloppy)
    print(f"dataset {path}: {card.get('num_episodes')} episodes, {len(steps['reward'])} steps")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    app.run(main)

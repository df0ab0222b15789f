"""Main job: BC pretraining of a chunked flow policy, then Q-chunking (best-of-N) offline and online.

Run (CPU, about 3 minutes on 2 cores, compilation included)::

    python launch/train.py --config=configs/qc.py

Presets (``:point_maze``, ``:smoke``, ``:paper``, ...) are shared by every
method: see ``configs/common.py``. Override anything:
``--config.seed=1 --config.agent.num_samples=16 --config.env.num_envs=256``.
"""

from __future__ import annotations

import ml_collections

from agents import qc
from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    agent = qc.get_config()
    agent.q_agg = "min"  # pessimistic ensemble (README: the mean over-estimates on 200 demonstrations)
    return common.make("qc", agent, arg, "configs/qc.py")


def sweep(arg: str | None = None) -> list[dict]:
    """``python launch/sweep.py --config=configs/qc.py[:preset]``: 5 seeds of the config (``arg``: its preset)."""
    del arg
    return common.grid({"seed": range(5)})

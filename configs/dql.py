"""Diffusion Q-Learning on chunks: BC pretraining, then L_bc + eta * normalised -Q through the reverse chain (``--config.agent.q_action=one_step``: EDP).

Run: ``python launch/train.py --config=configs/dql.py[:preset]``. Presets (``:point_maze``,
``:smoke``, ``:paper``, ...) are shared by every method: see ``configs/common.py``.
"""

from __future__ import annotations

import ml_collections

from agents import dql
from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return common.make("dql", dql.get_config(), arg, "configs/dql.py")

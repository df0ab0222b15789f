"""Diffusion Q-Learning on chunks: BC pretraining, then L_bc + eta * normalised -Q through the reverse chain (``--config.agent.q_action=one_step``: EDP).

Run: ``python launch/train.py --config=configs/dql.py[:preset]``. Presets (``:point_maze``,
``:smoke``, ``:paper``, ...) are shared by every method: see ``configs/common.py``.
"""

from __future__ import annotations

import ml_collections

from agents import dql
from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    agent = dql.get_config()
    # The paper's eta = 1 wrecks the BC policy here (README, "Fine-tuning methods": seed 0 offline 0.43 -> 0.00):
    # with a critic trained for only 1k offline updates, the normalised Q term follows its errors.
    agent.eta = 0.03
    return common.make("dql", agent, arg, "configs/dql.py")

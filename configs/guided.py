"""Value-guided sampling: the BC actor frozen, a chunked critic trained by TD, its gradient added at every denoising step.

Run: ``python launch/train.py --config=configs/guided.py[:preset]``. Presets (``:point_maze``,
``:smoke``, ``:paper``, ...) are shared by every method: see ``configs/common.py``.
"""

from __future__ import annotations

import ml_collections

from agents import guided
from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    agent = guided.get_config()
    agent.q_agg = "min"  # as QC: its candidates are ranked (and here also steered) by the critic
    return common.make("guided", agent, arg, "configs/guided.py")

"""QC-FQL: BC flow pretraining, then a one-step policy distilled from it and trained against the chunked critic (Q-chunking, Sec. 5.2).

Run: ``python launch/train.py --config=configs/qc_fql.py[:preset]``. Presets (``:point_maze``,
``:smoke``, ``:paper``, ...) are shared by every method: see ``configs/common.py``.
"""

from __future__ import annotations

import ml_collections

from agents import qc_fql
from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    agent = qc_fql.get_config()
    agent.q_agg = "min"  # pessimistic ensemble in the TD target, as QC's config (README: QC-FQL)
    return common.make("qc_fql", agent, arg, "configs/qc_fql.py")

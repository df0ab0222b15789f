"""Learning test (like Brax's ``train_test.py``): online fine-tuning improves on offline RL.

A small budget on the default task: a weak BC policy from few demonstrations,
a short offline QC phase, then online QC. The online phase must lift success
well above the offline-RL level. It fails if the online data never reach
the updates (for instance ``online.offline_ratio = 1``, or a buffer that
drops what the envs produce), because offline-only training does not repair
the policy in this budget.
"""

from __future__ import annotations

import pytest

from configs import qc as qc_config
from launch.experiment import run


def learning_config(tmp_path):
    c = qc_config.get_config("learning_test")
    c.run_dir, c.data_dir = str(tmp_path / "run"), str(tmp_path / "data")
    return c


@pytest.mark.timeout(1200)
def test_online_qc_improves_on_offline_qc(tmp_path):
    summary = run(learning_config(tmp_path), log=lambda *_: None)
    offline, online = summary["offline_rl"]["success"], summary["finetuned"]["success"]
    assert online >= offline + 0.15, (summary["bc"]["success"], offline, online)

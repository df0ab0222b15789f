"""Shared fixtures: one compiled env and one small dataset for the whole session."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def task():
    import envs
    return envs.make("point_obstacle")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """``python launch/train.py --config=configs/qc.py:smoke`` once per session: ``(run_dir, data_dir, stdout)``."""
    import subprocess

    base = tmp_path_factory.mktemp("smoke")
    run_dir, data_dir = str(base / "run"), str(base / "data")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "train.py"), "--config=configs/qc.py:smoke",
                           f"--config.run_dir={run_dir}", f"--config.data_dir={data_dir}",
                           "--config.env.num_video_episodes=1"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir, data_dir, proc.stdout

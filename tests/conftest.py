"""Shared fixtures: one compiled env, one small dataset, one smoke run and one method sweep per session.

The suite runs on 2 pytest-xdist workers (``pytest.ini``: ``-n 2``; compiling is single-threaded, so
a second worker fills the idle core). Each worker makes its own session fixtures, so a fixture whose
tests land on both workers is made twice (xdist's ``loadgroup`` did not group tests under pytest 9.2).
"""

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


METHODS = ("qc_fql", "dql", "guided", "dppo")  # QC is the smoke run itself
VMAPPED = (("dppo", 1),)  # jobs added to the method sweep: (method, seed); DPPO seeds 0-1 then share a process


@pytest.fixture(scope="session")
def method_sweep(smoke_run, tmp_path_factory):
    """Every other method's ``:smoke`` run as one local sweep (``launch/sweep.py``, 2 processes at a time).

    With the jobs of :data:`VMAPPED`: DPPO seeds 0 and 1 run as one process (``--vmap_seeds=2``). Returns ``(sweep_dir, command, {method: (run_dir, job stdout)})``
    (seed 0 of each method).
    """
    import glob
    import json
    import subprocess

    _, data_dir, _ = smoke_run  # the smoke dataset is built once
    base = tmp_path_factory.mktemp("sweep")
    sweep_file = base / "methods.py"
    # then DPPO's seed 1: with seed 0, one process with its seeds vmapped (--vmap_seeds=2)
    sweep_file.write_text("def sweep(arg=None):\n    return [" + ", ".join(
        [f"{{'config': 'configs/{m}.py:smoke'}}" for m in METHODS] + [f"{{'config': 'configs/{m}.py:smoke', 'seed': {s}}}"
                                                                 for m, s in VMAPPED]) + "]\n")
    sweep_dir = str(base / "sweep")
    command = [sys.executable, os.path.join(ROOT, "launch", "sweep.py"), "--config=configs/qc.py:smoke",
               f"--sweep={sweep_file}", f"--config.data_dir={data_dir}", "--config.env.num_video_episodes=0",
               f"--sweep_dir={sweep_dir}", "--executor=local", "--parallel=2", "--vmap_seeds=2"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(sweep_dir, "sweep.json")) as f:
        jobs = json.load(f)["jobs"]
    logs = {path: open(path).read() for path in glob.glob(os.path.join(sweep_dir, "submitit", "*", "*_log.out"))}
    runs = {}
    for method, job in zip(METHODS, jobs):
        out = next((text for text in logs.values() if job["run_dir"] in text), "")
        runs[method] = (job["run_dir"], out)
    return sweep_dir, command, runs

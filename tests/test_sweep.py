"""Sweeps (launch/sweep.py, local executor) and the results table (launch/results.py, rliable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from configs import common
from configs import qc as qc_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_run(root, method, task, seed, bc, evals, agent_extra=None):
    """A finished run folder as the pipeline writes it (summary.json + config.json), without training."""
    d = os.path.join(root, f"{method}_{task}_s{seed}")
    os.makedirs(d)
    metric = "return" if ":" in task else "success"
    final = evals[-1]
    summary = {"agent": method, "env": task, "seed": seed, "wall_time_s": 1.0,
               "bc": {metric: bc, "episodes": 64}, "finetuned": {metric: final, "episodes": 64},
               "evals": [{"stage": "bc", "env_steps": 0, metric: bc}]
               + [{"stage": "online", "env_steps": 100 * (i + 1), metric: v} for i, v in enumerate(evals[:-1])]
               + [{"stage": "finetuned", "env_steps": 100 * len(evals), metric: final}]}
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(summary, f)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"agent": agent_extra or {}}, f)
    return d


def test_results_table_is_the_iqm_of_final_evaluations_with_bootstrap_cis(tmp_path):
    from launch import results

    finals = [0.1, 0.2, 0.3, 0.4, 1.0]  # IQM 0.3 (the middle three), mean 0.4
    for seed, final in enumerate(finals):
        # an intermediate evaluation beats the final one: the score must not be the best checkpoint
        _fake_run(tmp_path, "qc", "point_obstacle", seed, bc=0.05, evals=[0.95, final])
        _fake_run(tmp_path, "qc", "pick_place", seed, bc=0.0, evals=[0.5])
        _fake_run(tmp_path, "dql", "point_obstacle", seed, bc=0.05, evals=[0.2, 0.6],
                  agent_extra={"q_action": "one_step"})
    records = results.load(results.find_runs([str(tmp_path)]))
    assert len(records) == 15 and {r["method"] for r in records} == {"qc", "edp"}  # DQL's one-step variant
    point, lo, hi = results.iqm_ci(np.array(finals)[:, None], reps=500)
    assert point == pytest.approx(0.3) and lo <= 0.3 <= hi and lo < hi
    text = results.write(records, str(tmp_path / "out"), reps=500)
    row = next(line for line in text.splitlines() if line.startswith("| qc | point_obstacle"))
    assert "| 5 |" in row and "0.300 [" in row and "0.950" not in row
    assert "0.050 [0.050, 0.050]" in row  # the BC start
    agg = next(line for line in text.splitlines() if line.startswith("| qc | **all 2 tasks**"))
    expected, _, _ = results.iqm_ci(np.array([finals, [0.5] * 5]).T, reps=500)
    assert f"{expected:.3f}" in agg
    assert not any(line.startswith("| edp | **all") for line in text.splitlines())  # one task only
    assert "final" in text and "never the best" in text.lower() and "stratified bootstrap" in text
    with open(tmp_path / "out" / "curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(rows) == 16 and rows[0].startswith("method,task,seed")


def test_overrides_and_grid_name_bad_fields():
    c = qc_config.get_config("smoke")
    common.apply_overrides(c, {"preset": "pick_place", "seed": 4, "agent.actor_hidden_dims": [16, 16]})
    assert c.env.name == "pick_place" and c.seed == 4 and c.agent.actor_hidden_dims == (16, 16)
    assert c.agent.batch_size == 32  # the smoke size stays: a task preset sets the task's fields only
    with pytest.raises(ValueError, match="agent.num_sample"):
        common.apply_overrides(c, {"agent.num_sample": 3})
    with pytest.raises(ValueError, match="seed"):
        common.apply_overrides(c, {"seed": "zero"})
    with pytest.raises(ValueError, match="unknown preset 'mars'"):
        common.apply_overrides(c, {"preset": "mars"})
    jobs = common.grid({"seed": range(3), "agent.eta": [0.1, 1.0]})
    assert len(jobs) == 6 and {"seed": 2, "agent.eta": 1.0} in jobs


def test_bc_study_sweep_selects_tasks_and_every_job_resolves():
    from configs import bc as bc_config
    jobs = bc_config.sweep("study,push_t,pick_place_two")
    tasks = {j["config"].split(":")[1].split(",")[0] for j in jobs}
    assert tasks == {"push_t", "pick_place_two"} and sorted(j["seed"] for j in jobs) == [0, 0, 1, 1, 2, 2]
    short = bc_config.sweep("study,h4")  # by preset: only the rows with h4
    assert short and all("h4" in j["config"].split(":")[1].split(",") for j in short)
    assert len(short) < len(bc_config.sweep("study"))
    every = bc_config.sweep("study") + bc_config.sweep("chunks")
    assert len(every) == 3 * len(bc_config.STUDY) + 14
    for job in every:  # each job names a preset and fields that exist
        path, _, preset = job["config"].partition(":")
        common.apply_overrides(bc_config.get_config(preset), {k: v for k, v in job.items() if k != "config"})
    with pytest.raises(ValueError, match="mars"):
        bc_config.sweep("study,mars")


def test_local_sweep_runs_skips_finished_jobs_and_tabulates(method_sweep):
    """Four methods' smoke jobs (and two seed pairs) through submitit's local executor; the same command again
    skips them all."""
    from conftest import METHODS, VMAPPED

    sweep_dir, command, runs = method_sweep
    listing = json.load(open(os.path.join(sweep_dir, "sweep.json")))
    n = len(METHODS) + len(VMAPPED)
    assert [j["state"] for j in listing["jobs"]] == ["finished"] * n
    assert [j["overrides"] for j in listing["jobs"]] == [{"config": f"configs/{m}.py:smoke"} for m in METHODS] + [
        {"config": f"configs/{m}.py:smoke", "seed": s} for m, s in VMAPPED]
    for job, method in zip(listing["jobs"], METHODS):
        summary = json.load(open(os.path.join(job["run_dir"], "summary.json")))
        assert summary["agent"] == method and summary["finetuned"]["episodes"] == 16
        assert os.path.dirname(job["run_dir"]) == os.path.abspath(sweep_dir)
        assert os.path.basename(job["run_dir"]).startswith(f"{method}_point_obstacle_s0_")
        config = json.load(open(os.path.join(job["run_dir"], "config.json")))
        assert config["env"]["num_video_episodes"] == 0  # the --config flags reach every job
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{n} jobs, {n} finished (skipped)" in again.stdout
    assert "submitted" not in again.stdout
    out = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "results.py"), sweep_dir, "--reps=200"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for method in METHODS:
        seeds = 1 + sum(m == method for m, _ in VMAPPED)
        assert f"| {method} | point_obstacle | success | {seeds} |" in out.stdout
    assert os.path.exists(os.path.join(sweep_dir, "results.md"))


def _numbers(path):
    """metrics.csv without its speed and time columns, as floats (phase names dropped)."""
    import pandas as pd

    frame = pd.read_csv(path)
    keep = [c for c in frame.columns if not c.endswith("_per_s") and c not in ("phase", "wall_s")]
    return frame["phase"].tolist(), frame[keep].to_numpy(float), keep


def test_vmapped_seeds_share_a_process_and_write_their_own_run_folders(method_sweep):
    """``--vmap_seeds=2``: DPPO seeds 0 and 1 ran as one process (the on-policy loop vmapped), each seed writing the
    run folder a run of that seed alone writes. (That the vmapped loops equal each seed alone:
    ``tests/test_train.py::test_vmapped_update_loop_equals_each_seed_alone``.)"""
    import glob

    from launch import experiment

    sweep_dir, _, runs = method_sweep
    jobs = json.load(open(os.path.join(sweep_dir, "sweep.json")))["jobs"]
    logs = [open(p).read() for p in glob.glob(os.path.join(sweep_dir, "submitit", "*", "*_log.out"))]
    assert len(logs) == len(jobs) - 1  # one job fewer than run folders: the pair shared its process
    pair = [j for j in jobs if j["overrides"]["config"] == "configs/dppo.py:smoke"]
    assert len(pair) == 2
    shared = [text for text in logs if all(j["run_dir"] in text for j in pair)]
    assert len(shared) == 1 and "2 seeds (0, 1) in this process, vmapped" in shared[0]
    summaries = [json.load(open(os.path.join(j["run_dir"], "summary.json"))) for j in pair]
    assert [s["seed"] for s in summaries] == [0, 1] and all(s["vmapped_seeds"] == [0, 1] for s in summaries)
    phases0, m0, cols0 = _numbers(os.path.join(pair[0]["run_dir"], "metrics.csv"))
    phases1, m1, cols1 = _numbers(os.path.join(pair[1]["run_dir"], "metrics.csv"))
    assert phases0 == phases1 and "online" in phases0  # every phase, logged seed by seed
    bc_loss = [m[:, cols.index("bc_loss")][np.array(phases0) == "pretrain"] for m, cols in ((m0, cols0), (m1, cols1))]
    assert np.all(np.isfinite(bc_loss)) and not np.allclose(*bc_loss)  # each seed its own keys
    for j in pair:
        assert sorted(os.listdir(os.path.join(j["run_dir"], "checkpoints")))[0] == "0"
        assert os.path.basename(j["run_dir"]).startswith("dppo_point_obstacle_s")
    # the same group again: both seeds are finished, their summaries come back without training
    config = ml_collections.ConfigDict(experiment._tuples(json.load(open(os.path.join(pair[0]["run_dir"],
                                                                                      "config.json")))))
    config.num_seeds, config.run_dir = 2, sweep_dir
    lines = []
    out = experiment.run(config, log=lines.append)
    assert [s["seed"] for s in out] == [0, 1] and sum("holds a finished run" in line for line in lines) == 2


def test_vmap_seeds_groups_only_consecutive_seeds_of_one_config():
    """``--vmap_seeds``: one process per run of consecutive seeds of an otherwise equal config, at most N each."""
    from launch import sweep

    def job(seed, **overrides):
        c = qc_config.get_config("smoke")
        common.apply_overrides(c, {"seed": seed, **overrides})
        return {"name": f"{seed}{overrides}", "config": c}

    jobs = [job(4), job(0), job(1), job(2), job(1, **{"agent.num_samples": 8}), job(2, **{"agent.num_samples": 8})]
    groups = sweep.group_seeds(jobs, max_seeds=2, sweep_dir="S")
    seeds = sorted([j["config"].seed for j in members] for members, _ in groups)
    assert seeds == [[0, 1], [1, 2], [2], [4]]  # 0-1 then 2 (at most 2), 4 apart (3 is missing), num_samples=8 apart
    for members, config in groups:
        assert {j["config"].agent.num_samples for j in members} == {config.agent.num_samples}
        if len(members) > 1:  # one process: the first seed, the count, and the sweep folder as the runs' parent
            assert (config.seed, config.num_seeds, config.run_dir) == (members[0]["config"].seed, 2, "S")
        else:  # a lone job runs as it is
            assert config is members[0]["config"]
    assert [len(m) for m, _ in sweep.group_seeds(jobs, max_seeds=1, sweep_dir="S")] == [1] * 6


def test_results_split_a_method_by_config_fields_and_tabulate_its_modes(tmp_path):
    """``results.py --by=agent.horizon``: one row per horizon; the mode table averages each mode's share of the
    successes over runs, leaving out a run without successes (NaN shares)."""
    import math

    from launch import results

    def fake_run(name, horizon, seed, success, upper):
        d = tmp_path / name
        d.mkdir()
        lower = math.nan if math.isnan(upper) else 1 - upper
        final = {"success": success, "episodes": 256, "mode_upper": upper, "mode_lower": lower}
        (d / "summary.json").write_text(json.dumps({"agent": "bc", "env": "point_maze", "seed": seed, "bc": final,
                                                    "dataset": {"mode_split": {"0": 0.51, "1": 0.49}}}))
        (d / "config.json").write_text(json.dumps({"agent": {"horizon": horizon}}))

    fake_run("a", 5, 0, 0.10, 0.2)
    fake_run("b", 5, 1, 0.0, math.nan)   # no successes: no mode shares
    fake_run("c", 16, 0, 0.70, 0.4)
    fake_run("d", 16, 1, 0.60, 0.5)
    records = results.load(results.find_runs([str(tmp_path)]), by=("agent.horizon",))
    assert sorted({r["method"] for r in records}) == ["bc (horizon=16)", "bc (horizon=5)"]
    text = results.table(records, reps=50)
    assert "| bc (horizon=16) | point_maze | success | 2 |" in text and "| bc (horizon=5) | point_maze | success | 2 |" in text
    modes = results.mode_table(records)
    assert "| bc (horizon=16) | point_maze | 2 of 2 | upper 0.45 / lower 0.55 | 0.40 | upper 0.51 / lower 0.49 |" in modes
    assert "| bc (horizon=5) | point_maze | 1 of 2 | upper 0.20 / lower 0.80 | 0.20 |" in modes
    with pytest.raises(ValueError, match="agent.no_such_field"):
        results.load(results.find_runs([str(tmp_path)]), by=("agent.no_such_field",))

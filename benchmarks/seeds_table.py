"""Multi-seed table of a run's phases (BC, offline RL, online RL) with 95% bootstrap confidence intervals.

    python benchmarks/seeds_table.py runs/qc_point_obstacle_s0_* runs/qc_point_obstacle_s1_* ...
    python benchmarks/seeds_table.py --by_method runs/*      # one row per method (EDP apart from DQL)
    python benchmarks/seeds_table.py --by_method --curves=benchmarks/curves.png runs/*  # + success vs env steps / wall time

Reads each run folder's ``summary.json`` and prints a Markdown table: success
after BC, after offline RL and after online fine-tuning per seed, the online
gain, the wall time, and the mean over seeds with a 95% stratified-bootstrap
interval (``launch/results.interval``, rliable, 10,000 resamples, fixed
seed). The method-by-task results table with IQMs is ``launch/results.py``;
this one adds the per-phase view of each seed.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch import results  # noqa: E402

PHASES = (("bc", "BC"), ("offline_rl", "offline QC"), ("finetuned", "online QC"))


def _summary(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)


def _cell(values, bold: bool = False) -> str:
    """Mean over seeds [95% CI]; a dash when a run lacks the value."""
    if not values or any(v is None for v in values):
        return "—"
    mean, lo, hi = results.interval(np.asarray(values, np.float64)[:, None], reps=10_000, statistic="mean")
    return f"**{mean:.3f}** [{lo:.3f}, {hi:.3f}]" if bold else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def table(run_dirs: list[str]) -> str:
    """One row per run (seed): success after each phase, online minus offline, wall time; then the mean [CI]."""
    rows, cols, gains, walls = [], {k: [] for k, _ in PHASES}, [], []
    for d in run_dirs:
        s = _summary(d)
        vals = [s[k]["success"] for k, _ in PHASES]
        for (k, _), v in zip(PHASES, vals):
            cols[k].append(v)
        gains.append(vals[2] - vals[1])
        walls.append(s["wall_time_s"])
        rows.append(f"| {s['seed']} | " + " | ".join(f"{v:.3f}" for v in vals)
                    + f" | {gains[-1]:+.3f} | {s['wall_time_s']:.0f} s |")
    head = "| seed | " + " | ".join(name for _, name in PHASES) + " | online - offline | wall (in run) |"
    sep = "|" + "---|" * (len(PHASES) + 3)
    mean = ("| mean [95% CI] | " + " | ".join(_cell(cols[k], bold=True) for k, _ in PHASES)
            + f" | {_cell(gains, bold=True)} | {np.mean(walls):.0f} s |")
    return "\n".join([head, sep, *rows, mean])


def methods_table(run_dirs: list[str]) -> str:
    """One row per method: mean success after BC, offline RL and online RL [95% bootstrap CI over seeds]."""
    groups: dict[str, list[dict]] = {}
    for d in run_dirs:
        groups.setdefault(results.method_name(d), []).append(_summary(d))

    def rate(s, k):
        return f"{s[k]['success']:.2f}" if k in s else "—"

    lines = ["| method | seeds | BC | offline RL | online RL | online - BC | per seed (BC / offline / online) | wall (in run) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, runs in groups.items():
        runs = sorted(runs, key=lambda s: s["seed"])
        cols = {k: [s[k]["success"] if k in s else None for s in runs] for k, _ in PHASES}
        gain = [None if b is None else f - b for f, b in zip(cols["finetuned"], cols["bc"])]
        per_seed = "; ".join(" / ".join(rate(s, k) for k, _ in PHASES) for s in runs)
        lines.append(f"| {name} | {','.join(str(s['seed']) for s in runs)} | "
                     + " | ".join(_cell(cols[k]) for k, _ in PHASES)
                     + f" | {_cell(gain)} | {per_seed} | {np.mean([s['wall_time_s'] for s in runs]):.0f} s |")
    return "\n".join(lines)


def curves(run_dirs: list[str], path: str) -> str:
    """Success against online env steps and against wall time since the run started (``launch/results.curves``)."""
    results.curves(results.load(run_dirs), path, xs=("env_steps", "wall_s"))
    return path


if __name__ == "__main__":
    args = sys.argv[1:]
    by_method = "--by_method" in args
    plot = [a.split("=", 1)[1] for a in args if a.startswith("--curves=")]
    args = [a for a in args if a != "--by_method" and not a.startswith("--curves=")]
    if not args:
        raise SystemExit("usage: python benchmarks/seeds_table.py [--by_method] [--curves=PNG] RUN_DIR [RUN_DIR ...]")
    print(methods_table(args) if by_method else table(args))
    if plot:
        print(f"curves: {curves(args, plot[0])}")

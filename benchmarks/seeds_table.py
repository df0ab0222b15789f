"""Multi-seed table of a run's phases with 95% bootstrap confidence intervals.

    python benchmarks/seeds_table.py runs/qc_point_obstacle_s0_* runs/qc_point_obstacle_s1_* ...
    python benchmarks/seeds_table.py --by_method runs/*      # one row per method (EDP apart from DQL)
    python benchmarks/seeds_table.py --by_method --curves=benchmarks/curves.png runs/*  # + success vs env steps / wall time

Reads each run folder's ``summary.json`` and prints a Markdown table: success
after BC, after offline RL and after online fine-tuning per seed, the online
gain, the wall time, and the mean over seeds with a 95% percentile-bootstrap
interval over seeds (10,000 resamples, fixed seed).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

PHASES = (("bc", "BC"), ("offline_rl", "offline QC"), ("finetuned", "online QC"))


def bootstrap_ci(values, num_resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (1-D, at least one value)."""
    values = np.asarray(values, np.float64)
    idx = np.random.default_rng(seed).integers(0, len(values), (num_resamples, len(values)))
    means = values[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def table(run_dirs: list[str]) -> str:
    rows, cols = [], {k: [] for k, _ in PHASES}
    gains, walls = [], []
    for d in run_dirs:
        s = json.load(open(os.path.join(d, "summary.json")))
        vals = [s[k]["success"] for k, _ in PHASES]
        for (k, _), v in zip(PHASES, vals):
            cols[k].append(v)
        gains.append(vals[2] - vals[1])
        walls.append(s["wall_time_s"])
        rows.append(f"| {s['seed']} | " + " | ".join(f"{v:.3f}" for v in vals)
                    + f" | {gains[-1]:+.3f} | {s['wall_time_s']:.0f} s |")
    head = "| seed | " + " | ".join(name for _, name in PHASES) + " | online - offline | wall (in run) |"
    sep = "|" + "---|" * (len(PHASES) + 3)

    def cell(v):
        lo, hi = bootstrap_ci(v)
        return f"**{np.mean(v):.3f}** [{lo:.3f}, {hi:.3f}]"

    mean = (f"| mean [95% CI] | " + " | ".join(cell(cols[k]) for k, _ in PHASES)
            + f" | {cell(gains)} | {np.mean(walls):.0f} s |")
    return "\n".join([head, sep, *rows, mean])


def method_name(run_dir: str) -> str:
    """The method a run folder holds: its agent, with DQL's one-step variant named EDP."""
    s = json.load(open(os.path.join(run_dir, "summary.json")))
    config = json.load(open(os.path.join(run_dir, "config.json")))
    if s["agent"] == "dql" and config["agent"].get("q_action") == "one_step":
        return "edp"
    return s["agent"]


def methods_table(run_dirs: list[str]) -> str:
    """One row per method: mean success after BC, offline RL and online RL [95% bootstrap CI over seeds]."""
    groups: dict[str, list[dict]] = {}
    for d in run_dirs:
        groups.setdefault(method_name(d), []).append(json.load(open(os.path.join(d, "summary.json"))))

    def cell(v):
        if any(x is None for x in v):
            return "—"
        lo, hi = bootstrap_ci(v)
        return f"{np.mean(v):.3f} [{lo:.3f}, {hi:.3f}]"

    def rate(s, k):
        return f"{s[k]['success']:.2f}" if k in s else "—"

    lines = ["| method | seeds | BC | offline RL | online RL | online - BC | per seed (BC / offline / online) | wall (in run) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, runs in groups.items():
        runs = sorted(runs, key=lambda s: s["seed"])
        cols = {k: [s[k]["success"] if k in s else None for s in runs] for k, _ in PHASES}
        gain = [None if b is None else f - b for f, b in zip(cols["finetuned"], cols["bc"])]
        per_seed = "; ".join(" / ".join(rate(s, k) for k, _ in PHASES) for s in runs)
        lines.append(f"| {name} | {','.join(str(s['seed']) for s in runs)} | " + " | ".join(cell(cols[k]) for k, _ in PHASES)
                     + f" | {cell(gain)} | {per_seed} | {np.mean([s['wall_time_s'] for s in runs]):.0f} s |")
    return "\n".join(lines)


def curves(run_dirs: list[str], path: str) -> str:
    """Success against online env steps and against wall time since the run started, mean over seeds per method.

    A method's evaluations are matched by their order (every seed of a method
    evaluates on the same schedule); the curve starts at the last evaluation
    before online training (BC, or offline RL), or at the first one for a
    method trained from scratch. Shaded: min-max over seeds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[list[dict]]] = {}
    for d in run_dirs:
        s = json.load(open(os.path.join(d, "summary.json")))
        evals = s["evals"]
        before = [i for i, e in enumerate(evals) if e["stage"] in ("bc", "offline_rl")]
        groups.setdefault(method_name(d), []).append(evals[before[-1] if before else 0:])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    for name, runs in sorted(groups.items()):
        n = min(len(r) for r in runs)
        succ = np.array([[e["success"] for e in r[:n]] for r in runs])
        for ax, key in zip(axes, ("env_steps", "wall_s")):
            x = np.mean([[e.get(key, np.nan) for e in r[:n]] for r in runs], axis=0)
            line, = ax.plot(x, succ.mean(0), marker="o", ms=3, label=f"{name} ({len(runs)} seeds)")
            ax.fill_between(x, succ.min(0), succ.max(0), color=line.get_color(), alpha=0.15)
    axes[0].set_xlabel("online env steps")
    axes[1].set_xlabel("wall time since the run started (s; BC and compilation included)")
    for ax in axes:
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
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

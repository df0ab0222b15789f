"""Results of many runs: a table per method and task with IQM and 95% stratified-bootstrap CIs (rliable), and curves.

``python launch/results.py <sweep folder | run folder | folder of run folders> ... [--out=DIR] [--reps=2000]``

Every finished run folder found (``summary.json``; a sweep folder's
``sweep.json`` lists its jobs) contributes one score per task: the success
rate of its **final** evaluation (``env.num_eval_episodes`` episodes after the
last fine-tuning step; never the best of the intermediate evaluations), or
the mean return on tasks without a success signal (``playground:*``,
``gym:*``). Per method and task the table gives the interquartile mean (IQM)
over runs with a 95% stratified-bootstrap confidence interval (Agarwal et
al. 2021, rliable), for the BC policy a method started from and for the
fine-tuned one; a method run on every task of the table also gets one row
aggregated over tasks (IQM over runs x tasks, bootstrap stratified by task).

Writes ``results.md`` (the table with the metric's definition), ``results.csv``
(one row per run) and ``curves.png`` (IQM and 95% CI against online env
steps, one panel per task) into ``--out`` (default: the first folder given).
"""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_runs(paths: list[str]) -> list[str]:
    """Finished run folders under ``paths`` (sweep folders via their ``sweep.json``, else searched), sorted."""
    found = set()
    for path in paths:
        listing = os.path.join(path, "sweep.json")
        if os.path.exists(listing):
            with open(listing) as f:
                candidates = [j["run_dir"] for j in json.load(f)["jobs"]]
        else:
            candidates = [root for root, _, files in os.walk(path) if "summary.json" in files]
        found.update(os.path.abspath(c) for c in candidates if os.path.exists(os.path.join(c, "summary.json")))
    return sorted(found)


def method_name(run_dir: str, by: tuple[str, ...] = ()) -> str:
    """The method a run folder holds: its agent, with DQL's one-step variant named EDP.

    ``by`` names dotted config fields (e.g. ``agent.horizon``) whose values
    are appended, ``bc (horizon=16, obs_history=2)``, so that runs of one agent
    with different settings form separate rows.

    Raises:
      ValueError: a field of ``by`` that the run's config does not have.
    """
    with open(os.path.join(run_dir, "summary.json")) as f:
        agent = json.load(f)["agent"]
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    name = "edp" if agent == "dql" and config["agent"].get("q_action") == "one_step" else agent
    values = []
    for field in by:
        node = config
        for part in field.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"--by: {run_dir}/config.json has no field {field!r}")
            node = node[part]
        values.append(f"{field.split('.')[-1]}={node}")
    return f"{name} ({', '.join(values)})" if values else name


def metric_of(task: str) -> str:
    """``success`` for the project's tasks, ``return`` for adapted ones without a success signal."""
    return "return" if ":" in task else "success"


def load(run_dirs: list[str], by: tuple[str, ...] = ()) -> list[dict]:
    """One record per run: method, task, seed, metric, BC and final scores, the evaluations, episodes, wall time,
    and ``modes``: the final evaluation's share of the successes in each of the task's modes
    (``mode_<name>``; empty for a task without modes). ``by``: see :func:`method_name`.

    Raises:
      ValueError: a run folder without a final evaluation (not finished).
    """
    records = []
    for d in run_dirs:
        with open(os.path.join(d, "summary.json")) as f:
            s = json.load(f)
        if "finetuned" not in s and "bc" not in s:
            raise ValueError(f"{d}: summary.json has no final evaluation")
        metric = metric_of(s["env"])
        final = s.get("finetuned", s.get("bc"))  # a BC-only run's final evaluation is its BC one
        records.append({"run_dir": d, "method": method_name(d, by), "task": s["env"], "seed": s["seed"],
                        "modes": {k[len("mode_"):]: v for k, v in final.items() if k.startswith("mode_")},
                        "expert_modes": (s.get("dataset") or {}).get("mode_split", {}),
                        "metric": metric, "final": float(final[metric]), "episodes": int(final["episodes"]),
                        "bc": float(s["bc"][metric]) if "bc" in s else None,
                        "evals": s.get("evals", []), "wall_s": s.get("wall_time_s")})
    return records


def interval(scores: np.ndarray, reps: int, statistic: str = "iqm", seed: int = 0) -> tuple[float, float, float]:
    """``statistic`` (``iqm`` or ``mean``) of ``scores [runs, tasks]`` and its 95% stratified-bootstrap interval.

    rliable (Agarwal et al. 2021), ``reps`` resamples of the runs within each task.

    Raises:
      ValueError: an unknown ``statistic``.
    """
    from rliable import library as rly
    from rliable import metrics

    aggregate = {"iqm": metrics.aggregate_iqm, "mean": metrics.aggregate_mean}.get(statistic)
    if aggregate is None:
        raise ValueError(f"statistic: expected 'iqm' or 'mean', got {statistic!r}")
    np.random.seed(seed)  # rliable draws from numpy's global generator
    point, ci = rly.get_interval_estimates({"m": scores}, lambda x: np.array([aggregate(x)]), reps=reps)
    return float(point["m"][0]), float(ci["m"][0, 0]), float(ci["m"][1, 0])


def iqm_ci(scores: np.ndarray, reps: int, seed: int = 0) -> tuple[float, float, float]:
    """IQM of ``scores [runs, tasks]`` and its 95% stratified-bootstrap interval (:func:`interval`)."""
    return interval(scores, reps, "iqm", seed)


def table(records: list[dict], reps: int = 2000) -> str:
    """The Markdown table (per method and task, and over tasks) with the metric's definition under it."""
    tasks = sorted({r["task"] for r in records})
    methods = sorted({r["method"] for r in records})

    def cell(values):
        if not values or any(v is None for v in values):
            return "—"
        point, lo, hi = iqm_ci(np.asarray(values, np.float64)[:, None], reps)
        return f"{point:.3f} [{lo:.3f}, {hi:.3f}]"

    lines = ["| method | task | metric | runs | BC: IQM [95% CI] | fine-tuned: IQM [95% CI] | per run (final) |",
             "|---|---|---|---|---|---|---|"]
    for method in methods:
        for task in tasks:
            runs = sorted((r for r in records if r["method"] == method and r["task"] == task), key=lambda r: r["seed"])
            if not runs:
                continue
            lines.append(f"| {method} | {task} | {runs[0]['metric']} | {len(runs)} | {cell([r['bc'] for r in runs])} "
                         f"| {cell([r['final'] for r in runs])} | "
                         + ", ".join(f"{r['final']:.3f}" for r in runs) + " |")
        per_task = [[r["final"] for r in records if r["method"] == method and r["task"] == t] for t in tasks]
        same_metric = len({metric_of(t) for t in tasks}) == 1
        if len(tasks) > 1 and same_metric and all(per_task) and len({len(p) for p in per_task}) == 1:
            point, lo, hi = iqm_ci(np.asarray(per_task, np.float64).T, reps)
            lines.append(f"| {method} | **all {len(tasks)} tasks** | {metric_of(tasks[0])} | {len(per_task[0])} x "
                         f"{len(tasks)} | | **{point:.3f} [{lo:.3f}, {hi:.3f}]** | |")
    episodes = sorted({r["episodes"] for r in records})
    lines += ["", f"Score of a run: its **final** evaluation after the last training step, over "
                  f"{'/'.join(str(e) for e in episodes)} episodes (`env.num_eval_episodes`): the success rate on the "
                  "project's tasks, the mean episode return on `playground:`/`gym:` tasks. Never the best of the "
                  "intermediate evaluations. BC: the same evaluation of the BC policy the run started from. "
                  f"IQM: interquartile mean over runs (the middle 50%); 95% CI: stratified bootstrap over runs, "
                  f"{reps} resamples, rliable (Agarwal et al. 2021)."]
    return "\n".join(lines)


def mode_table(records: list[dict]) -> str:
    """Per method and task with modes: the mean over runs of each mode's share of the successes (runs
    without successes left out), beside the expert's planned split (dataset card). '' without modes."""
    lines = []
    for method in sorted({r["method"] for r in records}):
        for task in sorted({r["task"] for r in records}):
            runs = [r for r in records if r["method"] == method and r["task"] == task and r["modes"]]
            if not runs:
                continue
            names = list(runs[0]["modes"])
            shares = np.array([[r["modes"][m] for m in names] for r in runs], np.float64)
            shares = shares[np.isfinite(shares).all(axis=1)]
            policy = " / ".join(f"{m} {v:.2f}" for m, v in zip(names, shares.mean(0))) if len(shares) else "no successes"
            least = f"{shares.min():.2f}" if len(shares) else "—"
            planned = runs[0]["expert_modes"]
            expert = " / ".join(f"{m} {planned[str(i)]:.2f}" for i, m in enumerate(names) if str(i) in planned)
            lines.append(f"| {method} | {task} | {len(shares)} of {len(runs)} | {policy} | {least} | {expert} |")
    if not lines:
        return ""
    return "\n".join(["| method | task | runs with successes | modes of the successes (mean over runs) | "
                      "smallest share in a run | expert's planned split |", "|---|---|---|---|---|---|", *lines])


def curves(records: list[dict], path: str, reps: int = 500, xs: tuple[str, ...] = ("env_steps",)) -> None:
    """``path`` (PNG): per task, IQM over a method's runs with its 95% CI band, against each key of ``xs``.

    ``xs``: ``env_steps`` (online env steps) and/or ``wall_s`` (seconds since
    the run started, BC and compilation included), one row of panels each. A
    method's evaluations are matched by order (its runs share one schedule);
    a curve starts at the last evaluation before online training (BC or
    offline RL), or at the first for a method trained from scratch.
    """
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    labels = {"env_steps": "online env steps", "wall_s": "wall time since the run started (s)"}
    tasks = sorted({r["task"] for r in records})
    fig = Figure(figsize=(5.5 * len(tasks), 4 * len(xs)), dpi=120)
    axes = fig.subplots(len(xs), len(tasks), squeeze=False)
    for col, task in enumerate(tasks):
        metric = metric_of(task)
        for method in sorted({r["method"] for r in records if r["task"] == task}):
            runs = [r for r in records if r["method"] == method and r["task"] == task]
            evals = []
            for r in runs:
                before = [i for i, e in enumerate(r["evals"]) if e["stage"] in ("bc", "offline_rl")]
                evals.append(r["evals"][before[-1] if before else 0:])
            n = min(len(e) for e in evals)
            if n == 0:
                continue
            y = np.array([[e[metric] for e in ev[:n]] for ev in evals])  # [runs, points]
            stats = np.array([iqm_ci(y[:, i:i + 1], reps) for i in range(n)])
            for row, key in enumerate(xs):
                x = np.mean([[e.get(key, np.nan) for e in ev[:n]] for ev in evals], axis=0)
                line, = axes[row, col].plot(x, stats[:, 0], marker="o", ms=3, label=f"{method} ({len(runs)} runs)")
                axes[row, col].fill_between(x, stats[:, 1], stats[:, 2], color=line.get_color(), alpha=0.2)
        for row, key in enumerate(xs):
            ax = axes[row, col]
            ax.set_title(task)
            ax.set_xlabel(labels.get(key, key))
            ax.set_ylabel(f"{metric} (IQM, 95% CI)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def write(records: list[dict], out: str, reps: int = 2000) -> str:
    """Writes ``results.md``, ``results.csv`` and ``curves.png`` into ``out``; returns the table."""
    os.makedirs(out, exist_ok=True)
    text = table(records, reps)
    modes = mode_table(records)
    if modes:
        text += "\n\n" + modes
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "task", "seed", "metric", "bc", "final", "episodes", "wall_s", "run_dir"])
        for r in sorted(records, key=lambda r: (r["method"], r["task"], r["seed"])):
            writer.writerow([r["method"], r["task"], r["seed"], r["metric"], r["bc"], r["final"], r["episodes"],
                             r["wall_s"], r["run_dir"]])
    curves(records, os.path.join(out, "curves.png"))
    return text


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="sweep folders, run folders or folders holding run folders")
    parser.add_argument("--out", default="", help="where results.md/csv and curves.png go (default: first path)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--by", default="", help="comma-separated config fields that split a method into rows, "
                        "e.g. agent.horizon,agent.obs_history")
    args = parser.parse_args(argv)
    runs = find_runs(args.paths)
    if not runs:
        print(f"no finished run folder (summary.json) under {args.paths}", file=sys.stderr)
        return 1
    out = args.out or args.paths[0]
    print(write(load(runs, tuple(f for f in args.by.split(",") if f)), out, args.reps))
    print(f"\n{len(runs)} runs; written to {out}/results.md, results.csv, curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

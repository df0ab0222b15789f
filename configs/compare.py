"""The method comparison as one sweep: every fine-tuning method on the default task and on ``pick_place``.

    python launch/sweep.py --config=configs/compare.py --executor=local --parallel=1
    python launch/sweep.py --config=configs/compare.py --executor=slurm --slurm.partition=gpu
    python launch/results.py sweeps/compare

``get_config`` is the default QC config (so that ``--config.x=y`` flags and
presets work as for any run); ``sweep()`` lists one job per method, task and
seed, each built from the method's own config file and the task preset.
"""

from __future__ import annotations

from configs import qc

# (config file, extra overrides) per method; EDP is DQL with the one-step clean estimate in its Q term
METHODS = {
    "qc": ("configs/qc.py", {}),
    "qc_fql": ("configs/qc_fql.py", {}),
    "dql": ("configs/dql.py", {}),
    "edp": ("configs/dql.py", {"agent.q_action": "one_step"}),
    "guided": ("configs/guided.py", {}),
    "dppo": ("configs/dppo.py", {}),
}
TASKS = ("", "pick_place")  # '' = the default task (point_obstacle, 1000 demonstrations, 80% sloppy)
SEEDS = range(5)


def get_config(arg: str | None = None):
    """The default QC config (the jobs are built from each method's file; ``arg`` selects jobs, see :func:`sweep`)."""
    del arg
    return qc.get_config()


def sweep(arg: str | None = None) -> list[dict]:
    """One override dict per (method, task, seed).

    ``arg`` (after the colon of ``--config=configs/compare.py:...``),
    comma-separated: ``default_task`` (only the default task), ``seeds=N``
    (seeds 0..N-1 instead of 5), ``methods=a+b`` (a subset), ``smoke`` (the
    tiny sizes, for tests).
    """
    methods, tasks, seeds, size = tuple(METHODS), TASKS, SEEDS, ""
    for token in [t for t in (arg or "").split(",") if t]:
        name, _, value = token.partition("=")
        if name == "default_task":
            tasks = ("",)
        elif name == "seeds":
            seeds = range(int(value))
        elif name == "methods":
            methods = tuple(value.split("+"))
            unknown = [m for m in methods if m not in METHODS]
            if unknown:
                raise ValueError(f"configs/compare.py: unknown methods {unknown}; expected {sorted(METHODS)}")
        elif name == "smoke":
            size = "smoke"
        else:
            raise ValueError(f"configs/compare.py: unknown selector {token!r}; expected default_task, seeds=N, "
                             "methods=a+b, smoke")
    jobs = []
    for method in methods:
        file, extra = METHODS[method]
        for task in tasks:
            preset = ",".join(p for p in (task, size) if p)
            for seed in seeds:
                jobs.append({"config": f"{file}:{preset}" if preset else file, "seed": seed, **extra})
    return jobs

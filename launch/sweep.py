"""Sweeps: many runs of one config, as a Slurm job array or as local processes (submitit).

``python launch/sweep.py --config=configs/qc.py:point_maze [--config.x=y ...] --executor=local|slurm``

The config file's ``sweep(arg)`` (or ``--sweep=FILE[:ARG]`` naming another
file's; ``arg`` is the text after the colon, or None) returns the jobs: a list of override dicts, each a run of the base
config (the ``--config`` file and preset, then the ``--config.x=y`` flags)
with dotted fields set, e.g. ``{"seed": 3, "agent.num_samples": 8}``. Two
keys are special: ``"config": "configs/dql.py:pick_place"`` builds that job
from another file and preset (the ``--config.x=y`` flags still apply), and
``"preset": "pick_place"`` applies a task or size preset of
``configs/common.py``. :func:`configs.common.grid` expands a grid.

Each job is an ordinary run folder under the sweep folder
(``--sweep_dir``, default ``sweeps/<file>_<preset>``), named like a default
run folder (agent, env, seed, config hash; see ``launch/experiment.py``), so
running the sweep command again finds the same folders: finished jobs
(``summary.json``) are skipped, unfinished ones resume from their last
checkpoint. ``<sweep_dir>/sweep.json`` lists the jobs, their overrides, run
folders and states (``finished``, ``unfinished``, ``pending``, ``failed``
with the error).

Executors (submitit):

* ``--executor=slurm``: one Slurm job array (``--slurm.partition``,
  ``--slurm.gpus_per_node``, ``--slurm.cpus_per_task``, ``--slurm.mem_gb``,
  ``--slurm.time_min``, ``--slurm.array_parallelism``); a job that is
  pre-empted or reaches its time limit is requeued by submitit and resumes.
  The command returns after submitting; run it again later to see the
  states, or with ``--wait``.
* ``--executor=local``: the same jobs as local processes, ``--parallel`` at a
  time (a pool: the next job starts as soon as any running one ends); the
  command returns when all have ended.

``--vmap_seeds=N`` (N > 1) runs up to N jobs that differ only in their
(consecutive) seeds as one process, the seeds ``jax.vmap``-ed
(``config.num_seeds``, see ``launch/experiment.run``): one compilation and
batched kernels for runs small enough; each seed still writes its own run
folder, so states, skipping and results are the same as with one job per seed.

``--dry_run`` lists the jobs and their folders without running anything.
Results: ``python launch/results.py <sweep_dir>``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_collections  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from configs.common import apply_overrides  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEFAULT = os.path.join(ROOT, "configs", "qc.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT, "Base run config file (with :preset).",
                                          lock_config=True)


def _slurm_defaults() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.partition = ""            # Slurm partition ('' -> the cluster's default)
    s.gpus_per_node = 1         # GPUs per job
    s.cpus_per_task = 8         # CPU cores per job
    s.mem_gb = 64               # memory per job, GiB
    s.time_min = 240            # time limit per job; a job that reaches it is requeued and resumes
    s.nodes = 1                 # nodes per job (> 1: one process per node, jax.distributed from the Slurm env)
    s.array_parallelism = 64    # jobs of the array running at once
    s.account = ""              # Slurm account ('' -> none)
    s.constraint = ""           # Slurm constraint ('' -> none)
    return s


_SLURM = config_flags.DEFINE_config_dict("slurm", _slurm_defaults(), "Slurm job settings (--executor=slurm).")
_SWEEP = flags.DEFINE_string("sweep", "", "File (and :preset) whose sweep() defines the jobs; '' -> the --config file.")
_SWEEP_DIR = flags.DEFINE_string("sweep_dir", "", "Sweep folder; '' -> sweeps/<config file>_<preset>.")
_EXECUTOR = flags.DEFINE_enum("executor", "local", ["local", "slurm"], "Where the jobs run.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Local executor: jobs running at once.")
_WAIT = flags.DEFINE_boolean("wait", False, "Slurm executor: wait until every job has ended.")
_VMAP_SEEDS = flags.DEFINE_integer("vmap_seeds", 1, "Jobs differing only in their seeds run as one vmapped "
                                   "process, up to this many seeds each (1: one process per job).")
_DRY_RUN = flags.DEFINE_boolean("dry_run", False, "List the jobs and their run folders; run nothing.")


def load_file(spec: str):
    """``(module, preset)`` for ``'configs/x.py[:preset]'`` (relative to the working directory or the project)."""
    path, _, preset = spec.partition(":")
    if not os.path.exists(path) and os.path.exists(os.path.join(ROOT, path)):
        path = os.path.join(ROOT, path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"sweep: no config file {path!r}")
    module_spec = importlib.util.spec_from_file_location(f"_sweep_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, preset or None


def expand(base: ml_collections.ConfigDict, jobs: list[dict], cli_overrides: dict,
           sweep_dir: str) -> list[dict]:
    """The job list: for each override dict, its resolved config and its run folder under ``sweep_dir``.

    Raises:
      ValueError: a job sets a field the config does not have, or a value of the wrong type (names both).
    """
    from launch.experiment import default_run_name

    out, seen = [], set()
    for i, overrides in enumerate(jobs):
        overrides = dict(overrides)
        spec = overrides.pop("config", None)
        if spec:
            module, preset = load_file(spec)
            config = module.get_config(preset)
            apply_overrides(config, cli_overrides, where=f"--config flags (job {i})")
        else:
            config = ml_collections.ConfigDict(base.to_dict())
        apply_overrides(config, overrides, where=f"sweep job {i}")
        name = default_run_name(config)
        if name in seen:
            raise ValueError(f"sweep job {i} ({overrides}) repeats an earlier job's config")
        seen.add(name)
        config.run_dir = os.path.join(sweep_dir, name)
        out.append({"name": name, "overrides": {**({"config": spec} if spec else {}), **overrides},
                    "run_dir": config.run_dir, "config": config})
    return out


def group_seeds(jobs: list[dict], max_seeds: int, sweep_dir: str) -> list[tuple[list[dict], dict]]:
    """``(members, config)`` per process: jobs equal but for consecutive seeds share one, up to ``max_seeds``.

    A group's config has the first member's seed, ``num_seeds`` members and
    ``run_dir=sweep_dir``: each seed then writes the member's own folder
    (``<sweep_dir>/<name>``, see :func:`expand`).
    """
    def signature(config):
        d = config.to_dict()
        return json.dumps({k: v for k, v in d.items() if k not in ("seed", "run_dir")}, sort_keys=True, default=str)

    if max_seeds <= 1:
        return [([j], j["config"]) for j in jobs]
    by_signature: dict[str, list[dict]] = {}
    for j in jobs:
        by_signature.setdefault(signature(j["config"]), []).append(j)
    groups = []
    for members in by_signature.values():
        members = sorted(members, key=lambda j: j["config"].seed)
        run = [members[0]]
        for j in members[1:] + [None]:
            if j is not None and j["config"].seed == run[-1]["config"].seed + 1 and len(run) < max_seeds:
                run.append(j)
                continue
            config = run[0]["config"]
            if len(run) > 1:
                config = ml_collections.ConfigDict(config.to_dict())
                config.num_seeds, config.run_dir = len(run), sweep_dir
            groups.append((run, config))
            run = [j]
    return groups


def job_state(run_dir: str) -> str:
    """``finished`` (summary.json), ``unfinished`` (a run folder without it), or ``pending`` (no folder)."""
    if os.path.exists(os.path.join(run_dir, "summary.json")):
        return "finished"
    return "unfinished" if os.path.isdir(run_dir) else "pending"


def write_listing(sweep_dir: str, jobs: list[dict], errors: dict | None = None, extra: dict | None = None) -> dict:
    """Writes ``<sweep_dir>/sweep.json``: every job's name, overrides, run folder and state; returns it."""
    errors = errors or {}
    listing = {"jobs": [{"name": j["name"], "overrides": j["overrides"], "run_dir": os.path.abspath(j["run_dir"]),
                         "state": "failed" if j["name"] in errors else job_state(j["run_dir"]),
                         **({"error": errors[j["name"]]} if j["name"] in errors else {})} for j in jobs],
               **(extra or {})}
    listing["counts"] = {s: sum(1 for j in listing["jobs"] if j["state"] == s)
                         for s in ("finished", "unfinished", "pending", "failed")}
    os.makedirs(sweep_dir, exist_ok=True)
    tmp = os.path.join(sweep_dir, "sweep.json.tmp")
    with open(tmp, "w") as f:
        json.dump(listing, f, indent=2)
    os.replace(tmp, os.path.join(sweep_dir, "sweep.json"))
    return listing


class Job:
    """One run as a submitit job: ``launch.experiment.run(config)``; requeued (and resumed) on pre-emption."""

    def __init__(self, config: dict):
        self.config = config  # a plain dict: pickled into the job folder

    def __call__(self) -> dict:
        sys.path.insert(0, ROOT)
        logging.set_verbosity(logging.WARNING)
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # --slurm.nodes > 1: one process per node
            import jax

            jax.distributed.initialize()
        from launch.experiment import run

        out = run(ml_collections.ConfigDict(self.config), log=lambda msg: print(msg, flush=True))
        summaries = out if isinstance(out, list) else [out]  # several seeds in one process (num_seeds)
        return [{k: summary.get(k) for k in ("run_dir", "bc", "finetuned")} for summary in summaries]

    def checkpoint(self, *args, **kwargs):
        """submitit calls this on pre-emption or time-out: the same job again; the run resumes from its checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(Job(self.config))


def _executor(sweep_dir: str):
    import submitit

    folder = os.path.join(sweep_dir, "submitit", "%j")
    if _EXECUTOR.value == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=24 * 60)
        return executor
    s = _SLURM.value
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    extra = {k: v for k, v in (("account", s.account), ("constraint", s.constraint)) if v}
    executor.update_parameters(timeout_min=s.time_min, gpus_per_node=s.gpus_per_node, cpus_per_task=s.cpus_per_task,
                               mem_gb=s.mem_gb, slurm_array_parallelism=s.array_parallelism, nodes=s.nodes,
                               tasks_per_node=1, name=os.path.basename(os.path.abspath(sweep_dir)),
                               **({"slurm_partition": s.partition} if s.partition else {}),
                               **({"slurm_additional_parameters": extra} if extra else {}))
    return executor


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    config_spec = config_flags.get_config_filename(flags.FLAGS["config"])
    sweep_spec = _SWEEP.value or config_spec
    module, sweep_arg = load_file(sweep_spec)
    if not hasattr(module, "sweep"):
        raise app.UsageError(f"{sweep_spec.partition(':')[0]} defines no sweep(); add one or pass --sweep=FILE")
    path, _, preset = config_spec.partition(":")
    sweep_dir = _SWEEP_DIR.value or os.path.join(
        "sweeps", os.path.splitext(os.path.basename(path))[0] + (f"_{preset}" if preset else ""))
    jobs = expand(_CONFIG.value, list(module.sweep(sweep_arg)), config_flags.get_override_values(flags.FLAGS["config"]),
                  sweep_dir)
    todo = [j for j in jobs if job_state(j["run_dir"]) != "finished"]
    print(f"sweep {sweep_dir}: {len(jobs)} jobs, {len(jobs) - len(todo)} finished (skipped), "
          f"{sum(job_state(j['run_dir']) == 'unfinished' for j in todo)} to resume, "
          f"{sum(job_state(j['run_dir']) == 'pending' for j in todo)} to start", flush=True)
    write_listing(sweep_dir, jobs, extra={"command": " ".join(sys.argv)})
    if _DRY_RUN.value:
        for j in jobs:
            print(f"  {job_state(j['run_dir']):10s} {j['run_dir']}  {j['overrides']}")
        return
    if not todo:
        return
    executor = _executor(sweep_dir)
    t0, errors = time.time(), {}
    groups = group_seeds(todo, _VMAP_SEEDS.value, sweep_dir)

    def submitted(members, handle):
        print(f"  submitted {', '.join(j['name'] for j in members)} (job {handle.job_id})", flush=True)

    def collect(members, handle):  # waits for the job; records a failure by job name
        names = ", ".join(j["name"] for j in members)
        try:
            handle.result()
            print(f"  finished {names} ({time.time() - t0:.0f} s since the sweep started)", flush=True)
        except Exception as err:  # the job's traceback is in its submitit folder
            message = f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:300]}"
            errors.update({j["name"]: message for j in members})
            print(f"  FAILED {names}: {message} (log: {handle.paths.stderr})", flush=True)
        write_listing(sweep_dir, jobs, errors, extra={"command": " ".join(sys.argv)})

    if _EXECUTOR.value == "slurm":
        with executor.batch():  # one Slurm job array
            handles = [executor.submit(Job(config.to_dict())) for _, config in groups]
        for (members, _), h in zip(groups, handles):
            submitted(members, h)
        if not _WAIT.value:
            print(f"submitted {len(groups)} jobs as one array; run this command again to see their states "
                  f"({os.path.join(sweep_dir, 'sweep.json')})")
            return
        for (members, _), h in zip(groups, handles):
            collect(members, h)
    else:  # a pool of --parallel processes: the next job starts as soon as any one ends
        pending, running = list(groups), []
        while pending or running:
            while pending and len(running) < max(1, _PARALLEL.value):
                members, config = pending.pop(0)
                handle = executor.submit(Job(config.to_dict()))
                submitted(members, handle)
                running.append((members, handle))
            ended = [(m, h) for m, h in running if h.done()]
            for members, handle in ended:
                running.remove((members, handle))
                collect(members, handle)
            if not ended:
                time.sleep(1.0)
    listing = write_listing(sweep_dir, jobs, errors, extra={"command": " ".join(sys.argv),
                                                            "wall_s_last_invocation": round(time.time() - t0, 1)})
    print(f"sweep {sweep_dir}: {listing['counts']} in {time.time() - t0:.0f} s")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)

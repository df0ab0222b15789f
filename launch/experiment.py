"""One run, end to end: data -> BC pretraining -> evaluation -> RL fine-tuning -> evaluation.

:func:`run` is what ``launch/train.py`` calls. It writes one run folder::

    <run_dir>/config.json        the resolved config
    <run_dir>/dataset_card.json  the demonstrations' statistics
    <run_dir>/metrics.csv        every logged scalar (phase, step, ...)
    <run_dir>/tb/                the same for TensorBoard
    <run_dir>/checkpoints/       orbax: step 0 after BC pretraining,
                                 then the fine-tuned agent (periodically, and at the end)
    <run_dir>/videos/            a few rendered evaluation episodes (MP4; skipped without OpenGL)
    <run_dir>/summary.json       success after BC and after fine-tuning, steps, times
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import envs
from agents import agent_class
from agents.bc import BCAgent
from envs.wrappers import ObsHistory, VecEnv, next_history, stack_history
from launch import loops
from launch.checkpoint import CheckpointMismatchError, Checkpointer, RunState, first_difference, restore
from launch.data import sloppy_prob, task_dataset
from launch.logger import Logger, format_line
from launch.validate import validate_config
from replay.buffer import ReplayBuffer
from replay.normalizer import Normalizer


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def _committed(tree):
    """Places every array on the default device as a committed array.

    Arrays made outside ``jit`` are uncommitted while ``jit`` outputs are
    committed; feeding a compiled loop one kind and then the other compiles it
    twice. Everything entering a loop goes through here first.
    """
    return jax.device_put(tree, jax.devices()[0])


class Devices:
    """Where a run's arrays live: the default device, or a 1-D ``data`` mesh over every visible device.

    With several devices (and ``config.multi_device``) the run is data
    parallel: the agent, its optimiser states and the offline buffer are
    replicated; the envs' states and the online buffer's streams are sharded
    along the env axis; update batches are constrained to be sharded along
    the batch axis, so that XLA computes each device's share of the loss and
    all-reduces the gradients (their mean). Results equal a one-device run up
    to the order of float additions (random numbers do not depend on the
    sharding: ``jax_threefry_partitionable``). Several seeds in one process
    (``config.num_seeds`` > 1) run on the default device.

    Raises:
      ConfigError: ``env.num_envs`` or ``agent.batch_size`` is not a multiple of the device count.
    """

    def __init__(self, config):
        from launch.validate import ConfigError

        n = jax.device_count()
        self.mesh = None
        if n > 1 and config.get("multi_device", True) and config.get("num_seeds", 1) == 1:
            for field, value in (("env.num_envs", config.env.num_envs),
                                 ("agent.batch_size", config.agent.get("batch_size", n))):
                if value % n:
                    raise ConfigError(f"config.{field}: expected a multiple of the {n} devices, got {value} "
                                      "(or --config.multi_device=False)")
            self.mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))

    @property
    def count(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    def replicate(self, tree):
        """Every array on every device (on the default device when there is one)."""
        if self.mesh is None:
            return _committed(tree)
        return jax.device_put(tree, jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec()))

    def _spec(self, x):
        P = jax.sharding.PartitionSpec
        shape = np.shape(x)
        return P("data") if len(shape) >= 1 and np.prod(shape) > 0 and shape[0] % self.mesh.size == 0 else P()

    def shard(self, tree):
        """Arrays split along their leading (env / stream) axis; scalars replicated."""
        if self.mesh is None:
            return _committed(tree)
        return jax.tree.map(lambda x: jax.device_put(x, jax.sharding.NamedSharding(self.mesh, self._spec(x))), tree)

    def place(self, state: dict) -> dict:
        """A loop state: ``env_state`` and ``buffer`` sharded, everything else replicated."""
        return {k: self.shard(v) if k in ("env_state", "buffer") else self.replicate(v) for k, v in state.items()}

    @property
    def batch_constraint(self):
        """``fn(batch) -> batch`` sharding a batch along its leading axis inside a compiled loop (None: one device)."""
        if self.mesh is None:
            return None

        def constrain(tree):
            return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(
                x, jax.sharding.NamedSharding(self.mesh, self._spec(x))), tree)
        return constrain


def _compile(name: str, jitted, args: tuple, log):
    """Compiles ``jitted`` for ``args`` ahead of time; returns it and the trace + compile seconds.

    Calling the compiled function with arrays of other shapes or dtypes raises
    instead of compiling again, so each loop compiles exactly once per run
    (DESIGN.md, "one compile"). XLA's persistent cache (see
    :func:`enable_compilation_cache`) makes a second run skip most of the work.
    """
    t0 = time.time()
    lowered = jitted.lower(*args)
    t1 = time.time()
    compiled = lowered.compile()
    t2 = time.time()
    log(f"  compiled {name}: trace {t1 - t0:.1f} s + XLA {t2 - t1:.1f} s")
    return compiled, {"trace": round(t1 - t0, 2), "compile": round(t2 - t1, 2)}


def enable_compilation_cache(directory: str) -> None:
    """Keeps XLA executables in ``directory`` so that a second run with the same shapes skips compilation."""
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _check_finite(phase: str, step: int, metrics: dict) -> None:
    bad = [k for k, v in metrics.items() if k.endswith("loss") and not np.isfinite(float(v))]
    if bad:
        raise NonFiniteLossError(f"[{phase}] step {step}: {', '.join(bad)} is not finite "
                                 f"({', '.join(f'{k}={float(metrics[k])}' for k in bad)}); stopping. "
                                 "The last good checkpoint is kept in the run folder.")


# where/how a run goes, not what it computes (num_seeds: how many seeds share the process)
_NOT_IN_NAME = ("run_dir", "data_dir", "compilation_cache", "checkpoint_every_s", "log", "multi_device", "num_seeds")


def _config_dict(config) -> dict:
    return json.loads(config.to_json_best_effort())


def default_run_name(config) -> str:
    """``<agent>_<env>_s<seed>_<hash>``: 8 hex digits of the config (but where its files go), so that the same
    config always names the same folder (resume, sweeps)."""
    what = {k: v for k, v in _config_dict(config).items() if k not in _NOT_IN_NAME}
    digest = hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8]
    env = config.env.name.replace(":", "-").replace("/", "-")
    return f"{config.agent_name}_{env}_s{config.seed}_{digest}"


def _run_dir(config) -> str:
    """``config.run_dir``, or ``runs/<default_run_name>``: the same command finds the same folder."""
    return config.run_dir or os.path.join("runs", default_run_name(config))


def _check_same_config(run_dir: str, config) -> None:
    """Refuses to resume (or re-report) a run folder that was started with another config, naming the field."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        old = json.load(f)
    found = first_difference(old, _config_dict(config), skip=_NOT_IN_NAME)
    if found:
        field, was, now = found
        raise CheckpointMismatchError(
            f"config.{field}: run folder {run_dir} was started with {was!r}, this command has {now!r}; resume "
            "with the same config, or start afresh with another --config.run_dir (or delete the folder)")


def _actor_meta(config, obs_size: int, action_size: int) -> dict:
    """What a checkpoint must agree on with the config that restores it (the policy's architecture)."""
    keys = ("generative", "horizon", "actor_hidden_dims", "actor_layer_norm", "actor_activation", "denoising_steps",
            "train_denoising_steps", "noise_schedule",  # generative actors
            "policy_hidden_dims", "value_hidden_dims", "activation", "squash")  # Gaussian PPO
    return {"env": config.env.name, "obs_size": obs_size, "action_size": action_size,
            "agent": {k: config.agent[k] for k in keys if k in config.agent}}


def make_task(config):
    """The run's MJX task: ``envs.make(config.env.name)``, wrapped in
    :class:`envs.wrappers.ObsHistory` when ``config.agent.obs_history > 1``."""
    task = envs.make(config.env.name)
    history = int(config.agent.get("obs_history", 1))
    return ObsHistory(task, history) if history > 1 else task


def evaluation_result(out: dict, log, modes: tuple[str, ...] = ()) -> dict:
    """Success rate, its standard error, mean return/length from one evaluation's per-episode arrays (logged).

    ``out`` is what :func:`launch.loops.make_evaluate` returns, as NumPy
    arrays. ``modes`` names the task's modes (``envs.mode_names``): the
    result then holds ``mode_<name>``, the share of the *successful*
    episodes the task classified into that mode (``info['mode']``; NaN
    without successes), so a policy's mode split reads next to its expert's
    (the dataset card's ``mode_split``). For an agent with a critic the result also holds ``q_start``
    (the critic's mean value of the chunks chosen at the start states),
    ``mc_return`` (the mean discounted return actually obtained from those
    states) and their difference ``q_bias`` (over-estimation when positive).
    """
    n = len(out["success"])
    rate = float(out["success"].mean())
    result = {"success": rate, "success_stderr": math.sqrt(rate * (1 - rate) / n),
              "return": float(out["return"].mean()), "length": float(out["length"].mean()), "episodes": n,
              "mc_return": float(out["discounted_return"].mean())}
    line = (f"  eval over {n} episodes: success {rate:.3f} +- {result['success_stderr']:.3f}, "
            f"mean return {result['return']:.1f}, mean length {result['length']:.1f}")
    if "q_start" in out:
        result["q_start"] = float(out["q_start"].mean())
        result["q_bias"] = result["q_start"] - result["mc_return"]
        line += (f", Q(s0, a0) {result['q_start']:.3f} vs discounted return {result['mc_return']:.3f} "
                 f"(bias {result['q_bias']:+.3f})")
    if modes:
        won = out["mode"][out["success"].astype(bool)]
        shares = [float(np.mean(won == i)) if len(won) else float("nan") for i in range(len(modes))]
        result.update({f"mode_{name}": share for name, share in zip(modes, shares)})
        line += ", modes of successes " + " / ".join(f"{name} {share:.2f}" for name, share in zip(modes, shares))
    log(line)
    return result


_PHASES = ("pretrain", "offline", "online")  # the phases a resume checkpoint can be in, in run order


@dataclasses.dataclass
class _Seat:
    """One seed's share of a run: its config, run folder and writers.

    A run has one seat, or ``config.num_seeds`` of them when several seeds
    train in one process (see :func:`run`); each seat's folder is exactly the
    one a run of that seed alone writes.
    """

    seed: int
    config: ml_collections.ConfigDict   # the run's config with this seat's seed (what config.json holds)
    run_dir: str
    log: Callable[[str], None]          # the run's log, prefixed with the seed when there are several seats
    resume: RunState
    progress: dict | None               # the resume checkpoint's record (None: a fresh start)
    summary: dict = None
    logger: Logger = None
    ckpt: Checkpointer = None
    save_index: int = 0


def _index(x, i: int):
    """Seat ``i``'s part of a stacked array (or of a shape template)."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
    return x[i]


class _Run:
    """What every phase of one run shares: config, devices, normaliser, and its seats (one per seed).

    With one seat, arrays are those of one run. With several (``config.num_seeds``),
    every array of the training state has a leading seat axis and every compiled
    loop is ``jax.vmap``-ed over it (:meth:`per_seed`, ``vmap_seeds`` of
    :mod:`launch.loops`); the host side (logs, checkpoints, evaluations,
    summaries) works seat by seat on :meth:`split` parts.

    The resume checkpoints' records (one per seat) say where the run was:
    phases before their phase are skipped, their phase goes on from its
    counters and arrays (:meth:`start`), later phases run as usual.
    """

    def __init__(self, config, log, seats: list[_Seat], meta, normalizer, devices):
        self.config, self.log, self.seats = config, log, seats
        self.meta, self.normalizer, self.devices = meta, normalizer, devices
        self.vmapped = len(seats) > 1
        self.progress = seats[0].progress
        self.last_save = time.time()

    # --- the seat axis
    def split(self, tree) -> list:
        """Each seat's part of a stacked tree (the tree itself when there is one seat)."""
        if not self.vmapped:
            return [tree]
        return [jax.tree.map(lambda x: _index(x, i), tree) for i in range(len(self.seats))]

    def stack(self, trees: list):
        """The inverse of :meth:`split`."""
        if not self.vmapped:
            return trees[0]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)

    def broadcast(self, tree):
        """The same tree for every seat."""
        return self.stack([tree] * len(self.seats))

    def per_seed(self, fn):
        """``fn`` compiled, over a leading seat axis of every argument when there are several seats."""
        return jax.jit(jax.vmap(fn) if self.vmapped else fn)

    def create(self, build, *args):
        """``build(seed, *args)`` (an agent's ``create``) inside ``jit``, for every seat's seed.

        The same arrays as eager initialisation, without building networks and
        optimisers op by op (4-6 s per agent on the CPU, about 1-2 s compiled).
        """
        if not self.vmapped:
            seed = self.seats[0].seed
            return jax.jit(lambda *a: build(seed, *a))(*args)
        return jax.jit(jax.vmap(build))(jnp.asarray([s.seed for s in self.seats]), *args)

    def split_key(self, key):
        """``(key, subkey)`` from ``key`` (each seat's own when there are several)."""
        if not self.vmapped:
            return tuple(jax.random.split(key))
        both = jax.vmap(jax.random.split)(key)
        return both[:, 0], both[:, 1]

    def compile(self, name: str, jitted, args: tuple):
        """:func:`_compile`, recorded in every seat's summary."""
        compiled, record = _compile(name, jitted, args, self.log)
        for seat in self.seats:
            seat.summary.setdefault("compile_s", {})[name] = record
            seat.summary["compiles"][name] = seat.summary["compiles"].get(name, 0) + 1
        return compiled

    def record(self, section: str, key: str, value) -> None:
        """``summary[section][key] = value`` in every seat's summary (``section`` '' : top level)."""
        for seat in self.seats:
            (seat.summary.setdefault(section, {}) if section else seat.summary)[key] = value

    def evaluate(self, eval_fn, agent, key) -> list[dict]:
        """Runs the compiled evaluation once; :func:`evaluation_result` for every seat (logged)."""
        out = jax.tree.map(np.asarray, eval_fn(agent, key))
        modes = envs.mode_names(self.config.env.name)
        return [evaluation_result(part, seat.log, modes) for seat, part in zip(self.seats, self.split(out))]

    # --- resume
    def reached(self, phase: str) -> bool:
        """True when the resume checkpoint is in ``phase`` or a later one (``phase`` itself is not finished)."""
        return self.progress is not None and _PHASES.index(self.progress["phase"]) >= _PHASES.index(phase)

    def skips(self, phase: str) -> bool:
        """True when the resume checkpoint is in a phase after ``phase`` (``phase`` and its evaluation are done)."""
        return self.progress is not None and _PHASES.index(self.progress["phase"]) > _PHASES.index(phase)

    def start(self, phase: str, state: dict, counters: dict):
        """``(state, counters)`` to begin ``phase`` with, placed on the devices (:meth:`Devices.place`).

        Restored from the resume checkpoints when they are in ``phase``
        (``state`` is then only the template: arrays or shapes), else the given
        ones. ``counters`` comes back as one dict per seat.
        """
        if self.progress is None or self.progress["phase"] != phase:
            return self.devices.place(state), [dict(counters) for _ in self.seats]
        restored = self.stack([seat.resume.restore(part) for seat, part in zip(self.seats, self.split(state))])
        self.log(f"  resumed {phase} after {self.progress['counters']['calls']} compiled calls")
        return self.devices.place(restored), [dict(seat.progress["counters"]) for seat in self.seats]

    def save(self, phase: str, state: dict, counters: list[dict], force: bool) -> None:
        """Writes the resume checkpoints (one per seat) when forced or ``checkpoint_every_s`` has passed."""
        if not force and time.time() - self.last_save < self.config.get("checkpoint_every_s", 300.0):
            return
        for seat, part, c in zip(self.seats, self.split(state), counters):
            seat.save_index += 1
            seat.resume.save(seat.save_index, part, {
                "phase": phase, "counters": c, "summary": seat.summary, "log_rows": len(seat.logger.rows),
                "save_index": seat.save_index})
        self.last_save = time.time()


def _seats(config, log) -> tuple[list[_Seat], dict]:
    """The run's seats (seeds ``config.seed .. + num_seeds - 1``) and the summaries of seeds already finished.

    Raises:
      launch.checkpoint.CheckpointMismatchError: a seat's folder was started with another config.
      ValueError: the seats' resume checkpoints are at different points.
    """
    num_seeds = config.get("num_seeds", 1)
    seats, finished = [], {}
    for seed in range(config.seed, config.seed + num_seeds):
        seat_config = config.copy_and_resolve_references()
        with seat_config.unlocked():
            seat_config.seed = seed
            if num_seeds > 1:
                seat_config.num_seeds = 1  # the folder a run of this seed alone writes
                if config.run_dir:  # the parent folder of the seeds' default-named folders (as a sweep's)
                    seat_config.run_dir = os.path.join(config.run_dir, default_run_name(seat_config))
        seat_log = (lambda msg, seed=seed: log(f"[seed {seed}] {msg}")) if num_seeds > 1 else log
        run_dir = _run_dir(seat_config)
        _check_same_config(run_dir, seat_config)
        if os.path.exists(os.path.join(run_dir, "summary.json")):
            with open(os.path.join(run_dir, "summary.json")) as f:
                finished[seed] = json.load(f)
            seat_log(f"run folder {run_dir} holds a finished run (summary.json); nothing to do. Start afresh with "
                     "another --config.run_dir or after deleting the folder.")
            continue
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            f.write(seat_config.to_json_best_effort(indent=2))
        resume = RunState(os.path.join(run_dir, "resume"))
        progress = resume.latest(warn=seat_log)
        seat_log(f"run folder: {run_dir}" + (f" (resuming: phase {progress['phase']}, after "
                                             f"{progress['counters']['calls']} compiled calls)" if progress else ""))
        seats.append(_Seat(seed, seat_config, run_dir, seat_log, resume, progress,
                           save_index=progress["save_index"] if progress else 0))
    where = {((s.progress or {}).get("phase"), (s.progress or {}).get("counters", {}).get("calls")) for s in seats}
    if len(where) > 1:
        raise ValueError(f"config.num_seeds: the seeds' run folders were left at different points {sorted(where, key=str)}"
                         "; resume them one seed at a time (--config.num_seeds=1 --config.seed=...)")
    return seats, finished


def run(config: ml_collections.ConfigDict, log=print):
    """Runs the whole job described by ``config`` (see ``configs/qc.py``); returns the summary dict.

    With ``config.num_seeds`` S > 1, seeds ``config.seed`` to ``config.seed + S - 1``
    train in this one process, every compiled loop ``jax.vmap``-ed over them
    (PureJaxRL style: one compilation, one batched kernel per op; for runs
    small enough that S copies of the state fit). Each seed writes the run
    folder a run of that seed alone writes (``runs/<default_run_name>``, or
    ``<config.run_dir>/<default_run_name>``: ``run_dir`` is then their parent),
    with its own metrics, checkpoints and summary: the same results up to
    float reordering. Seeds already finished are skipped. Returns then the
    list of the S summaries, in seed order.

    Resumable: the run's whole state (agents with their optimisers, replay
    buffer, env states, PRNG keys, counters, the phase reached) is written to
    ``<run_dir>/resume`` after compiled calls (at least every
    ``config.checkpoint_every_s`` seconds, at every evaluation and at the end
    of each phase). Running the same command again (same config, hence the
    same run folder, see :func:`_run_dir`) continues from there and ends with
    the same metrics as an uninterrupted run; a finished run (its
    ``summary.json`` exists) returns that summary without training.

    Raises:
      ValueError: a config field is invalid (named in the message), the
        dataset does not fit the task, or a ``pretrained`` checkpoint does not
        match the config. All are raised before any training.
      launch.checkpoint.CheckpointMismatchError: ``run_dir`` was started with
        another config (names the first differing field).
      NonFiniteLossError: a loss became NaN/inf (the last good checkpoint stays).
    """
    t_start = time.time()
    task = make_task(config)
    validate_config(config, task)
    devices = Devices(config)
    if config.get("compilation_cache", False):
        enable_compilation_cache(os.path.join(config.data_dir, "jax_cache"))
    obs_size, action_size = int(task.observation_size), int(task.action_size)
    agent_cfg = config.agent
    if agent_cfg.get("actor_lr_decay_steps", 0) < 0:  # -1: the schedule spans BC pretraining
        agent_cfg = ml_collections.ConfigDict(agent_cfg.to_dict())
        agent_cfg.actor_lr_decay_steps = config.pretrain.steps
    AgentClass = agent_class(config.agent_name)

    seats, finished = _seats(config, log)
    if not seats:
        summaries = [finished[s] for s in sorted(finished)]
        return summaries if config.get("num_seeds", 1) > 1 else summaries[0]
    if len(seats) > 1:
        log(f"{len(seats)} seeds ({', '.join(str(s.seed) for s in seats)}) in this process, vmapped")

    # 1. Demonstrations (built on first use, then loaded from the cache); none for an agent trained from scratch.
    from_scratch = getattr(AgentClass, "FROM_SCRATCH", False)
    meta = _actor_meta(config, obs_size, action_size)
    bc_agent, offline = None, None
    ctx = _Run(config, log, seats, meta, None, devices)
    if from_scratch:
        card = {}
        normalizer = Normalizer.identity(obs_size, action_size)
        log(f"{config.agent_name} starts from scratch: no demonstrations, no BC pretraining")
    else:
        steps, card = task_dataset(config.env.name, config.data.num_episodes, config.data.seed,
                                    config.data_dir, log=log, sloppy_prob=sloppy_prob(config))
        history = int(config.agent.get("obs_history", 1))
        if history > 1:  # the windows ObsHistory gives online, padded at each episode's start
            steps = dict(steps, obs=stack_history(steps["obs"], steps["episode_id"], history))
            steps["next_obs"] = next_history(steps["obs"], steps["next_obs"])
            log(f"observation history: the last {history} observations, obs [{obs_size}]")
        for seat in seats:
            with open(os.path.join(seat.run_dir, "dataset_card.json"), "w") as f:
                json.dump(card, f, indent=2)
        log(f"dataset: {card.get('num_episodes')} episodes, {len(steps['reward'])} steps, expert success "
            f"{card.get('success_rate', float('nan')):.3f}, mode split {card.get('mode_split')}")
        normalizer = Normalizer.from_data(steps["obs"], steps["action"])
        PretrainClass = pretrain_class(AgentClass, agent_cfg)
        bc_agent = ctx.create(lambda seed: PretrainClass.create(seed, obs_size, action_size, agent_cfg))
        if config.pretrained:  # checked before any training; the stored normaliser replaces the new one
            log(f"restoring the pretrained BC agent from {config.pretrained}")
            try:
                restored, normalizer, _ = restore(os.path.join(config.pretrained, "checkpoints"),
                                                  ctx.split(bc_agent)[0], normalizer, {**meta, "phase": "bc"}, step=0)
            except CheckpointMismatchError as err:
                if PretrainClass is BCAgent:
                    raise
                raise CheckpointMismatchError(
                    f"{err}; {config.agent_name} pretrains a {PretrainClass.__name__}: point config.pretrained at a "
                    f"{config.agent_name} run folder, or set config.agent.pretrain_distill=False") from err
            bc_agent = ctx.broadcast(restored)  # every seed fine-tunes the same pretrained agent
        offline = devices.replicate(ReplayBuffer.from_steps(normalizer.steps(
            {k: jnp.asarray(steps[k]) for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")})))
        log(f"offline buffer: {offline.capacity} steps, {offline.memory_bytes() / 2**20:.1f} MiB")
    ctx.normalizer = normalizer

    log_cfg = config.get("log")
    if devices.mesh is not None:
        log(f"data parallel over {devices.count} devices: envs and batches sharded, parameters replicated")
    for seat in seats:
        wandb = None
        if log_cfg is not None and log_cfg.wandb:
            wandb = {"project": log_cfg.wandb_project, "entity": log_cfg.wandb_entity, "mode": log_cfg.wandb_mode,
                     "config": _config_dict(seat.config)}
        seat.logger = Logger(seat.run_dir, keep_rows=seat.progress["log_rows"] if seat.progress else None,
                             wandb=wandb)
        seat.ckpt = Checkpointer(os.path.join(seat.run_dir, "checkpoints"), max_to_keep=3)
        if seat.progress:  # the summary so far; compilations are counted per process
            seat.summary = {**seat.progress["summary"], "compiles": {}, "compile_s": {}}
            seat.summary.setdefault("resumed", []).append({
                "phase": seat.progress["phase"], "calls": seat.progress["counters"]["calls"], "unix": t_start})
        else:
            seat.summary = {"run_dir": seat.run_dir, "agent": config.agent_name, "env": config.env.name,
                            "seed": seat.seed, "dataset": card, "timings_s": {}, "compiles": {},
                            "start_unix": t_start}
        if len(seats) > 1:
            seat.summary["vmapped_seeds"] = [s.seed for s in seats]
    keys = ctx.stack([jax.random.split(jax.random.PRNGKey(seat.seed), 8) for seat in seats])
    _, k_eval_bc, k_eval_ft, k_pre, k_off, k_env, k_online, k_eval_off = (keys[..., j, :] for j in range(8))
    eval_env = VecEnv(task, config.env.num_eval_episodes, config.env.episode_length)

    def make_eval():
        ensemble = agent_cfg.ensemble_decay if agent_cfg.get("temporal_ensemble", False) else None
        return loops.make_evaluate(eval_env, normalizer, agent_cfg.action_steps, agent_cfg.discount,
                                   vmap_seeds=ctx.vmapped, temporal_ensemble=ensemble)

    # 2. BC pretraining (unless a pretrained agent was restored), 3. its evaluation.
    if not from_scratch and not ctx.skips("pretrain"):
        if not config.pretrained:
            log(f"BC pretraining: {config.pretrain.steps} steps, batch {agent_cfg.batch_size}, "
                f"{agent_cfg.generative}")
            bc_agent = _update_phase(ctx, "pretrain", bc_agent, offline, k_pre, config.pretrain.steps,
                                     config.pretrain.log_every, PretrainClass.METRICS)
        for seat, part in zip(seats, ctx.split(bc_agent)):
            seat.ckpt.save(0, part, normalizer, {**meta, "phase": "bc"})
        bc_agent = devices.replicate(bc_agent)
        t0 = time.time()
        eval_bc = ctx.compile("eval_bc", make_eval(), (bc_agent, k_eval_bc))
        for seat, result in zip(seats, ctx.evaluate(eval_bc, bc_agent, k_eval_bc)):
            seat.summary["bc"] = result
            _record_eval("bc", 0, result, seat)
        ctx.record("timings_s", "eval_bc_incl_compile", time.time() - t0)

    if config.agent_name == "bc":
        _videos(ctx, task, bc_agent, "bc")
        return _finish(ctx, t_start, finished)

    # 4. The fine-tuning agent from the BC actor (or from scratch): offline updates on demonstrations for an
    #    off-policy agent, then online fine-tuning (replay-based, or on-policy iterations).
    on_policy = getattr(AgentClass, "ON_POLICY", False)
    extra = {"num_envs": config.env.num_envs} if on_policy else {}
    agent = devices.replicate(ctx.create(lambda seed, parts: AgentClass.create(
        seed, obs_size, action_size, agent_cfg, **parts, **extra), {} if bc_agent is None else bc_agent.pretrained()))
    eval_ft = ctx.compile("eval", make_eval(), (agent, k_eval_ft))
    if not on_policy and config.offline.steps > 0 and not ctx.skips("offline"):
        log(f"offline {config.agent_name} updates on demonstrations: {config.offline.steps}")
        agent = _update_phase(ctx, "offline", agent, offline, k_off, config.offline.steps, config.offline.log_every,
                              AgentClass.METRICS)
        for seat, result in zip(seats, ctx.evaluate(eval_ft, agent, k_eval_off)):
            seat.summary["offline_rl"] = result
            _record_eval("offline_rl", 0, result, seat)
    if on_policy:
        agent = _onpolicy(ctx, agent, task, k_online, eval_ft)
    else:
        agent = _online(ctx, agent, task, offline, k_env, k_online, eval_ft)

    # 5. Evaluate the fine-tuned agent.
    t0 = time.time()
    for seat, result in zip(seats, ctx.evaluate(eval_ft, agent, k_eval_ft)):
        seat.summary["finetuned"] = result
        _record_eval("finetuned", seat.summary["online"]["env_steps"], result, seat)
    ctx.record("timings_s", "eval_finetuned", time.time() - t0)
    _videos(ctx, task, agent, "finetuned")
    return _finish(ctx, t_start, finished)


def pretrain_class(AgentClass, agent_config):
    """The agent class of BC pretraining for ``AgentClass``: its ``pretrain_class(config)`` if it has one
    (QC-FQL also distils its one-step policy), else :class:`agents.bc.BCAgent`. Its ``pretrained()`` gives
    the keyword arguments that ``AgentClass.create`` takes from pretraining."""
    own = getattr(AgentClass, "pretrain_class", None)
    return own(agent_config) if own is not None else BCAgent


def restore_agent(run_dir: str, config, step: int | None = None, pretrain: bool = False):
    """``(agent, normaliser)`` from a run folder's checkpoint (the last one unless ``step``), checked against ``config``.

    Works for agents that ``create`` without a pretrained actor (Gaussian PPO,
    and any agent whose template needs only the config). ``pretrain=True``
    reads the BC-pretraining agent (checkpoint 0 of an RL run, see :func:`pretrain_class`).

    Raises:
      FileNotFoundError: no checkpoint; launch.checkpoint.CheckpointMismatchError: another config.
    """
    task = make_task(config)
    obs_size, action_size = int(task.observation_size), int(task.action_size)
    AgentClass = agent_class(config.agent_name)
    extra = {"num_envs": config.env.num_envs} if getattr(AgentClass, "ON_POLICY", False) else {}
    if pretrain:
        AgentClass, extra = pretrain_class(AgentClass, config.agent), {}
    template = jax.jit(lambda: AgentClass.create(config.seed, obs_size, action_size, config.agent, **extra))()
    phase = "bc" if config.agent_name == "bc" or pretrain else "online"
    agent, normalizer, _ = restore(os.path.join(run_dir, "checkpoints"), template,
                                   Normalizer.identity(obs_size, action_size),
                                   {**_actor_meta(config, obs_size, action_size), "phase": phase}, step=step)
    return agent, normalizer


def _tuples(tree):
    if isinstance(tree, dict):
        return {k: _tuples(v) for k, v in tree.items()}
    return tuple(_tuples(v) for v in tree) if isinstance(tree, list) else tree


@dataclasses.dataclass
class LoadedRun:
    """A finished (or checkpointed) run, for notebooks: see :func:`load_run`."""

    path: str
    config: ml_collections.ConfigDict
    agent: object             # the agent of the loaded checkpoint (BCAgent for a BC-only run)
    normalizer: Normalizer    # maps env observations/actions to the agent's normalised ones and back
    task: object              # the MJX task (``envs.make(config.env.name)``)
    summary: dict             # summary.json ({} while the run is unfinished)
    step: int                 # the checkpoint step loaded (0: the BC agent)

    def policy(self, obs, key):
        """Env-space chunks ``[B, H, A]`` for env observations ``obs [B, O]``, as the evaluations act."""
        return self.normalizer.unnormalize_action(self.agent.sample_actions(self.normalizer.obs(obs), key))


def load_run(path: str, step: int | None = None) -> LoadedRun:
    """Loads a run folder: its config, the agent of its last checkpoint (or ``step``), normaliser, task, summary.

    Raises:
      FileNotFoundError: no ``config.json`` or no checkpoint in ``path``.
      launch.checkpoint.CheckpointMismatchError: the checkpoint does not fit the stored config.
    """
    config_path = os.path.join(path, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"load_run: {path!r} is not a run folder (no config.json)")
    with open(config_path) as f:
        config = ml_collections.ConfigDict(_tuples(json.load(f)))  # JSON turned the configs' tuples into lists
    steps = sorted(int(s) for s in os.listdir(os.path.join(path, "checkpoints")) if s.isdigit()) \
        if os.path.isdir(os.path.join(path, "checkpoints")) else []
    if not steps:
        raise FileNotFoundError(f"load_run: {path!r} holds no checkpoint yet")
    step = steps[-1] if step is None else step
    # checkpoint 0 of an RL run holds its BC-pretraining agent
    agent, normalizer = restore_agent(path, config, step=step, pretrain=step == 0 and config.agent_name != "bc")
    summary = {}
    if os.path.exists(os.path.join(path, "summary.json")):
        with open(os.path.join(path, "summary.json")) as f:
            summary = json.load(f)
    return LoadedRun(path=path, config=config, agent=agent, normalizer=normalizer,
                     task=make_task(config), summary=summary, step=step)


_STAGE_CODE = {"bc": 0, "offline_rl": 1, "online": 2, "finetuned": 3}  # metrics.csv holds numbers only


def _record_eval(stage: str, env_steps: int, result: dict, seat: _Seat) -> None:
    """Logs one evaluation (metrics.csv row with phase 'eval') and redraws ``learning_curve.png``."""
    from launch.plots import learning_curve

    summary = seat.summary
    result = {**result, "wall_s": round(time.time() - summary["start_unix"], 1)}  # since the run started
    row = {"stage": _STAGE_CODE[stage], **{k: v for k, v in result.items() if k != "episodes"}}
    seat.logger.log("eval", env_steps, row)
    summary.setdefault("evals", []).append({"stage": stage, "env_steps": int(env_steps), **result})
    expert = summary["dataset"].get("success_rate")
    metric = "success" if expert is not None or any(e["success"] > 0 for e in summary["evals"]) else "return"
    learning_curve(summary["evals"], os.path.join(seat.run_dir, "learning_curve.png"),
                   title=f"{summary['agent']} on {summary['env']}, seed {summary['seed']}", expert=expert,
                   metric=metric)


def _videos(ctx: _Run, task, agent, tag: str) -> None:
    """A few rendered evaluation episodes in each seat's ``<run_dir>/videos/`` (skipped without OpenGL)."""
    config = ctx.config
    if not config.env.num_video_episodes:
        return
    from launch.videos import save_rollout_videos

    for seat, part in zip(ctx.seats, ctx.split(agent)):
        def policy(obs, k, part=part):
            return ctx.normalizer.unnormalize_action(part.sample_actions(ctx.normalizer.obs(obs), k))

        t0 = time.time()
        seat.summary["videos"] = save_rollout_videos(
            seat.run_dir, task, policy, config.agent.action_steps, num_episodes=config.env.num_video_episodes,
            key=jax.random.fold_in(jax.random.PRNGKey(seat.seed), 1),  # apart from the run's key splits
            episode_length=config.env.episode_length, tag=tag, log=seat.log)
        seat.summary["timings_s"]["videos"] = time.time() - t0


def _drive(ctx: _Run, phase: str, call, state: dict, counters: list[dict], total_calls: int, row_fn,
           eval_at=None, on_eval=None) -> tuple[dict, list[dict]]:
    """The host side of every training loop: calls a compiled loop until ``total_calls``, logs, checkpoints.

    Args:
      ctx: the run.
      phase: ``pretrain``, ``offline`` or ``online`` (resume and logging).
      call: ``call(state, key) -> (state, metrics)`` runs one compiled call;
        ``state`` is a dict of arrays holding ``key`` (the loop's PRNG key,
        split here before each call) and what the loop carries.
      state, counters: as returned by :meth:`_Run.start` (restored when
        resuming); ``counters`` holds one dict per seat: ``calls`` and the
        loop's own running sums (JSON numbers).
      row_fn: ``row_fn(metrics, seconds, counters) -> (x, row, keys)`` for one
        seat: the logged x (gradient or env steps), the metrics row and the
        keys printed on the progress line; it may update ``counters``.
      eval_at, on_eval: ``eval_at(counters)`` says whether to evaluate after
        this call (never after the last: the run evaluates at the end);
        ``on_eval(state, counters, xs) -> state`` does it (``xs``: each seat's x).

    Raises:
      NonFiniteLossError: a ``*loss`` metric is NaN or infinite.
    """
    while counters[0]["calls"] < total_calls:
        state["key"], k = ctx.split_key(state["key"])
        t0 = time.time()
        state, metrics = call(state, k)
        if ctx.devices.mesh is not None:  # XLA may hand an output back with another sharding than it takes
            state = ctx.devices.place(state)
        metrics = jax.tree.map(np.asarray, metrics)
        dt = time.time() - t0
        xs = []
        for seat, m, c in zip(ctx.seats, ctx.split(metrics), counters):
            m = jax.tree.map(float, m)
            c["calls"] += 1
            c["loop_s"] = c.get("loop_s", 0.0) + dt
            x, row, keys = row_fn(m, dt, c)
            _check_finite(phase if not ctx.vmapped else f"{phase}, seed {seat.seed}", x, m)
            seat.logger.log(phase, x, row)
            seat.log(format_line(phase, x, row, keys))
            xs.append(x)
        last = counters[0]["calls"] == total_calls
        evaluated = bool(eval_at and not last and eval_at(counters[0]))
        if evaluated:
            state = on_eval(state, counters, xs)
        ctx.save(phase, state, counters, force=last or evaluated)
    return state, counters


def _update_phase(ctx: _Run, phase, agent, buffer, key, steps, log_every, keys):
    """``steps`` agent updates on ``buffer`` (no env interaction), compiled in calls of ``log_every``.

    Logs the averaged metrics and the update rate after every call; records the
    phase's time (compilation apart, see :func:`_compile`) in the summaries.
    """
    if steps <= 0:
        return agent
    config = ctx.config
    every = math.gcd(steps, max(1, min(log_every, steps)))  # calls of equal length that add up to ``steps``
    fn = loops.make_offline_updates(config.agent.batch_size, config.agent.horizon, config.agent.action_steps,
                                    config.agent.discount, every, shard_batch=ctx.devices.batch_constraint,
                                    vmap_seeds=ctx.vmapped)
    state, counters = ctx.start(phase, {"agent": agent, "key": key}, {"calls": 0})
    fn = ctx.compile(phase, fn, (state["agent"], buffer, state["key"]))

    def call(state, k):
        agent, info = fn(state["agent"], buffer, k)
        return {**state, "agent": agent}, info

    def row(info, dt, c):
        done = c["calls"] * every
        return done, {**info, "updates_per_s": done / max(c["loop_s"], 1e-9)}, (*keys, "updates_per_s")

    state, counters = _drive(ctx, phase, call, state, counters, steps // every, row)
    loop_s = counters[0]["loop_s"]
    ctx.record("timings_s", phase, loop_s)
    ctx.record("", f"{phase}_updates_per_s", steps * len(ctx.seats) / max(loop_s, 1e-9))
    return state["agent"]


def _env_state(ctx: _Run, initial):
    """The envs' first state (``initial()``), or only its shapes when the online phase resumes from a checkpoint."""
    return jax.eval_shape(initial) if ctx.reached("online") else initial()


def _online_eval(ctx: _Run, eval_fn, iters_of):
    """An ``on_eval`` for :func:`_drive`: evaluates, records it and saves the agent checkpoints."""
    def on_eval(state, counters, xs):
        state["k_eval"], k = ctx.split_key(state["k_eval"])
        results = ctx.evaluate(eval_fn, state["agent"], k)
        for seat, result, x, c, part in zip(ctx.seats, results, xs, counters, ctx.split(state["agent"])):
            _record_eval("online", x, result, seat)
            seat.ckpt.save(iters_of(c), part, ctx.normalizer, {**ctx.meta, "phase": "online"})
        return state
    return on_eval


def _episode_row(m: dict, dt: float, c: dict) -> dict:
    """Online metrics row: the call's means, episode statistics when episodes ended, throughput."""
    c["env_steps"] += int(m["env_steps"])
    c["episodes"] += m["episodes"]
    c["successes"] += m["successes"]
    row = {k: v for k, v in m.items() if k not in ("return_sum", "length_sum")}
    if m["episodes"]:  # no column when no episode ended in this call
        row.update(train_success=m["successes"] / m["episodes"], episode_return=m["return_sum"] / m["episodes"],
                   episode_length=m["length_sum"] / m["episodes"])
    row["env_steps_per_s"] = m["env_steps"] / max(dt, 1e-9)
    return row


def _online(ctx: _Run, agent, task, offline, k_env, key, eval_fn):
    """Replay-based fine-tuning: each iteration acts one chunk in every env, stores it, runs UTD updates."""
    config = ctx.config
    cfg, acfg = config.online, config.agent
    num_envs, h = config.env.num_envs, acfg.action_steps
    env = VecEnv(task, num_envs, config.env.episode_length)
    total_iters = max(1, cfg.env_steps // (num_envs * h))
    updates_per_iter = max(1, round(cfg.utd_ratio * num_envs))
    log_every = max(1, min(cfg.log_every, total_iters))
    total_calls = -(-total_iters // log_every)
    example = {"obs": jnp.zeros(task.observation_size), "action": jnp.zeros(task.action_size),
               "reward": jnp.zeros(()), "next_obs": jnp.zeros(task.observation_size),
               "terminated": jnp.zeros((), bool), "truncated": jnp.zeros((), bool), "valid": jnp.zeros((), bool)}
    online = ReplayBuffer.create(example, capacity=cfg.buffer_capacity, num_streams=num_envs)
    ctx.log(f"online: {total_iters} iterations x {num_envs} envs x {h} steps = {total_iters * num_envs * h} "
            f"env steps, {updates_per_iter} updates/iteration (UTD {updates_per_iter / num_envs:.3g} per chunk), "
            f"replay {online.capacity} steps ({online.memory_bytes() / 2**20:.1f} MiB"
            f"{f' per seed, {len(ctx.seats)} seeds' if ctx.vmapped else ''}), offline share {cfg.offline_ratio}")
    fn = loops.make_online_iterations(env, ctx.normalizer, batch_size=acfg.batch_size, horizon=acfg.horizon,
                                      action_steps=h, discount=acfg.discount,
                                      updates_per_iter=updates_per_iter, offline_ratio=cfg.offline_ratio,
                                      num_iters=log_every, shard_batch=ctx.devices.batch_constraint,
                                      vmap_seeds=ctx.vmapped)
    env_state = _env_state(ctx, lambda: ctx.per_seed(env.reset)(k_env))  # eager MJX reset: ~30 s op by op
    key, k_eval = ctx.split_key(key)
    state = {"agent": agent, "env_state": env_state, "buffer": ctx.broadcast(online), "key": key, "k_eval": k_eval}
    state, counters = ctx.start("online", state, {"calls": 0, "env_steps": 0, "episodes": 0.0, "successes": 0.0})
    fn = ctx.compile("online", fn, (state["agent"], state["env_state"], state["buffer"], offline, state["key"]))

    def call(state, k):
        agent, env_state, buffer, m = fn(state["agent"], state["env_state"], state["buffer"], offline, k)
        return {**state, "agent": agent, "env_state": env_state, "buffer": buffer}, m

    def row(m, dt, c):
        r = _episode_row(m, dt, c)
        r.setdefault("train_success", 0.0)
        r["updates_per_s"] = log_every * updates_per_iter / max(dt, 1e-9)
        return c["env_steps"], r, ("train_success", *type(agent).METRICS, "env_steps_per_s", "updates_per_s")

    state, counters = _drive(ctx, "online", call, state, counters, total_calls, row,
                             eval_at=lambda c: cfg.eval_every and (c["calls"] * log_every) % cfg.eval_every < log_every,
                             on_eval=_online_eval(ctx, eval_fn, lambda c: c["calls"] * log_every))
    for seat, c, part in zip(ctx.seats, counters, ctx.split(state["agent"])):
        seat.ckpt.save(total_iters, part, ctx.normalizer, {**ctx.meta, "phase": "online"})
        iters = c["calls"] * log_every
        seat.summary["online"] = {
            "env_steps": c["env_steps"], "iterations": iters, "updates": iters * updates_per_iter,
            "updates_per_iteration": updates_per_iter, "train_episodes": c["episodes"],
            "train_success": c["successes"] / max(c["episodes"], 1.0),
            "env_steps_per_s": c["env_steps"] / max(c["loop_s"], 1e-9),
            "updates_per_s": iters * updates_per_iter / max(c["loop_s"], 1e-9),
        }
        seat.summary["timings_s"]["online_loop"] = c["loop_s"]
    return state["agent"]


def _onpolicy(ctx: _Run, agent, task, key, eval_fn):
    """On-policy training: iterations of ``rollout_length`` chunk steps in every env, then one PPO update.

    Runs :func:`launch.loops.make_onpolicy_iterations` in compiled calls of
    ``online.log_every`` iterations until ``online.env_steps`` (rounded up to
    whole calls); evaluates and checkpoints every ``online.eval_every``
    iterations. Records success/return against env steps and wall time.
    """
    config = ctx.config
    cfg, acfg = config.online, config.agent
    num_envs, h, T = config.env.num_envs, acfg.action_steps, acfg.rollout_length
    env = VecEnv(task, num_envs, config.env.episode_length)
    per_iter = num_envs * T * h
    total_iters = max(1, -(-cfg.env_steps // per_iter))
    log_every = max(1, min(cfg.log_every, total_iters))
    total_iters = -(-total_iters // log_every) * log_every
    ctx.log(f"on-policy {config.agent_name}: {total_iters} iterations x {num_envs} envs x {T} chunks x {h} steps = "
            f"{total_iters * per_iter} env steps (at most; episodes may end chunks early), "
            f"{acfg.num_epochs} epochs per iteration")
    fn = loops.make_onpolicy_iterations(env, ctx.normalizer, rollout_length=T, action_steps=h,
                                        discount=acfg.discount, num_iters=log_every,
                                        shard_batch=ctx.devices.batch_constraint, vmap_seeds=ctx.vmapped)
    # the envs are reset inside the compiled loop (loops.pending_state), from the loop's keys
    env_state = _env_state(ctx, lambda: ctx.broadcast(loops.pending_state(env)))
    key, k_eval = ctx.split_key(key)
    state = {"agent": agent, "env_state": env_state, "key": key, "k_eval": k_eval}
    state, counters = ctx.start("online", state, {"calls": 0, "env_steps": 0, "episodes": 0.0, "successes": 0.0})
    fn = ctx.compile("onpolicy", fn, (state["agent"], state["env_state"], state["key"]))
    t_start = time.time()

    def call(state, k):
        agent, env_state, m = fn(state["agent"], state["env_state"], k)
        return {**state, "agent": agent, "env_state": env_state}, m

    def row(m, dt, c):
        r = _episode_row(m, dt, c)
        r["wall_s"] = time.time() - t_start
        return c["env_steps"], r, ("train_success", "episode_return", *type(agent).METRICS, "env_steps_per_s")

    state, counters = _drive(ctx, "online", call, state, counters, total_iters // log_every, row,
                             eval_at=lambda c: cfg.eval_every and (c["calls"] * log_every) % cfg.eval_every < log_every,
                             on_eval=_online_eval(ctx, eval_fn, lambda c: c["calls"] * log_every))
    for seat, c, part in zip(ctx.seats, counters, ctx.split(state["agent"])):
        seat.ckpt.save(total_iters, part, ctx.normalizer, {**ctx.meta, "phase": "online"})
        seat.summary["online"] = {
            "env_steps": c["env_steps"], "iterations": total_iters, "train_episodes": c["episodes"],
            "train_success": c["successes"] / max(c["episodes"], 1.0),
            "env_steps_per_s": c["env_steps"] / max(c["loop_s"], 1e-9), "wall_s": time.time() - t_start,
        }
        seat.summary["timings_s"]["online_loop"] = c["loop_s"]
    return state["agent"]


def _finish(ctx: _Run, t_start: float, finished: dict):
    """Writes each seat's ``summary.json`` (finished from then on), drops the resume state, prints the summary.

    Returns the summary (one seat), or the summaries of every seed, those
    ``finished`` before this process included, when ``config.num_seeds`` > 1.
    """
    summaries = dict(finished)
    for seat in ctx.seats:
        summaries[seat.seed] = _finish_seat(seat, t_start)
    if ctx.config.get("num_seeds", 1) > 1:
        return [summaries[s] for s in sorted(summaries)]
    return summaries[ctx.seats[0].seed]


def _finish_seat(seat: _Seat, t_start: float) -> dict:
    summary, run_dir = seat.summary, seat.run_dir
    summary["wall_time_s"] = time.time() - t_start  # this process (a resumed run lists its resumes)
    summary["peak_rss_mib"] = _peak_rss_mib()
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    seat.logger.summary(summary, files=tuple(os.path.join(run_dir, n) for n in (
        "summary.json", "config.json", "learning_curve.png")))
    seat.logger.close()
    seat.ckpt.close()
    seat.resume.close()
    shutil.rmtree(seat.resume.directory, ignore_errors=True)  # a finished run is recognised by summary.json

    modes = envs.mode_names(summary["env"])

    def rate(name):
        split = "".join(f", {m} {summary[name][f'mode_{m}']:.2f}" for m in modes if f"mode_{m}" in summary[name])
        return (f"{summary[name]['success']:.3f} +- {summary[name]['success_stderr']:.3f} "
                f"(mean return {summary[name]['return']:.1f}{split})")

    lines = ["", "=" * 60, f"summary ({summary['agent']} on {summary['env']}, seed {summary['seed']})"]
    if summary["dataset"]:
        planned = summary["dataset"].get("mode_split") or {}
        split = "".join(f", {m} {planned[str(i)]:.2f}" for i, m in enumerate(modes) if str(i) in planned)
        lines.append(f"  expert success (dataset):  {summary['dataset'].get('success_rate', float('nan')):.3f}"
                     + (f" (planned modes{split[1:]})" if split else ""))
    if "bc" in summary:
        lines.append(f"  success after BC:          {rate('bc')}")
    if "offline_rl" in summary:
        lines.append(f"  success after offline RL:  {rate('offline_rl')}")
    if "finetuned" in summary:
        lines += [f"  success after fine-tuning: {rate('finetuned')}",
                  f"  online env steps:          {summary['online']['env_steps']} "
                  f"({summary['online']['env_steps_per_s']:.0f}/s with updates, compilation apart)"]
    lines += [f"  wall time:                 {summary['wall_time_s']:.0f} s",
              f"  run folder:                {run_dir}", "=" * 60]
    print_fn = seat.log
    print_fn("\n".join(lines))
    return summary


def _peak_rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

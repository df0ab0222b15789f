"""On-policy training loop for :class:`agents.ppo.PPOAgent` on the project's env layer.

``python launch/train.py --config=configs/ppo.py:cartpole_balance`` dispatches
here (``config.agent_name == 'ppo'``). One iteration: every one of the ``N``
envs of a :class:`envs.wrappers.VecEnv` takes ``T = rollout_length`` steps
with the stochastic policy (auto-reset with :meth:`VecEnv.reset_done` before
the step that follows an episode end; ``next_obs`` is recorded before the
reset, so truncated steps bootstrap from the episode's last observation), then one
:meth:`PPOAgent.update` on the ``[T, N]`` rollout. ``log_every`` iterations
run as one ``lax.scan`` inside one ``jax.jit`` call; only their metrics
reach the host. The run folder holds::

    <run_dir>/config.json        the resolved config
    <run_dir>/metrics.csv        per call: env steps, mean training episode return, losses, speed
    <run_dir>/tb/                the same for TensorBoard
    <run_dir>/checkpoints/       orbax: the final agent (its obs statistics as the normaliser)
    <run_dir>/summary.json       final evaluation returns, env steps, wall time, compiles
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import envs
from agents.ppo import PPOAgent
from envs.chunk import rollout_episodes
from envs.wrappers import VecEnv
from launch.checkpoint import Checkpointer, restore
from launch.logger import Logger, format_line
from launch.validate import ConfigError


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises :class:`launch.validate.ConfigError` naming the first invalid PPO config field."""
    a, e, t = config.agent, config.env, config.train
    checks = [
        (config.agent_name == "ppo", "agent_name", "'ppo'", config.agent_name),
        (e.num_envs >= 1, "env.num_envs", ">= 1", e.num_envs),
        (e.episode_length >= 1, "env.episode_length", ">= 1", e.episode_length),
        (e.num_eval_episodes >= 1, "env.num_eval_episodes", ">= 1", e.num_eval_episodes),
        (a.rollout_length >= 1, "agent.rollout_length", ">= 1", a.rollout_length),
        (a.num_epochs >= 1, "agent.num_epochs", ">= 1", a.num_epochs),
        (a.num_minibatches >= 1 and (a.rollout_length * e.num_envs) % a.num_minibatches == 0,
         "agent.num_minibatches", f"a divisor of rollout_length x num_envs = {a.rollout_length * e.num_envs}",
         a.num_minibatches),
        (0.0 < a.discount <= 1.0, "agent.discount", "in (0, 1]", a.discount),
        (0.0 <= a.gae_lambda <= 1.0, "agent.gae_lambda", "in [0, 1]", a.gae_lambda),
        (a.clip_eps > 0, "agent.clip_eps", "> 0", a.clip_eps),
        (a.init_std > 0, "agent.init_std", "> 0", a.init_std),
        (t.env_steps >= a.rollout_length * e.num_envs, "train.env_steps",
         f">= rollout_length x num_envs = {a.rollout_length * e.num_envs} (one iteration)", t.env_steps),
        (t.log_every >= 0, "train.log_every", ">= 0 (0: auto)", t.log_every),
    ]
    for ok, field, expected, value in checks:
        if not ok:
            raise ConfigError(f"config.{field}: expected {expected}, got {value!r}")


def pending_state(env: VecEnv):
    """A batched State with every env marked done (zeros elsewhere): the first step of
    :func:`make_train_iterations` resets them all inside the compiled loop, so ``reset`` is not
    compiled a second time on its own (it is costly for e.g. CheetahRun, which settles for 200 steps)."""
    spec = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), spec)
    return state.replace(done=jnp.ones_like(state.done))


def make_train_iterations(env: VecEnv, rollout_length: int, num_iters: int):
    """``fn(agent, env_state, key) -> (agent, env_state, metrics)``: ``num_iters`` PPO iterations, jitted.

    Each env step first resets the envs whose episode ended (``VecEnv.reset_done``, only when some
    did), then acts and steps; so ``env_state`` may hold ended envs, e.g. :func:`pending_state`.
    Metrics: ``episodes``, ``return_sum``, ``length_sum`` (sums over episodes
    that ended, undiscounted raw reward), ``env_steps`` (sum) and the
    update's losses (mean over iterations). Agent and env state are donated.
    """
    n = env.num_envs

    def iteration(carry, key):
        agent, state = carry

        def step(state, k):
            k_reset, k_act = jax.random.split(k)
            state = jax.lax.cond((state.done > 0).any(), lambda s: env.reset_done(s, k_reset), lambda s: s, state)
            action, u = agent.act(state.obs, k_act)
            nxt = env.step(state, action)
            # next_obs is the observation the step led to, before any reset: truncation bootstraps from it
            record = {"obs": state.obs, "u": u, "reward": nxt.reward, "next_obs": nxt.obs,
                      "terminated": nxt.info["terminated"], "truncated": nxt.info["truncated"]}
            ended = nxt.done > 0
            stats = {"episodes": ended.sum(), "return_sum": jnp.where(ended, nxt.info["episode_return"], 0.0).sum(),
                     "length_sum": jnp.where(ended, nxt.info["steps"], 0).sum()}
            return nxt, (record, stats)

        state, (rollout, stats) = jax.lax.scan(step, state, jax.random.split(key, rollout_length))
        agent, info = agent.update(rollout)
        metrics = {**info, **jax.tree.map(jnp.sum, stats), "env_steps": jnp.asarray(rollout_length * n)}
        return (agent, state), metrics

    def fn(agent, state, key):
        (agent, state), metrics = jax.lax.scan(iteration, (agent, state), jax.random.split(key, num_iters))
        sums = ("episodes", "return_sum", "length_sum", "env_steps")
        return agent, state, {k: v.sum() if k in sums else v.mean() for k, v in metrics.items()}

    return jax.jit(fn, donate_argnums=(0, 1))


def make_evaluate(env: VecEnv):
    """``fn(agent, key) -> {'deterministic': ..., 'stochastic': ...}``, one episode per env.

    ``env`` has ``2 E`` envs: the first ``E`` act with the squashed mean, the
    other ``E`` sample the policy (one rollout, so one compile). Each entry is
    ``{'return': [E], 'length': [E]}``.
    """
    half = env.num_envs // 2

    def fn(agent, key):
        det = (jnp.arange(env.num_envs) < half)[:, None, None]

        def policy(obs, k):
            return jnp.where(det, agent.mean_actions(obs), agent.sample_actions(obs, k))

        out = rollout_episodes(env, policy, key, action_steps=1)
        return {mode: {"return": out["return"][part], "length": out["length"][part]}
                for mode, part in (("deterministic", slice(0, half)), ("stochastic", slice(half, None)))}

    return jax.jit(fn)


def checkpoint_meta(config, obs_size: int, action_size: int) -> dict:
    """What a PPO checkpoint must agree on with the config that restores it."""
    keys = ("policy_hidden_dims", "value_hidden_dims", "activation", "squash")
    return {"env": config.env.name, "obs_size": obs_size, "action_size": action_size, "phase": "ppo",
            "agent": {k: config.agent[k] for k in keys}}


def restore_agent(run_dir: str, config) -> PPOAgent:
    """The final agent of a PPO run folder, checked against ``config``.

    Raises:
      FileNotFoundError: no checkpoint; launch.checkpoint.CheckpointMismatchError: other config.
    """
    task = envs.make(config.env.name)
    obs_size, action_size = int(task.observation_size), int(task.action_size)
    template = PPOAgent.create(config.seed, obs_size, action_size, config.agent)
    agent, _, _ = restore(os.path.join(run_dir, "checkpoints"), template, template.obs_norm,
                          checkpoint_meta(config, obs_size, action_size))
    return agent


def _run_dir(config) -> str:
    if config.run_dir:
        return config.run_dir
    name = config.env.name.replace(":", "_")
    return os.path.join("runs", f"ppo_{name}_s{config.seed}_{time.strftime('%Y%m%d-%H%M%S')}")


def _eval_stats(out: dict) -> dict:
    ret = np.asarray(out["return"], np.float64)
    return {"return_mean": float(ret.mean()), "return_std": float(ret.std()), "return_min": float(ret.min()),
            "return_max": float(ret.max()), "length_mean": float(np.mean(out["length"])), "episodes": len(ret)}


def train(config: ml_collections.ConfigDict, log=print) -> tuple[PPOAgent, dict]:
    """Trains PPO as ``config`` says (see ``configs/ppo.py``), writing the run folder.

    Returns:
      ``(agent, summary)``: the final agent and the summary dict (also in
      ``summary.json``): evaluation returns of the deterministic and the
      stochastic policy, env steps, wall/compile times.

    Raises:
      launch.validate.ConfigError: an invalid field (named), before any work.
      FileExistsError: ``run_dir`` already holds a checkpoint.
      FloatingPointError: a loss became NaN/inf.
    """
    t_start = time.time()
    validate(config)
    task = envs.make(config.env.name)
    obs_size, action_size = int(task.observation_size), int(task.action_size)
    acfg, n, T = config.agent, config.env.num_envs, config.agent.rollout_length
    run_dir = _run_dir(config)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
        raise FileExistsError(f"config.run_dir: {run_dir} already holds a trained agent ({ckpt_dir}); choose "
                              "another run_dir or delete that folder")
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

    env = VecEnv(task, n, config.env.episode_length)
    total_iters = config.train.env_steps // (n * T)
    log_every = config.train.log_every or math.ceil(config.env.episode_length / T)
    log_every = max(1, min(log_every, total_iters))
    calls = math.ceil(total_iters / log_every)
    total_iters = calls * log_every
    log(f"run folder: {run_dir}")
    log(f"PPO on {config.env.name}: obs {obs_size}, action {action_size}, {n} envs x {T} steps x "
        f"{total_iters} iterations = {total_iters * n * T} env steps, time limit {config.env.episode_length}")

    key = jax.random.PRNGKey(config.seed)
    key, k_eval = jax.random.split(key)
    dev = jax.devices()[0]  # committed inputs: one compile (see launch/experiment.py)
    agent = jax.device_put(PPOAgent.create(config.seed, obs_size, action_size, acfg), dev)
    state = jax.device_put(pending_state(env), dev)  # reset inside the first compiled call
    fn = make_train_iterations(env, T, log_every)
    logger = Logger(run_dir)
    env_steps, t_first, t_loop, last_return = 0, 0.0, 0.0, None
    curve = []
    for call in range(calls):
        key, k = jax.random.split(key)
        t0 = time.time()
        agent, state, m = fn(agent, state, k)
        m = jax.tree.map(float, m)
        dt = time.time() - t0
        t_loop += dt
        if call == 0:
            t_first = dt
        env_steps += int(m["env_steps"])
        bad = [k_ for k_ in ("pg_loss", "value_loss") if not np.isfinite(m[k_])]
        if bad:
            raise FloatingPointError(f"[ppo] env step {env_steps}: {bad} not finite ({m}); stopping")
        if m["episodes"] > 0:
            last_return = m["return_sum"] / m["episodes"]
        row = {k_: v for k_, v in m.items() if k_ not in ("return_sum", "length_sum")}
        if m["episodes"]:  # no column when no episode ended in this call
            row.update(episode_return=m["return_sum"] / m["episodes"], episode_length=m["length_sum"] / m["episodes"])
        row.update(env_steps_per_s=m["env_steps"] / dt, wall_s=time.time() - t_start)
        logger.log("ppo", env_steps, row)
        curve.append((env_steps, round(time.time() - t_start, 1), row.get("episode_return")))
        log(format_line("ppo", env_steps, row, ("episode_return", "value_loss", "approx_kl", "std",
                                                 "env_steps_per_s", "wall_s")))

    t0 = time.time()
    eval_env = VecEnv(task, 2 * config.env.num_eval_episodes, config.env.episode_length)
    evaluation = {mode: _eval_stats(out) for mode, out in make_evaluate(eval_env)(agent, k_eval).items()}
    t_eval = time.time() - t0
    for mode, ev in evaluation.items():
        log(f"  eval ({mode} policy, {ev['episodes']} episodes): return {ev['return_mean']:.1f} "
            f"+- {ev['return_std']:.1f} (min {ev['return_min']:.1f}, max {ev['return_max']:.1f})")
    logger.log("eval", env_steps, {f"return_{mode}": ev["return_mean"] for mode, ev in evaluation.items()})

    ckpt = Checkpointer(ckpt_dir)
    ckpt.save(total_iters, agent, agent.obs_norm, checkpoint_meta(config, obs_size, action_size))
    ckpt.close()
    logger.close()
    steady = (env_steps - n * T * log_every) / (t_loop - t_first) if calls > 1 else None
    summary = {
        "run_dir": run_dir, "agent": "ppo", "env": config.env.name, "seed": config.seed,
        "env_steps": env_steps, "iterations": total_iters, "train_return_last": last_return,
        "eval": evaluation, "curve": curve,
        "timings_s": {"total": time.time() - t_start, "train_loop": t_loop,
                      "first_call_incl_compile": t_first, "eval_incl_compile": t_eval},
        "env_steps_per_s_steady": steady, "compiles": {"train": int(getattr(fn, "_cache_size", lambda: -1)())},
    }
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log(f"PPO done: {env_steps} env steps in {summary['timings_s']['total']:.0f} s "
        f"(first call incl. compile {t_first:.0f} s, {steady or float('nan'):.0f} env steps/s after); "
        f"deterministic return "
        f"{evaluation['deterministic']['return_mean']:.1f}; run folder {run_dir}")
    return agent, summary


def run(config: ml_collections.ConfigDict, log=print) -> dict:
    """``launch/train.py`` entry point for ``agent_name == 'ppo'``; returns the summary (see :func:`train`)."""
    return train(config, log)[1]

"""Env throughput: MJX (``VecEnv.step`` in one jitted ``lax.scan``) against C MuJoCo on the same model.

    python benchmarks/env_speed.py [--env=point_obstacle,push_t] [--batch=1,256,4096]
        [--steps=100] [--timeout=600] [--out=benchmarks/env_speed.json]

For every task and batch size it reports control (env) steps per second:

* ``mjx``: the task's own ``step`` (physics substeps plus task logic: rewards,
  termination, observations) vmapped over the batch, random actions, no
  auto-reset, first call (compile) timed apart;
* ``c``: C MuJoCo's threaded ``mujoco.rollout`` stepping the same ``MjModel``
  from the same initial states with random controls held for a control
  step (physics only, no task logic), one thread per core;
* ``gym`` (on request): the Gymnasium ``VectorEnv`` adapter, a Python loop of
  ``step`` calls with numpy actions in and numpy observations out (auto-reset
  included).

Each measurement runs in its own subprocess under a hard timeout (``--timeout``
seconds): a stall or an out-of-memory kill is recorded as such, not waited for.
Results are printed as a Markdown table and written to ``--out`` as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags

_ENV = flags.DEFINE_list("env", ["point_obstacle", "point_maze", "push_t", "pick_place", "pick_place_two",
                                 "playground:CheetahRun"], "registered tasks")
_BATCH = flags.DEFINE_list("batch", ["1", "256", "4096"], "batch sizes")
_STEPS = flags.DEFINE_integer("steps", 100, "control steps per timed call")
_TIMEOUT = flags.DEFINE_integer("timeout", 600, "hard limit in seconds for one measurement (compile included)")
_BACKENDS = flags.DEFINE_list("backend", ["mjx", "c"], "mjx, c and/or gym")
_OUT = flags.DEFINE_string("out", "", "write results here as JSON ('' = do not write)")
_WORKER = flags.DEFINE_string("worker", "", "internal: run one measurement 'backend,env,batch'")


def _measure_mjx(task: str, batch: int, steps: int) -> dict:
    import jax

    import envs
    from envs.wrappers import VecEnv

    vec = VecEnv(envs.make(task), batch, episode_length=steps + 1)

    @jax.jit
    def rollout(key):
        state = vec.reset(key)

        def body(state, k):
            action = jax.random.uniform(k, (batch, vec.action_size), minval=-1, maxval=1)
            return vec.step(state, action), None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, steps))
        return state.obs

    t0 = time.time()
    jax.block_until_ready(rollout(jax.random.PRNGKey(0)))
    compile_s = time.time() - t0
    t0 = time.time()
    obs = jax.block_until_ready(rollout(jax.random.PRNGKey(1)))
    elapsed = time.time() - t0
    import numpy as np
    return {"steps_per_s": batch * steps / elapsed, "compile_s": compile_s,
            "finite": bool(np.isfinite(np.asarray(obs)).all())}


def _measure_c(task: str, batch: int, steps: int) -> dict:
    import jax
    import mujoco
    import numpy as np
    from mujoco import mjx, rollout

    import envs

    env = envs.make(task)
    model = env.mj_model
    substeps = round(env.dt / model.opt.timestep)
    # initial states: the task's own resets, copied into C MjData
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), min(batch, 64)))
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    data = mujoco.MjData(model)
    init = []
    for i in range(min(batch, 64)):
        d = mjx.get_data(model, jax.tree.map(lambda x, i=i: x[i], states.data))
        state = np.empty(mujoco.mj_stateSize(model, spec))
        mujoco.mj_getState(model, d, state, spec)
        init.append(state)
    init = np.stack(init)[np.arange(batch) % len(init)]
    rng = np.random.default_rng(0)
    lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    nthread = os.cpu_count() or 1
    datas = [mujoco.MjData(model) for _ in range(nthread)]
    chunk = max(1, min(batch, 8_000_000 // max(1, steps * substeps * len(init[0]))))  # bound output memory
    elapsed = 0.0
    for start in range(0, batch, chunk):
        n = min(chunk, batch - start)
        ctrl = rng.uniform(lo, hi, (n, steps, model.nu))
        ctrl = np.repeat(ctrl, substeps, axis=1)                   # held for a control step
        t0 = time.time()
        rollout.rollout(model, datas, init[start:start + n], ctrl, initial_warmstart=None)
        elapsed += time.time() - t0
    del data
    return {"steps_per_s": batch * steps / elapsed, "threads": nthread, "substeps": substeps}


def _measure_gym(task: str, batch: int, steps: int) -> dict:
    import numpy as np

    from envs.gym_adapter import VectorEnv

    env = VectorEnv(task, batch, seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps,) + env.action_space.shape).astype(np.float32)
    t0 = time.time()
    env.reset(seed=0)
    env.step(actions[0])
    compile_s = time.time() - t0
    t0 = time.time()
    for a in actions:
        obs, *_ = env.step(a)
    elapsed = time.time() - t0
    env.close()
    return {"steps_per_s": batch * steps / elapsed, "compile_s": compile_s, "finite": bool(np.isfinite(obs).all())}


def _worker(spec: str) -> None:
    backend, task, batch = spec.split(",")
    fn = {"mjx": _measure_mjx, "c": _measure_c, "gym": _measure_gym}[backend]
    print("RESULT " + json.dumps(fn(task, int(batch), _STEPS.value)), flush=True)


def _run_one(backend: str, task: str, batch: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), f"--worker={backend},{task},{batch}",
           f"--steps={_STEPS.value}"]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=_TIMEOUT.value, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {_TIMEOUT.value} s", "wall_s": time.time() - t0}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {"status": "ok", "wall_s": time.time() - t0, **json.loads(line[7:])}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return {"status": f"failed (exit {proc.returncode}): {tail[0][:200]}", "wall_s": time.time() - t0}


def main(argv):
    del argv
    if _WORKER.value:
        _worker(_WORKER.value)
        return
    batches = [int(b) for b in _BATCH.value]
    results = []
    for task in _ENV.value:
        for backend in _BACKENDS.value:
            for batch in batches:
                r = {"env": task, "backend": backend, "batch": batch, "steps": _STEPS.value,
                     **_run_one(backend, task, batch)}
                results.append(r)
                rate = f"{r['steps_per_s']:,.0f} steps/s" if r["status"] == "ok" else r["status"]
                extra = f", compile {r['compile_s']:.1f} s" if "compile_s" in r else ""
                print(f"{task:24s} {backend:3s} batch {batch:5d}: {rate}{extra}", flush=True)
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(results, f, indent=1)
    print("\n| task | backend | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|---|" + "---|" * len(batches))
    for task in _ENV.value:
        for backend in _BACKENDS.value:
            cells = []
            for b in batches:
                r = next(x for x in results if (x["env"], x["backend"], x["batch"]) == (task, backend, b))
                cells.append(f"{r['steps_per_s']:,.0f}" if r["status"] == "ok" else r["status"])
            print(f"| {task} | {backend} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)

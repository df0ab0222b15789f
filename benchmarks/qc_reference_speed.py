"""QC best-of-N update and acting time at the paper's sizes, ours beside the published code.

    python benchmarks/qc_reference_speed.py [--reference=/path/to/qc] [--iters=10]

Sizes (issue 7, the Q-chunking paper's): obs 28, action 5, H = h = 5, batch
256, actor and critic 4x512, N = 32 candidates for acting and for the TD
target, 10 flow steps. Prints seconds per ``update`` and milliseconds per
best-of-32 chunk at batch 1 (steady state, compilation apart).

``--reference`` points at a checkout of the published Q-chunking code
(github ColinQiyangLi/qc): its ``agents/acfql.py`` with ``actor_type='best-of-n'``
is timed in a subprocess, on the same machine and in the same run, so the
ratio is meaningful (hosts differ up to 2.5x in matmul speed). Its import of
``distrax`` (used only by actors we do not build) is stubbed when the package
is missing. Nothing of it is copied into this repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

_REFERENCE = flags.DEFINE_string("reference", "", "checkout of ColinQiyangLi/qc to time beside ours")
_ITERS = flags.DEFINE_integer("iters", 10, "timed calls per measurement")
_ACTIVATION = flags.DEFINE_string("actor_activation", "mish", "our denoiser's nonlinearity (the reference uses gelu)")
_SIDE = flags.DEFINE_enum("side", "both", ["both", "reference"],
                          "internal: 'reference' times only the published code (run in a subprocess)")

OBS, ACT, H, BATCH, N, WIDTH, DEPTH, FLOW_STEPS = 28, 5, 5, 256, 32, 512, 4, 10


def _timeit(fn, iters: int) -> tuple[float, float]:
    """(first call seconds incl. compile, steady seconds per call)."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(iters):
        out = fn()
    jax.block_until_ready(out)
    return first, (time.perf_counter() - t0) / iters


def _measure(agent, batch: dict, act, iters: int) -> dict:
    """Times ``agent.update(batch)`` and ``act(agent, obs [1, OBS], key)`` (one best-of-N chunk)."""
    import jax

    state = {"agent": agent}

    def update():
        state["agent"], info = state["agent"].update(batch)
        return info

    key = jax.random.PRNGKey(3)
    obs1 = jax.random.normal(key, (1, OBS))
    first_u, update_s = _timeit(update, iters)
    first_a, act_s = _timeit(lambda: act(state["agent"], obs1, key), iters * 20)
    return {"update_s": update_s, "act_ms": 1e3 * act_s, "update_first_call_s": first_u,
            "act_first_call_s": first_a}


def _random_batch() -> dict:
    """A batch at the reference sizes: ``obs [B, OBS]``, ``actions [B, H, A]``, ``next_obs [B, OBS]``."""
    import jax

    k = jax.random.split(jax.random.PRNGKey(0), 3)
    return {"obs": jax.random.normal(k[0], (BATCH, OBS)),
            "actions": jax.random.uniform(k[1], (BATCH, H, ACT), minval=-1, maxval=1),
            "next_obs": jax.random.normal(k[2], (BATCH, OBS))}


def ours(iters: int) -> dict:
    sys.path.insert(0, ROOT)
    import jax.numpy as jnp

    from agents import qc

    c = qc.get_config()
    c.horizon = c.action_steps = H
    c.batch_size, c.num_samples, c.target_num_samples, c.denoising_steps = BATCH, N, N, FLOW_STEPS
    c.actor_hidden_dims = c.critic_hidden_dims = (WIDTH,) * DEPTH
    c.actor_activation = _ACTIVATION.value
    b = _random_batch()
    batch = {**b, "critic_actions": b["actions"], "reward_sum": jnp.zeros(BATCH), "discount": jnp.full(BATCH, 0.95),
             "valid": jnp.ones(BATCH), "terminated": jnp.zeros(BATCH, bool)}
    return _measure(qc.QCAgent.create(0, OBS, ACT, c), batch, lambda a, o, k: a.sample_actions(o, k), iters)


def _reference_here(path: str, iters: int) -> dict:
    """Times the published ``agents/acfql.py`` (best-of-n) from ``path``; our packages stay off ``sys.path``."""
    import importlib.util
    import types

    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != ROOT]
    sys.path.insert(0, path)
    try:
        import distrax  # noqa: F401
    except ImportError:  # only its Gaussian actors need it; a stub lets utils.networks import
        stub = types.ModuleType("distrax")
        stub.Transformed = object
        sys.modules["distrax"] = stub
    import jax.numpy as jnp

    spec = importlib.util.spec_from_file_location("ref_acfql", os.path.join(path, "agents", "acfql.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config()
    cfg.actor_type, cfg.actor_num_samples, cfg.horizon_length, cfg.batch_size = "best-of-n", N, H, BATCH
    cfg.flow_steps = FLOW_STEPS
    cfg.actor_hidden_dims = cfg.value_hidden_dims = (WIDTH,) * DEPTH
    # unbatched example inputs, as its main.py passes them
    agent = mod.ACFQLAgent.create(0, jnp.zeros((OBS,)), jnp.zeros((ACT,)), dict(cfg))
    b = _random_batch()
    batch = {"observations": b["obs"], "actions": b["actions"],
             "next_observations": jnp.repeat(b["next_obs"][:, None], H, axis=1),
             "rewards": jnp.zeros((BATCH, H)), "masks": jnp.ones((BATCH, H)), "valid": jnp.ones((BATCH, H))}
    return _measure(agent, batch, lambda a, o, k: a.sample_actions(o, rng=k), iters)


def reference(path: str, iters: int) -> dict:
    """Runs :func:`_reference_here` in a fresh process (its ``agents`` package shadows ours)."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--side=reference", f"--reference={path}",
                           f"--iters={iters}"], capture_output=True, text=True, cwd=path)
    if proc.returncode != 0:
        raise RuntimeError(f"reference run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(_):
    import jax

    if _SIDE.value == "reference":
        print(json.dumps(_reference_here(os.path.abspath(_REFERENCE.value), _ITERS.value)))
        return

    print(f"QC best-of-N at the paper's sizes: obs {OBS}, A {ACT}, H = h = {H}, batch {BATCH}, "
          f"{DEPTH}x{WIDTH} actor and critic, N = {N} (acting and target), {FLOW_STEPS} flow steps; "
          f"jax {jax.__version__}, {os.cpu_count()} CPUs")
    print(f"our actor's nonlinearity: {_ACTIVATION.value}")
    results = {"ours": ours(_ITERS.value)}
    if _REFERENCE.value:
        results["reference"] = reference(os.path.abspath(_REFERENCE.value), _ITERS.value)
    for name, r in results.items():
        print(f"  {name:9s} update {r['update_s']:.3f} s   best-of-{N} chunk at batch 1 {r['act_ms']:.2f} ms   "
              f"(first calls incl. compile: {r['update_first_call_s']:.1f} s, {r['act_first_call_s']:.1f} s)")
    if "reference" in results:
        o, r = results["ours"], results["reference"]
        print(f"  ours / reference: update {o['update_s'] / r['update_s']:.2f}x, "
              f"acting {o['act_ms'] / r['act_ms']:.2f}x (below 1: ours is faster)")
    print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)

"""Update rate of every off-policy agent, Diffusion-QL beside its published code, and chunk latency per sampling rule.

    python benchmarks/method_speed.py [--part=all|dql|latency]
        [--reference_dql=/path/to/Diffusion-Policies-for-Offline-RL --reference_python=/path/to/python-with-torch]

``--part=dql``: Diffusion-QL at the sizes of its paper's D4RL runs (state 17,
action 6, batch 256, 3x256 Mish actor and critics, VP schedule with K = 5,
ancestral sampling), ours as ``DQLAgent`` with ``H = h = 1`` (a chunk of one
action), through the whole chain and in EDP's one-step form. With
``--reference_dql`` the published PyTorch code (github
Zhendong-Wang/Diffusion-Policies-for-Offline-RL, ``agents/ql_diffusion.py``)
is timed in a subprocess of ``--reference_python`` (a Python with torch)
on the same machine in the same run, with 2 torch threads; nothing of it is
copied here. Both report iterations (one critic + one actor step) per second.

``--part=latency``: milliseconds per chunk at batch 1 for each sampling rule
on the CPU default sizes (``configs/<method>.py``, ``point_obstacle``
shapes): the plain BC sampler, best-of-N argmax (QC), softmax selection
(QC with ``selection=softmax`` and DQL), guided sampling (w > 0, N = 1 and N = 4),
and QC-FQL's one-step policy.

QC and QC-FQL at the Q-chunking paper's sizes, beside the published JAX code:
``benchmarks/qc_reference_speed.py --method=qc|qc_fql``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

_PART = flags.DEFINE_enum("part", "all", ["all", "dql", "latency"], "what to time")
_REF = flags.DEFINE_string("reference_dql", "", "checkout of Zhendong-Wang/Diffusion-Policies-for-Offline-RL")
_REF_PY = flags.DEFINE_string("reference_python", "", "a Python interpreter with torch installed")
_ITERS = flags.DEFINE_integer("iters", 50, "timed iterations per block (the fastest of 3 blocks counts)")

STATE, ACTION, BATCH, WIDTH, K = 17, 6, 256, 256, 5

# Run by --reference_python inside the reference checkout: builds its agent and calls its own train().
_REFERENCE_TIMER = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(2)
from agents.ql_diffusion import Diffusion_QL
S, A, B, iters = %d, %d, %d, %d
class Buffer:
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        n = 10000
        self.d = [torch.randn(n, S, generator=g), torch.rand(n, A, generator=g) * 2 - 1,
                  torch.randn(n, S, generator=g), torch.rand(n, 1, generator=g), torch.ones(n, 1)]
    def sample(self, batch_size):
        idx = torch.randint(0, 10000, (batch_size,))
        return [x[idx] for x in self.d]
agent = Diffusion_QL(S, A, 1.0, "cpu", discount=0.99, tau=0.005, beta_schedule="vp", n_timesteps=%d, eta=1.0)
buf = Buffer()
t0 = time.perf_counter(); agent.train(buf, 5, batch_size=B); first = time.perf_counter() - t0
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter(); agent.train(buf, iters, batch_size=B); best = min(best, (time.perf_counter() - t0) / iters)
print(json.dumps({"iters_per_s": 1.0 / best, "first_5_s": first}))
"""


def _best_rate(fn, iters: int, blocks: int = 3) -> float:
    """Calls per second: the fastest of ``blocks`` blocks of ``iters`` calls (compilation apart)."""
    import jax

    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = fn()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / iters)
    return 1.0 / best


def dql_ours(q_action: str, iters: int, unroll: bool = False) -> float:
    import jax
    import jax.numpy as jnp

    from agents import dql

    c = dql.get_config()
    c.horizon = c.action_steps = 1
    c.batch_size, c.actor_hidden_dims, c.critic_hidden_dims = BATCH, (WIDTH,) * 3, (WIDTH,) * 3
    c.generative, c.noise_schedule, c.train_denoising_steps, c.denoising_steps, c.ddim_eta = "ddpm", "vp", K, K, 1.0
    c.q_action, c.unroll_chain = q_action, unroll
    agent = jax.device_put(dql.DQLAgent.create(0, STATE, ACTION, c), jax.devices()[0])
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    actions = jax.random.uniform(k[1], (BATCH, 1, ACTION), minval=-1, maxval=1)
    batch = {"obs": jax.random.normal(k[0], (BATCH, STATE)), "actions": actions, "critic_actions": actions,
             "reward_sum": jax.random.uniform(k[2], (BATCH,)), "discount": jnp.full((BATCH,), 0.99),
             "next_obs": jax.random.normal(k[3], (BATCH, STATE)), "valid": jnp.ones((BATCH,))}
    state = {"agent": agent}

    def step():
        state["agent"], info = state["agent"].update(batch)
        return info

    return _best_rate(step, iters)


def dql_reference(iters: int) -> dict:
    code = _REFERENCE_TIMER % (STATE, ACTION, BATCH, iters, K)
    proc = subprocess.run([_REF_PY.value, "-c", code], cwd=os.path.abspath(_REF.value), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"reference run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def latency() -> dict:
    import jax
    import jax.numpy as jnp

    import envs
    from agents import bc, dql, guided, qc, qc_fql

    task = envs.make("point_obstacle")
    obs_dim, act_dim = int(task.observation_size), int(task.action_size)
    rules = {
        "plain (BC sampler)": (bc.BCAgent, bc, {}),
        "best-of-32 argmax (QC)": (qc.QCAgent, qc, {}),
        "best-of-32 softmax (QC, selection=softmax)": (qc.QCAgent, qc, {"selection": "softmax", "temperature": 0.02}),
        "32 candidates softmax (DQL)": (dql.DQLAgent, dql, {}),
        "guided, N = 1": (guided.GuidedAgent, guided, {"num_samples": 1}),
        "guided, best of N = 4": (guided.GuidedAgent, guided, {}),
        "one-step policy (QC-FQL)": (qc_fql.QCFQLAgent, qc_fql, {}),
    }
    obs = jnp.zeros((1, obs_dim))
    out = {}
    for name, (cls, module, overrides) in rules.items():
        c = module.get_config()
        for k, v in overrides.items():
            c[k] = v
        agent = jax.device_put(cls.create(0, obs_dim, act_dim, c), jax.devices()[0])
        key = jax.random.PRNGKey(0)
        out[name] = 1e3 / _best_rate(lambda: agent.sample_actions(obs, key), 200)
        print(f"  {name:45s} {out[name]:7.2f} ms per chunk at batch 1", flush=True)
    return out


def main(_):
    import jax

    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs")
    results = {}
    if _PART.value in ("all", "dql"):
        print(f"Diffusion-QL: state {STATE}, action {ACTION}, batch {BATCH}, 3x{WIDTH} Mish, VP K = {K}")
        results["dql_chain_iters_per_s"] = dql_ours("chain", _ITERS.value)
        print(f"  ours, Q through the chain (DQL): {results['dql_chain_iters_per_s']:.1f} it/s", flush=True)
        results["dql_chain_unrolled_iters_per_s"] = dql_ours("chain", _ITERS.value, unroll=True)
        print(f"  ours, the same, unroll_chain=True: {results['dql_chain_unrolled_iters_per_s']:.1f} it/s", flush=True)
        results["dql_one_step_iters_per_s"] = dql_ours("one_step", _ITERS.value)
        print(f"  ours, one-step estimate (EDP):   {results['dql_one_step_iters_per_s']:.1f} it/s", flush=True)
        if _REF.value:
            ref = dql_reference(_ITERS.value)
            results["dql_reference"] = ref
            print(f"  published PyTorch code:          {ref['iters_per_s']:.1f} it/s "
                  f"(ours {results['dql_chain_iters_per_s'] / ref['iters_per_s']:.2f}x its rate, "
                  f"unrolled {results['dql_chain_unrolled_iters_per_s'] / ref['iters_per_s']:.2f}x)")
    if _PART.value in ("all", "latency"):
        print("chunk latency at batch 1 (CPU default sizes, point_obstacle shapes):")
        results["latency_ms"] = latency()
    print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)

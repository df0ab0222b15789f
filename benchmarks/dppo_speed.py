"""DPPO speed: one PPO minibatch update at the published code's Hopper sizes, and rollout throughput.

    python benchmarks/dppo_speed.py [--part=all|update|rollout]
        [--reference_dppo=/path/to/dppo --reference_python=/path/to/python-with-torch]

``--part=update``: one PPO minibatch gradient step (actor and critic) over
``--pairs`` (env step, denoising step) pairs at the sizes of DPPO's
Hopper fine-tuning config (``cfg/gym/finetune/hopper-v2/ft_ppo_diffusion_mlp.yaml``
of github irom-princeton/dppo: obs 11, action 3, H = 4, DDPM with K = 20,
K' = 10, actor 3x512 MLP, critic 3x256 Mish MLP). Ours is
:meth:`agents.dppo.DPPOAgent.minibatch_update` jitted alone. With
``--reference_dppo`` the published PyTorch code is timed in a subprocess of
``--reference_python`` on the same machine in the same run (2 torch
threads): its own ``PPODiffusion`` model and ``loss``, backward and the two
Adam steps, as its training loop does per minibatch; nothing of it is copied
here. Both sides alternate 3 times in fresh processes; medians are reported.

``--part=rollout``: env steps per second of the on-policy rollout on the
default task (``point_obstacle``, DPPO's default chain: 10 DDIM steps of the
2x256 denoiser per chunk of 5 actions) at 64, 256 and 1024 envs, the
denoising included and the PPO update left out.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

_PART = flags.DEFINE_enum("part", "all", ["all", "update", "rollout", "ours_update"], "what to time")
_REF = flags.DEFINE_string("reference_dppo", "", "checkout of irom-princeton/dppo")
_REF_PY = flags.DEFINE_string("reference_python", "", "a Python interpreter with torch installed")
_PAIRS = flags.DEFINE_integer("pairs", 50_000, "(env step, denoising step) pairs per minibatch")
_ITERS = flags.DEFINE_integer("iters", 10, "timed updates per process")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "alternating fresh-process rounds per side")

OBS, ACT, H, K, KF = 11, 3, 4, 20, 10

# Run by --reference_python inside the reference checkout: its model, its loss, its optimizers.
_REFERENCE_TIMER = r"""
import json, sys, time
import torch
torch.set_num_threads(2)
sys.path.insert(0, '.')
from model.diffusion.diffusion_ppo import PPODiffusion
from model.diffusion.mlp_diffusion import DiffusionMLP
from model.common.critic import CriticObs
OBS, ACT, H, K, KF, M, iters = %d, %d, %d, %d, %d, %d, %d
actor = DiffusionMLP(action_dim=ACT, horizon_steps=H, cond_dim=OBS, time_dim=16, mlp_dims=[512, 512, 512],
                     activation_type='ReLU', residual_style=True)
critic = CriticObs(cond_dim=OBS, mlp_dims=[256, 256, 256], activation_type='Mish', residual_style=True)
model = PPODiffusion(actor=actor, critic=critic, ft_denoising_steps=KF, horizon_steps=H, obs_dim=OBS,
                     action_dim=ACT, denoising_steps=K, device='cpu', min_sampling_denoising_std=0.1,
                     min_logprob_denoising_std=0.1, gamma_denoising=0.99, clip_ploss_coef=0.01,
                     clip_ploss_coef_base=0.001, clip_ploss_coef_rate=3, randn_clip_value=3,
                     denoised_clip_value=1.0, final_action_clip_value=1.0, network_path=None)
actor_opt = torch.optim.AdamW(model.actor_ft.parameters(), lr=1e-4, weight_decay=0)
critic_opt = torch.optim.AdamW(model.critic.parameters(), lr=1e-3, weight_decay=0)
g = torch.Generator().manual_seed(0)
obs = {'state': torch.randn(M, 1, OBS, generator=g)}
prev, nxt = torch.randn(M, H, ACT, generator=g), torch.randn(M, H, ACT, generator=g)
inds = torch.randint(0, KF, (M,), generator=g)
ret, val, adv = torch.randn(M, generator=g), torch.randn(M, generator=g), torch.randn(M, generator=g)
old = torch.randn(M, H, ACT, generator=g).clamp(-5, 2)
def one():
    pg, ent, vl, cf, kl, ratio, bc, eta = model.loss(obs, prev, nxt, inds, ret, val, adv, old)
    loss = pg + 0.5 * vl
    actor_opt.zero_grad(); critic_opt.zero_grad()
    loss.backward()
    actor_opt.step(); critic_opt.step()
for _ in range(3):
    one()
times = []
for _ in range(iters):
    t0 = time.perf_counter(); one(); times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"median_s": times[len(times) // 2], "min_s": times[0]}))
"""


def _ours_update(pairs: int, iters: int) -> dict:
    import jax
    import jax.numpy as jnp

    from agents import dppo
    from agents.dppo import DPPOAgent

    c = dppo.get_config()
    c.horizon = c.action_steps = H
    c.train_denoising_steps = c.denoising_steps = K
    c.ft_denoising_steps = KF
    c.actor_hidden_dims = (512, 512, 512)
    c.actor_activation = "relu"        # the reference Hopper actor's (ours is not residual)
    c.critic_hidden_dims = (256, 256, 256)
    c.max_grad_norm = 0.0              # the Hopper config sets no gradient clip
    agent = DPPOAgent.create(0, OBS, ACT, c)
    keys = jax.random.split(jax.random.PRNGKey(0), 7)
    mb = {"obs": jax.random.normal(keys[0], (pairs, OBS)), "x": jax.random.normal(keys[1], (pairs, H, ACT)),
          "x_next": jax.random.normal(keys[2], (pairs, H, ACT)),
          "local": jax.random.randint(keys[3], (pairs,), 0, KF), "adv": jax.random.normal(keys[4], (pairs,)),
          "ret": jax.random.normal(keys[5], (pairs,)), "old_logp": jax.random.normal(keys[6], (pairs,))}
    step = jax.jit(lambda agent, carry, mb: agent.minibatch_update(carry, mb, jnp.bool_(True)), donate_argnums=(1,))
    carry = (agent.actor, agent.value)
    for _ in range(3):
        carry, info = step(agent, carry, mb)
    jax.block_until_ready(carry)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        carry, info = step(agent, carry, mb)
        jax.block_until_ready(carry)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"median_s": times[len(times) // 2], "min_s": times[0]}


def _subprocess(cmd: list[str], cwd: str) -> dict:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_update() -> dict:
    result = {"sizes": {"obs": OBS, "action": ACT, "horizon": H, "K": K, "K_ft": KF, "pairs": _PAIRS.value,
                        "actor": "3x512", "critic": "3x256"}, "ours": [], "reference": []}
    for r in range(_ROUNDS.value):
        ours = _subprocess([sys.executable, os.path.abspath(__file__), "--part=ours_update",
                            f"--pairs={_PAIRS.value}", f"--iters={_ITERS.value}"], ROOT)
        result["ours"].append(ours["median_s"])
        line = f"round {r}: ours {ours['median_s']:.3f} s"
        if _REF.value:
            script = _REFERENCE_TIMER % (OBS, ACT, H, K, KF, _PAIRS.value, _ITERS.value)
            ref = _subprocess([_REF_PY.value or "python", "-c", script], _REF.value)
            result["reference"].append(ref["median_s"])
            line += f", published PyTorch {ref['median_s']:.3f} s"
        print(line, flush=True)
    result["ours_median_s"] = statistics.median(result["ours"])
    if result["reference"]:
        result["reference_median_s"] = statistics.median(result["reference"])
        result["speedup"] = result["reference_median_s"] / result["ours_median_s"]
    return result


def part_rollout() -> dict:
    import jax
    import flax

    import envs
    from agents import dppo
    from agents.actor import Actor
    from agents.dppo import DPPOAgent
    from envs.wrappers import VecEnv
    from launch.loops import make_onpolicy_iterations
    from replay.normalizer import Normalizer

    class RolloutOnly(flax.struct.PyTreeNode):
        """The agent's sampler, with an update that does nothing (times the rollout alone).

        ``denoise=False`` acts with zero chunks: the env's share of the time."""
        agent: DPPOAgent
        denoise: bool = flax.struct.field(pytree_node=False, default=True)

        def act(self, obs, key):
            if self.denoise:
                return self.agent.act(obs, key)
            return jax.numpy.zeros((obs.shape[0], self.agent.horizon, self.agent.action_dim)), {}

        def update(self, rollout):
            return self, {}

    task = envs.make("point_obstacle")
    c = dppo.get_config()
    T, h = c.rollout_length, c.action_steps
    normalizer = Normalizer.identity(task.observation_size, task.action_size)
    out = {}
    for n in (64, 256, 1024):  # a fresh actor each time: the loop donates the agent's buffers
        out[n] = {}
        for denoise in (True, False):
            actor = Actor.create(jax.random.PRNGKey(0), task.observation_size, task.action_size, c)
            agent = RolloutOnly(DPPOAgent.create(0, task.observation_size, task.action_size, c, actor=actor,
                                                 num_envs=n), denoise)
            env = VecEnv(task, n, 100)
            iters = max(1, 4096 // n)
            fn = make_onpolicy_iterations(env, normalizer, rollout_length=T, action_steps=h, discount=c.discount,
                                          num_iters=iters)
            state = env.reset(jax.random.PRNGKey(1))
            agent, state, m = fn(agent, state, jax.random.PRNGKey(2))  # compile
            jax.block_until_ready(m)
            t0 = time.perf_counter()
            agent, state, m = fn(agent, state, jax.random.PRNGKey(3))
            jax.block_until_ready(m)
            rate = float(m["env_steps"]) / (time.perf_counter() - t0)
            out[n]["env_steps_per_s" if denoise else "env_only_steps_per_s"] = rate
        print(f"{n:5d} envs: {out[n]['env_steps_per_s']:.0f} env steps/s with {c.denoising_steps} denoising steps per "
              f"chunk of {h}; {out[n]['env_only_steps_per_s']:.0f} with zero chunks (the env alone)", flush=True)
    return out


def main(argv):
    del argv
    if _PART.value == "ours_update":
        print(json.dumps(_ours_update(_PAIRS.value, _ITERS.value)))
        return
    results = {}
    if _PART.value in ("all", "update"):
        results["update"] = part_update()
    if _PART.value in ("all", "rollout"):
        results["rollout"] = part_rollout()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)

"""DPPO: BC pretraining of a chunked DDPM policy, then PPO over its denoising chain (Ren et al. 2024).

Run: ``python launch/train.py --config=configs/dppo.py[:preset]``. Task and size presets
(``:pick_place``, ``:smoke``, ...) are shared by every method (``configs/common.py``): same task, same
demonstrations, same BC budget and the same online env-step budget as QC, DQL and the others.
"""

from __future__ import annotations

import ml_collections

from agents import dppo
from configs import common


def _smoke(c: ml_collections.ConfigDict) -> None:
    """Tiny sizes for tests."""
    common.SIZES["smoke"](c)
    c.agent.train_denoising_steps = 20
    c.agent.denoising_steps = 4
    c.agent.ft_denoising_steps = 2
    c.agent.rollout_length = 3
    c.agent.num_epochs = 2
    c.agent.minibatch_size = 16
    c.agent.critic_warmup_iters = 1
    c.online.env_steps = 8 * 3 * 5 * 4  # 4 iterations
    c.online.log_every = 2
    c.online.eval_every = 2


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return common.make("dppo", dppo.get_config(), arg, "configs/dppo.py", on_policy=True,
                       presets={"smoke": _smoke})

"""Behaviour cloning alone: pretrain a chunked policy on the demonstrations, evaluate it, stop.

Run (CPU)::

    python launch/train.py --config=configs/bc.py                       # default task, flow + MLP, H = h = 5
    python launch/train.py --config=configs/bc.py:point_maze,dp         # Diffusion Policy's recipe on the maze
    python launch/train.py --config=configs/bc.py:point_obstacle,mse    # the mode-averaging regression baseline

Task and size presets are those of every method (``configs/common.py``).
BC's own presets, combinable (applied left to right):

* ``wide``  a 3x512 MLP denoiser (the default 2x256 underfits H = 16 chunks:
  on ``point_maze`` 0.676 success against 0.000 after 20k steps, seed 0);
* ``unet``  the 1D temporal U-Net denoiser with FiLM (``networks/unet.py``),
  CPU widths 32/64/128 (1.2M parameters, 7 BC updates/s at batch 256 here), kernel 5;
* ``h16``   Diffusion Policy's chunk: H = 16 predicted, h = 8 executed;
* ``h4``    a short chunk: H = 4 predicted, h = 2 executed (the chunk-length
  study's best on ``pick_place``, where H = 16 loses a third of the successes);
* ``ddpm``  DDPM with 100 training steps (cosine schedule), DDIM 10 to sample;
* ``dp``    all of Diffusion Policy's recipe (Chi et al. 2023): ``unet``,
  ``h16``, ``ddpm``, AdamW lr 1e-4 (weight decay 1e-6) with 500 warm-up
  updates and cosine decay over the BC steps, EMA with power 0.75 (ceiling 0.9999);
* ``mse``   deterministic chunk regression (MSE), the baseline that averages modes;
* ``ensemble`` evaluate with ACT's temporal ensembling (a query every step,
  overlapping chunks averaged with weights exp(-0.01 i), oldest first);
* ``dp_gpu`` Diffusion Policy's full widths (256/512/1024): for a GPU.

The evaluation reports success and the split of the successes over the
task's modes (``mode_<name>`` in ``summary.json`` and ``metrics.csv``), beside
the expert's planned split from the dataset card.
"""

from __future__ import annotations

import ml_collections

from agents import bc
from configs import common


def _wide(c: ml_collections.ConfigDict) -> None:
    c.agent.actor_hidden_dims = (512, 512, 512)


def _unet(c: ml_collections.ConfigDict) -> None:
    c.agent.actor_network = "unet"


def _h16(c: ml_collections.ConfigDict) -> None:
    c.agent.horizon, c.agent.action_steps = 16, 8


def _h4(c: ml_collections.ConfigDict) -> None:
    c.agent.horizon, c.agent.action_steps = 4, 2


def _ddpm(c: ml_collections.ConfigDict) -> None:
    c.agent.generative, c.agent.train_denoising_steps, c.agent.denoising_steps = "ddpm", 100, 10
    c.agent.noise_schedule = "squaredcos_cap_v2"


def _dp(c: ml_collections.ConfigDict) -> None:
    _unet(c), _h16(c), _ddpm(c)
    a = c.agent
    a.actor_lr, a.actor_weight_decay, a.actor_lr_warmup_steps = 1e-4, 1e-6, 500
    a.actor_lr_decay_steps = -1  # over the BC steps (pretrain.steps, resolved when the run starts)
    a.ema_power, a.ema_decay = 0.75, 0.9999


def _mse(c: ml_collections.ConfigDict) -> None:
    c.agent.generative = "mse"


def _dp_gpu(c: ml_collections.ConfigDict) -> None:
    _dp(c)
    c.agent.unet_down_dims = (256, 512, 1024)


def _ensemble(c: ml_collections.ConfigDict) -> None:
    c.agent.temporal_ensemble = True


PRESETS = {"wide": _wide, "ensemble": _ensemble, "unet": _unet, "h16": _h16, "h4": _h4, "ddpm": _ddpm, "dp": _dp, "mse": _mse, "dp_gpu": _dp_gpu}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return common.make("bc", bc.get_config(), arg, "configs/bc.py", presets=PRESETS)


# the point_obstacle rows' data and BC budget (the expert's own quality); other tasks: their task preset's
STUDY_BUDGET = {"point_obstacle": {"data.num_episodes": 1000, "data.sloppy_prob": -1.0, "pretrain.steps": 20_000}}
STUDY = (  # (task, presets, extra overrides): the README's BC table, 3 seeds each
    ("point_maze", "wide,h16", {}), ("point_maze", "wide,h16", {"agent.obs_history": 2}),
    ("point_obstacle", "wide,h16", {}), ("pick_place", "wide,h16", {}), ("point_obstacle", "wide,h16,mse", {}),
    ("point_maze", "wide", {}), ("pick_place", "wide,h16", {"agent.obs_history": 2}),
    ("pick_place", "wide,h4", {}), ("push_t", "wide,h4", {}), ("pick_place_two", "wide,h4", {}),
)


def sweep(arg: str | None = None) -> list[dict]:
    """``python launch/sweep.py --config=configs/bc.py[:preset]``: 3 seeds of the config.

    ``--sweep=configs/bc.py:study``: the BC study of the README (issue 11), the runs of ``STUDY``
    (the 3x512 MLP flow policy at H = 16 / h = 8 or H = h = 5, T_o 1 or 2, the MSE baseline), 3 seeds each;
    ``study,<token>,...``: only the rows whose task or one of whose presets is a token
    (``study,push_t``: push_t's rows; ``study,h4``: the H = 4 / h = 2 rows).
    ``--sweep=configs/bc.py:chunks``: the chunk-length study (``point_maze``, ``pick_place``;
    H in 1, 4, 8, 16, h = H / 2 and h = H; seed 0).

    Raises:
      ValueError: ``study,<token>`` names neither a task nor a preset of a ``STUDY`` row.
    """
    if arg == "chunks":  # chunk length study: H in 1, 4, 8, 16 with h = H / 2 or h = H (seed 0)
        return [{"config": f"configs/bc.py:{task},wide", "agent.horizon": horizon, "agent.action_steps": steps}
                for task in ("point_maze", "pick_place") for horizon in (1, 4, 8, 16)
                for steps in sorted({max(horizon // 2, 1), horizon})]
    name, *tokens = (arg or "").split(",")
    if name != "study":
        return common.grid({"seed": range(3)})

    names = [{task, *presets.split(",")} for task, presets, _ in STUDY]  # what a token may name, per row
    unknown = sorted(set(tokens).difference(*names))
    if unknown:
        raise ValueError(f"sweep {arg!r}: no study rows for task or preset {unknown}")
    jobs = []
    for (task, presets, extra), row_names in zip(STUDY, names):
        if tokens and not row_names.intersection(tokens):
            continue
        jobs += [{"config": f"configs/bc.py:{task},{presets}", "seed": seed, **STUDY_BUDGET.get(task, {}), **extra}
                 for seed in range(3)]
    return jobs

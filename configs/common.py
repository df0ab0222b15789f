"""What every off-policy method's config shares: run, env, data and phase budgets, task and size presets.

Each method's file (``configs/qc.py``, ``qc_fql.py``, ``dql.py``, ``guided.py``)
calls :func:`make` with its agent's ``get_config()`` and name, so the same
``:preset`` means the same task, data and budget for every method.

Presets after the colon, comma-separated, applied left to right: a task
preset (``TASKS`` below: the task, its time limit and a data/online budget)
and/or a size preset (``SIZES``):

* (none)   CPU-sized default on ``point_obstacle`` with 1000 demonstrations of
           low quality (80% of them sloppy; the data succeed 0.26), 3000
           offline updates and, for the replay-based methods, a critic
           discount of 0.97, so that BC, offline RL and online RL are clearly
           apart (README: "The default main job" has the 5-seed figures and why);
* ``few_demos`` an earlier default (200 demonstrations of the expert's own
           quality, 4000 BC steps, 1000 offline updates, discount 0.99), with
           which the README's method tables were measured;
* ``smoke``  tiny sizes for tests (about a minute, mostly compile time);
* ``paper``  Q-chunking paper sizes (4x512 actor and critic, N=32 in acting and
           target, batch 256, UTD 1): for a GPU.

For example ``--config=configs/dql.py:point_maze`` or ``:push_t,smoke``.
"""

from __future__ import annotations

import ml_collections


def make(agent_name: str, agent: ml_collections.ConfigDict, arg: str | None, file: str, on_policy: bool = False,
         from_scratch: bool = False, presets: dict | None = None) -> ml_collections.ConfigDict:
    """The run config for ``agent_name`` with agent fields ``agent``, after the presets in ``arg``.

    ``on_policy`` drops what only replay-based fine-tuning uses (the offline
    phase, UTD and offline ratios, the replay capacity); ``from_scratch``
    also drops the demonstrations and BC pretraining. ``presets`` adds the
    method's own named presets (functions of the config) to ``TASKS`` and
    ``SIZES``; a preset's fields that the config lacks are skipped.

    Raises:
      ValueError: an unknown preset (the message lists the known ones and names ``file``).
    """
    c = ml_collections.ConfigDict()
    c.agent_name = agent_name           # module under agents/ (bc: BC only, no fine-tuning)
    c.seed = 0                          # seeds networks, env resets and sampling (not the dataset)
    c.num_seeds = 1                     # seeds seed .. seed+num_seeds-1 in one process, vmapped (one run folder each)
    c.run_dir = ""                      # run folder; '' -> runs/<agent>_<env>_s<seed>_<config hash> (same command, same folder: it resumes)
    c.multi_device = True               # several visible devices: data parallel (envs and batches sharded)
    c.checkpoint_every_s = 300.0        # seconds between resume checkpoints (also at evaluations and phase ends; 0: every call)
    c.data_dir = "data"                 # where datasets are cached (built on first use)
    c.pretrained = ""                   # a run folder whose BC checkpoint replaces pretraining
    c.compilation_cache = True          # keep compiled XLA code in <data_dir>/jax_cache (a second run skips most compiling)
    c.log = ml_collections.ConfigDict()  # metrics.csv and TensorBoard always; Weights & Biases on request
    c.log.wandb = False                 # also log to W&B (pip install wandb); the config and summary are attached
    c.log.wandb_project = "chunkrl"     # W&B project
    c.log.wandb_entity = ""             # W&B entity ('' -> your default)
    c.log.wandb_mode = "auto"           # online | offline | auto (offline when the W&B server is unreachable)
    c.env = ml_collections.ConfigDict()
    c.env.name = "point_obstacle"       # registered task (envs.names())
    c.env.num_envs = 64                 # parallel envs during online fine-tuning
    c.env.episode_length = 100          # time limit in control steps (truncation)
    c.env.num_eval_episodes = 256       # episodes per evaluation (vectorized, one each)
    c.env.num_video_episodes = 2        # rendered evaluation episodes saved at the end (0: none)
    c.data = ml_collections.ConfigDict()
    c.data.num_episodes = 1000          # scripted-expert demonstrations
    c.data.seed = 0                     # dataset seed (kept apart from c.seed: same data across seeds)
    c.data.sloppy_prob = 0.8            # share of sloppy (mostly failing) expert episodes; -1: the task expert's default
    c.pretrain = ml_collections.ConfigDict()
    c.pretrain.steps = 12_000           # BC gradient steps on the demonstrations
    c.pretrain.log_every = 4_000        # BC steps between progress lines
    c.offline = ml_collections.ConfigDict()
    c.offline.steps = 3_000             # agent updates on demonstrations only, before going online
    c.offline.log_every = 500           # offline updates between progress lines
    c.online = ml_collections.ConfigDict()
    c.online.env_steps = 40_000         # env steps of fine-tuning (all envs together)
    c.online.utd_ratio = 0.125          # gradient updates per collected chunk transition
    c.online.offline_ratio = 0.5        # share of each batch drawn from the demonstrations
    c.online.buffer_capacity = 320_000  # online replay capacity in env steps
    c.online.log_every = 25             # iterations (one chunk in every env) between progress lines
    c.online.eval_every = 25            # iterations between evaluations (+ checkpoints) while fine-tuning (0: end only)
    c.agent = agent                     # the method's own defaults (agents/<method>.py get_config)
    if not on_policy and "discount" in agent:
        # the default task's critic discount (task presets restore 0.99): on 100-step episodes whose time-limit
        # truncation bootstraps, 0.99 left a stalling chunk only 5% below progress (gamma^h), within the critic's
        # error, and best-of-N picked stalling chunks (README: "The default main job")
        agent.discount = 0.97
    if on_policy:  # iterations of rollout + PPO update: no replay, no offline phase
        del c["offline"]
        for field in ("utd_ratio", "offline_ratio", "buffer_capacity"):
            del c.online[field]
        c.online.log_every = 2          # iterations (rollout + update) between progress lines
        c.online.eval_every = 4         # iterations between evaluations (+ checkpoints) (0: end only)
    if from_scratch:
        del c["data"], c["pretrain"], c["pretrained"]

    own = presets or {}
    for preset in [p for p in (arg or "").split(",") if p and p != "default"]:
        if preset in own:
            own[preset](c)
        elif preset in TASKS:
            _apply(c, TASKS[preset])
        elif preset in SIZES:
            SIZES[preset](c)
        else:
            raise ValueError(f"{file}: unknown preset {preset!r}; expected task presets "
                             f"{sorted(TASKS)}, size presets {sorted(SIZES)} or {sorted(own)}, comma-separated")
    return c


def _smoke(c: ml_collections.ConfigDict) -> None:
    """Tiny sizes for tests (about a minute, mostly compile time)."""
    _apply(c, {"env.num_envs": 8, "env.num_eval_episodes": 16, "env.num_video_episodes": 0, "env.episode_length": 40,
               "data.num_episodes": 40, "pretrain.steps": 50, "pretrain.log_every": 25, "offline.steps": 10,
               "offline.log_every": 5, "online.env_steps": 8 * 5 * 6, "online.utd_ratio": 0.25,
               "online.buffer_capacity": 8 * 5 * 20, "online.log_every": 3, "online.eval_every": 3})
    c.agent.batch_size = 32
    _set_present(c.agent, {"denoising_steps": 3, "actor_hidden_dims": (32, 32), "num_samples": 4,
                           "target_num_samples": 2, "critic_hidden_dims": (32, 32), "onestep_hidden_dims": (32, 32)})


def _paper(c: ml_collections.ConfigDict) -> None:
    """Q-chunking paper sizes, for a GPU."""
    _set_present(c.agent, {"num_samples": 32, "target_num_samples": 32, "critic_hidden_dims": (512, 512, 512, 512),
                           "actor_hidden_dims": (512, 512, 512, 512)})
    _apply(c, {"env.num_envs": 1024, "online.env_steps": 1_000_000, "online.utd_ratio": 1.0,
               "online.buffer_capacity": 1_024_000, "offline.steps": 100_000})


def _set_present(agent: ml_collections.ConfigDict, values: dict) -> None:
    """Sets the fields of ``values`` that this agent has (a preset serves every method)."""
    for field, value in values.items():
        if field in agent:
            agent[field] = value


def _apply(c: ml_collections.ConfigDict, overrides: dict) -> None:
    """Sets dotted fields; those this config lacks (e.g. ``offline.*`` of an on-policy method) are skipped."""
    for dotted, value in overrides.items():
        *path, leaf = dotted.split(".")
        node = c
        for part in path:
            node = node.get(part)
            if node is None:
                break
        if node is not None and leaf in node:
            node[leaf] = value


SIZES = {"smoke": _smoke, "paper": _paper}


def apply_overrides(c: ml_collections.ConfigDict, overrides: dict, where: str = "overrides") -> None:
    """Sets dotted fields of ``c`` (a sweep job); the key ``preset`` applies task or size presets first.

    Raises:
      ValueError: a field ``c`` does not have, a value of the wrong type, or
        an unknown preset (the message names ``where`` and the field).
    """
    overrides = dict(overrides)
    for preset in [p for p in str(overrides.pop("preset", "")).split(",") if p]:
        if preset in TASKS:
            _apply(c, TASKS[preset])
        elif preset in SIZES:
            SIZES[preset](c)
        else:
            raise ValueError(f"{where}: unknown preset {preset!r}; expected {sorted(TASKS)} or {sorted(SIZES)}")
    for dotted, value in overrides.items():
        *path, leaf = dotted.split(".")
        node = c
        for part in path:
            if not isinstance(node.get(part), ml_collections.ConfigDict):
                raise ValueError(f"{where}: config has no field {dotted!r}")
            node = node[part]
        if leaf not in node:
            raise ValueError(f"{where}: config has no field {dotted!r}")
        if isinstance(node[leaf], tuple) and isinstance(value, list):
            value = tuple(value)
        try:
            node[leaf] = value
        except TypeError as err:
            raise ValueError(f"{where}: {dotted}={value!r}: {err}") from err


def grid(fields: dict) -> list[dict]:
    """Every combination of the listed values: ``grid({"seed": range(3), "agent.eta": [0.1, 1.0]})`` -> 6 dicts."""
    import itertools

    keys = list(fields)
    return [dict(zip(keys, values)) for values in itertools.product(*(list(fields[k]) for k in keys))]

# The budget the other task presets keep (the first default's: more data, BC and offline updates; the expert's
# own share of sloppy episodes; discount 0.99).
_LONG = {"data.sloppy_prob": -1.0, "agent.discount": 0.99, "pretrain.steps": 20_000, "offline.steps": 2_000,
         "offline.log_every": 1_000, "online.utd_ratio": 0.25, "online.eval_every": 100, "online.env_steps": 128_000}

# Task presets: the task, its time limit and a data/online budget sized for the 2-core CPU.
TASKS = {
    "point_obstacle": {"env.name": "point_obstacle", "env.episode_length": 100},
    # the default before issue 7's data-quality change: 200 demonstrations at the expert's own quality
    "few_demos": {"env.name": "point_obstacle", "env.episode_length": 100, "data.num_episodes": 200,
                  "data.sloppy_prob": -1.0, "pretrain.steps": 4_000, "pretrain.log_every": 2_000,
                  "offline.steps": 1_000, "offline.log_every": 500, "agent.discount": 0.99},
    "point_maze": {**_LONG, "env.name": "point_maze", "env.episode_length": 400, "data.num_episodes": 500,
                   "online.env_steps": 256_000, "online.buffer_capacity": 640_000},
    "push_t": {**_LONG, "env.name": "push_t", "env.episode_length": 200, "data.num_episodes": 1000},
    "pick_place": {**_LONG, "env.name": "pick_place", "env.episode_length": 150, "data.num_episodes": 1000},
    "pick_place_two": {**_LONG, "env.name": "pick_place_two", "env.episode_length": 300, "data.num_episodes": 1000},
    # MuJoCo Playground locomotion through the adapter; demonstrations from a "medium" PPO policy
    # trained here on first use (launch/policy_demos.py, about 5 minutes on the CPU); no success signal.
    "cheetah_run": {**_LONG, "env.name": "playground:CheetahRun", "env.episode_length": 1000, "data.num_episodes": 256,
                    "online.env_steps": 256_000, "online.buffer_capacity": 1_024_000},
}

"""Checks of a run config against the task, before any long work starts."""

from __future__ import annotations

from agents import AGENTS, agent_class
from launch.data import check_sloppy_prob, sloppy_prob
from networks.mlp import ACTIVATIONS


class ConfigError(ValueError):
    """A config field has a value the run cannot use (the message names field and expected value)."""


def _require(ok: bool, field: str, expected: str, value) -> None:
    if not ok:
        raise ConfigError(f"config.{field}: expected {expected}, got {value!r}")


def validate_config(config, task) -> None:
    """Raises :class:`ConfigError` naming the first invalid field.

    Checks chunk sizes (``1 <= action_steps <= horizon <= episode_length``),
    the generative actor's fields (when the agent has one), batch and buffer
    sizes, ratios and step budgets of the phases the config has, then the
    agent's own fields (its ``check``).
    """
    a, e = config.agent, config.env
    _require(config.agent_name in AGENTS, "agent_name", f"one of {sorted(AGENTS)}",
             config.agent_name)
    _require(config.get("num_seeds", 1) >= 1, "num_seeds", ">= 1", config.get("num_seeds", 1))
    _require(a.get("obs_history", 1) >= 1, "agent.obs_history", ">= 1", a.get("obs_history"))
    _require(a.horizon >= 1, "agent.horizon", ">= 1", a.horizon)
    _require(1 <= a.action_steps <= a.horizon, "agent.action_steps", f"in [1, horizon={a.horizon}]",
             a.action_steps)
    if a.get("temporal_ensemble", False):
        _require(a.ensemble_decay >= 0, "agent.ensemble_decay", ">= 0 (0: the plain mean)", a.ensemble_decay)
    _require(e.episode_length >= 1, "env.episode_length", ">= 1", e.episode_length)
    _require(a.horizon <= e.episode_length, "agent.horizon",
             f"<= env.episode_length={e.episode_length} (a chunk cannot be longer than an episode)", a.horizon)
    if "batch_size" in a:
        _require(a.batch_size >= 1, "agent.batch_size", ">= 1", a.batch_size)
    _require(0.0 < a.discount <= 1.0, "agent.discount", "in (0, 1]", a.discount)
    if "generative" in a:  # a chunked generative actor
        _require(a.denoising_steps >= 1, "agent.denoising_steps", ">= 1", a.denoising_steps)
        _require(a.generative in ("flow", "ddpm", "mse"), "agent.generative", "'flow', 'ddpm' or 'mse'",
                 a.generative)
        _require(a.get("actor_network", "mlp") in ("mlp", "unet"), "agent.actor_network", "'mlp' or 'unet'",
                 a.get("actor_network"))
        if a.get("actor_network", "mlp") == "unet":
            dims = tuple(a.unet_down_dims)
            _require(len(dims) >= 1 and all(d > 0 and d % 8 == 0 for d in dims), "agent.unet_down_dims",
                     "positive multiples of 8 (GroupNorm with 8 groups)", dims)
            _require(a.unet_kernel_size >= 1 and a.unet_kernel_size % 2 == 1, "agent.unet_kernel_size",
                     "an odd width >= 1", a.unet_kernel_size)
        _require(a.get("actor_activation", "mish") in ACTIVATIONS, "agent.actor_activation",
                 f"one of {sorted(ACTIVATIONS)}", a.get("actor_activation"))
        if a.generative == "ddpm":
            _require(a.denoising_steps <= a.train_denoising_steps, "agent.denoising_steps",
                     f"<= train_denoising_steps={a.train_denoising_steps}", a.denoising_steps)
    _require(config.get("checkpoint_every_s", 0.0) >= 0, "checkpoint_every_s", ">= 0 seconds (0: after every call)",
             config.get("checkpoint_every_s"))
    _require(e.num_envs >= 1, "env.num_envs", ">= 1", e.num_envs)
    _require(e.num_eval_episodes >= 1, "env.num_eval_episodes", ">= 1", e.num_eval_episodes)
    _require(e.get("num_video_episodes", 0) >= 0, "env.num_video_episodes", ">= 0 (0: no videos)",
             e.get("num_video_episodes"))
    if "data" in config:
        _require(config.data.num_episodes >= 1, "data.num_episodes", ">= 1", config.data.num_episodes)
        try:
            check_sloppy_prob(e.name, sloppy_prob(config))
        except ValueError as err:
            raise ConfigError(f"config.{err}") from None
    for phase in ("pretrain", "offline"):
        if phase in config:
            _require(config[phase].steps >= 0, f"{phase}.steps", ">= 0", config[phase].steps)
            _require(config[phase].log_every >= 1, f"{phase}.log_every", ">= 1", config[phase].log_every)
    o = config.online
    _require(o.log_every >= 1, "online.log_every", ">= 1", o.log_every)
    _require(o.eval_every >= 0, "online.eval_every", ">= 0 (0: evaluate at the end only)", o.eval_every)
    _require(o.env_steps >= e.num_envs * a.action_steps, "online.env_steps",
             f">= num_envs * action_steps = {e.num_envs * a.action_steps}", o.env_steps)
    if "utd_ratio" in o:  # replay-based fine-tuning
        _require(0.0 <= o.offline_ratio <= 1.0, "online.offline_ratio", "in [0, 1]", o.offline_ratio)
        _require(o.utd_ratio > 0, "online.utd_ratio", "> 0", o.utd_ratio)
        per_stream = o.buffer_capacity // e.num_envs
        _require(o.buffer_capacity % e.num_envs == 0 and per_stream >= 2 * a.horizon, "online.buffer_capacity",
                 f"a multiple of env.num_envs={e.num_envs} with >= {2 * a.horizon} steps per env",
                 o.buffer_capacity)
    _require(task.action_size >= 1, "env.name", "a task with actions", config.env.name)
    AgentClass = agent_class(config.agent_name)
    if getattr(AgentClass, "ON_POLICY", False) and "num_minibatches" in a:
        _require((a.rollout_length * e.num_envs) % a.num_minibatches == 0, "agent.num_minibatches",
                 f"a divisor of rollout_length x num_envs = {a.rollout_length * e.num_envs}", a.num_minibatches)
    check = getattr(AgentClass, "check", None)
    if check is not None:  # the agent's own fields (selection, critic, method weights)
        try:
            check(a)
        except ValueError as e:
            raise ConfigError(f"config.{e}") from None

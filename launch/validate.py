"""Checks of a run config against the task, before any long work starts."""

from __future__ import annotations

from agents import AGENTS, agent_class
from networks.mlp import ACTIVATIONS


class ConfigError(ValueError):
    """A config field has a value the run cannot use (the message names field and expected value)."""


def _require(ok: bool, field: str, expected: str, value) -> None:
    if not ok:
        raise ConfigError(f"config.{field}: expected {expected}, got {value!r}")


def validate_config(config, task) -> None:
    """Raises :class:`ConfigError` naming the first invalid field.

    Checks chunk sizes (``1 <= action_steps <= horizon <= episode_length``),
    sample counts, batch and buffer sizes, ratios and step budgets.
    """
    a, e = config.agent, config.env
    _require(config.agent_name in AGENTS, "agent_name", f"one of {sorted(AGENTS)}",
             config.agent_name)
    _require(a.horizon >= 1, "agent.horizon", ">= 1", a.horizon)
    _require(1 <= a.action_steps <= a.horizon, "agent.action_steps", f"in [1, horizon={a.horizon}]",
             a.action_steps)
    _require(e.episode_length >= 1, "env.episode_length", ">= 1", e.episode_length)
    _require(a.horizon <= e.episode_length, "agent.horizon",
             f"<= env.episode_length={e.episode_length} (a chunk cannot be longer than an episode)", a.horizon)
    _require(a.batch_size >= 1, "agent.batch_size", ">= 1", a.batch_size)
    _require(0.0 < a.discount <= 1.0, "agent.discount", "in (0, 1]", a.discount)
    _require(a.denoising_steps >= 1, "agent.denoising_steps", ">= 1", a.denoising_steps)
    _require(a.generative in ("flow", "ddpm"), "agent.generative", "'flow' or 'ddpm'", a.generative)
    _require(a.get("actor_activation", "mish") in ACTIVATIONS, "agent.actor_activation",
             f"one of {sorted(ACTIVATIONS)}", a.get("actor_activation"))
    if a.generative == "ddpm":
        _require(a.denoising_steps <= a.train_denoising_steps, "agent.denoising_steps",
                 f"<= train_denoising_steps={a.train_denoising_steps}", a.denoising_steps)
    for field in ("num_samples", "target_num_samples"):
        if field in a:
            _require(a[field] >= 1, f"agent.{field}", ">= 1", a[field])
    if "tau" in a:
        _require(0.0 < a.tau <= 1.0, "agent.tau", "in (0, 1]", a.tau)
    _require(e.num_envs >= 1, "env.num_envs", ">= 1", e.num_envs)
    _require(e.num_eval_episodes >= 1, "env.num_eval_episodes", ">= 1", e.num_eval_episodes)
    _require(e.get("num_video_episodes", 0) >= 0, "env.num_video_episodes", ">= 0 (0: no videos)",
             e.get("num_video_episodes"))
    _require(config.data.num_episodes >= 1, "data.num_episodes", ">= 1", config.data.num_episodes)
    _require(config.pretrain.steps >= 0, "pretrain.steps", ">= 0", config.pretrain.steps)
    _require(config.offline.steps >= 0, "offline.steps", ">= 0", config.offline.steps)
    for phase in ("pretrain", "offline"):
        _require(config[phase].log_every >= 1, f"{phase}.log_every", ">= 1", config[phase].log_every)
    o = config.online
    _require(0.0 <= o.offline_ratio <= 1.0, "online.offline_ratio", "in [0, 1]", o.offline_ratio)
    _require(o.utd_ratio > 0, "online.utd_ratio", "> 0", o.utd_ratio)
    _require(o.log_every >= 1, "online.log_every", ">= 1", o.log_every)
    _require(o.eval_every >= 0, "online.eval_every", ">= 0 (0: evaluate at the end only)", o.eval_every)
    _require(o.env_steps >= e.num_envs * a.action_steps, "online.env_steps",
             f">= num_envs * action_steps = {e.num_envs * a.action_steps}", o.env_steps)
    per_stream = o.buffer_capacity // e.num_envs
    _require(o.buffer_capacity % e.num_envs == 0 and per_stream >= 2 * a.horizon, "online.buffer_capacity",
             f"a multiple of env.num_envs={e.num_envs} with >= {2 * a.horizon} steps per env", o.buffer_capacity)
    _require(task.action_size >= 1, "env.name", "a task with actions", config.env.name)
    check = getattr(agent_class(config.agent_name), "check", None)
    if check is not None:  # the agent's own fields (selection, critic, method weights)
        try:
            check(a)
        except ValueError as e:
            raise ConfigError(f"config.{e}") from None

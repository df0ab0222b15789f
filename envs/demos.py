"""Demonstrations from a task's scripted expert, reproducible from a seed.

:func:`collect_expert_episodes` rolls the expert out in ``num_episodes``
vectorized envs (one jitted ``lax.scan``), one episode each, and returns the
episodes as dicts of numpy arrays in the format of :mod:`envs.dataset`.
:func:`expert_dataset` loads the dataset from the data directory or builds
and stores it (TFDS array_record) with a card of expert statistics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from envs import dataset as dataset_lib
from envs import registry
from envs.wrappers import VecEnv, select


def collect_expert_episodes(task: str, num_episodes: int, seed: int, episode_length: int | None = None,
                            batch_size: int | None = None, progress: bool = False,
                            sloppy_prob: float | None = None) -> list[dict]:
    """Runs the scripted expert of ``task`` for ``num_episodes`` episodes.

    Args:
      task: registered task name.
      num_episodes: number of episodes (>= 1).
      seed: PRNG seed; the same seed gives the same episodes.
      episode_length: time limit (control steps); the task default if None.
      batch_size: envs simulated at once; None: the task's ``demo_batch_size``
        (``envs.registry.demo_batch_size``; smaller for contact-rich tasks).
      progress: show a progress bar (episodes collected).
      sloppy_prob: share of the expert's sloppy episodes (much larger action
        noise; most of the failures), in [0, 1]; None: the task expert's default.

    Returns:
      list of episode dicts: ``obs [T, O]``, ``action [T, A]``, ``reward [T]``,
      ``next_obs [T, O]``, ``terminated [T]``, ``truncated [T]`` (the last step
      has one of the two set), ``success`` (bool), ``mode`` (int32, the
      expert's planned mode) and ``observed_mode`` (int32, the task's own
      classification of the episode, ``info['mode']``; -1 undecided).
    """
    kwargs = {} if sloppy_prob is None else {"sloppy_prob": float(sloppy_prob)}
    return collect_episodes(task, _ExpertPolicy(registry.expert(task, **kwargs), kwargs), num_episodes, seed,
                            episode_length=episode_length, batch_size=batch_size, progress=progress)


class _ExpertPolicy:
    """A scripted expert (``init``/``act(plan, obs, key)``) in :func:`collect_episodes`'s interface."""

    def __init__(self, expert, kwargs: dict | None = None):
        # the name keys the compiled rollout: experts built with other arguments get their own
        self.expert = expert
        self.name = type(expert).__name__ + "".join(f"_{k}{v}" for k, v in sorted((kwargs or {}).items()))

    def init(self, key: jax.Array) -> dict:
        return self.expert.init(key)

    def act(self, params, plan: dict, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        del params
        return self.expert.act(plan, obs, key)


def collect_episodes(task: str, policy, num_episodes: int, seed: int, params=None,
                     episode_length: int | None = None, batch_size: int | None = None,
                     progress: bool = False) -> list[dict]:
    """Runs ``policy`` on ``task`` for ``num_episodes`` episodes, one per env, in compiled batches.

    Args:
      task: ``envs.make`` name.
      policy: object with ``name`` (str, identifies the compiled rollout),
        ``init(key) -> plan`` (a dict holding int32 ``mode``; -1 if unknown) and
        ``act(params, plan, obs [O], key) -> (action [A], plan)`` for one env
        (vmapped here).
      num_episodes, seed, episode_length, batch_size, progress: as in
        :func:`collect_expert_episodes`.
      params: pytree passed to ``policy.act`` unbatched (e.g. a trained agent);
        an argument of the compiled rollout, so new params do not recompile.

    Returns:
      episode dicts as :func:`collect_expert_episodes`.

    Raises:
      ValueError: ``num_episodes < 1``.
    """
    if num_episodes < 1:
        raise ValueError(f"data.num_episodes must be >= 1, got {num_episodes}")
    episode_length = episode_length or registry.make(task).episode_length
    batch_size = min(batch_size or registry.demo_batch_size(task), num_episodes)
    episodes: list[dict] = []
    key = jax.random.PRNGKey(seed)
    bar = tqdm.tqdm(total=num_episodes, desc=f"{task} {policy.name} episodes", unit="ep", disable=not progress)
    for start in range(0, num_episodes, batch_size):
        n = min(batch_size, num_episodes - start)
        key, k = jax.random.split(key)
        batch = jax.tree.map(np.asarray, _rollout(task, policy, n, episode_length)(params, k))
        for i in range(n):
            length = int(batch["length"][i])
            ep = {f: batch[f][i, :length] for f in
                  ("obs", "action", "reward", "next_obs", "terminated", "truncated")}
            ep.update(success=bool(batch["success"][i]), mode=np.int32(batch["mode"][i]),
                      observed_mode=np.int32(batch["observed_mode"][i]))
            episodes.append(ep)
        bar.update(n)
    bar.close()
    return episodes


def _make_rollout(env, policy, n, episode_length):
    vec = VecEnv(env, n, episode_length)
    act = jax.vmap(policy.act, in_axes=(None, 0, 0, 0))

    @jax.jit
    def run(params, key):
        k_reset, k_plan, k_loop = jax.random.split(key, 3)
        state = vec.reset(k_reset)
        plan = jax.vmap(policy.init)(jax.random.split(k_plan, n))

        def body(carry, k):
            state, plan = carry
            action, plan = act(params, plan, state.obs, jax.random.split(k, n))
            active = state.done == 0
            nxt = select(active, vec.step(state, action), state)  # ended episodes stay frozen
            step = {"obs": state.obs, "action": action, "reward": nxt.reward, "next_obs": nxt.obs,
                    "terminated": nxt.info["terminated"], "truncated": nxt.info["truncated"]}
            return (nxt, plan), step

        (state, plan), steps = jax.lax.scan(body, (state, plan), jax.random.split(k_loop, episode_length))
        steps = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), steps)
        return {**steps, "length": state.info["steps"], "success": state.info["success"],
                "mode": plan["mode"], "observed_mode": state.info["mode"]}

    return run


_CACHE: dict = {}  # compiled rollouts, keyed by task, policy, batch and episode length


def _rollout(task: str, policy, n: int, episode_length: int):
    cache_key = (task, policy.name, n, episode_length)
    if cache_key not in _CACHE:
        _CACHE[cache_key] = _make_rollout(registry.make(task), policy, n, episode_length)
    return _CACHE[cache_key]


def episode_stats(episodes: list[dict]) -> dict:
    """Expert statistics for a dataset card: success rate, mode split, lengths, failure kinds."""
    success = np.array([e["success"] for e in episodes])
    modes = np.array([e["mode"] for e in episodes])
    lengths = np.array([len(e["reward"]) for e in episodes])
    truncated = np.array([bool(e["truncated"][-1]) for e in episodes])
    stats = {
        "num_episodes": len(episodes),
        "num_steps": int(lengths.sum()),
        "success_rate": float(success.mean()),
        "mode_split": {str(m): float((modes == m).mean()) for m in np.unique(modes)},
        "success_by_mode": {str(m): float(success[modes == m].mean()) for m in np.unique(modes)},
        "failed_terminated": float((~success & ~truncated).mean()),
        "failed_timeout": float(truncated.mean()),
        "episode_length": {"mean": float(lengths.mean()), "min": int(lengths.min()),
                           "max": int(lengths.max())},
    }
    return stats


def dataset_name(task: str, num_episodes: int, seed: int, sloppy_prob: float | None = None) -> str:
    """Canonical name of a task's dataset, e.g. ``point_obstacle_n1000_s0``
    (``playground:CheetahRun`` -> ``playground_CheetahRun_n1000_s0``; an expert with
    another share of sloppy episodes: ``point_obstacle_n1000_s0_sloppy0.5``)."""
    name = f"{task.replace(':', '_')}_n{num_episodes}_s{seed}"
    return name if sloppy_prob is None else f"{name}_sloppy{float(sloppy_prob):g}"


def check_sloppy_prob(sloppy_prob: float | None) -> None:
    """Raises ValueError (naming ``data.sloppy_prob``) unless ``sloppy_prob`` is None or in [0, 1]."""
    if sloppy_prob is not None and not 0.0 <= sloppy_prob <= 1.0:
        raise ValueError(f"data.sloppy_prob must be in [0, 1] (or -1 for the expert's default), got {sloppy_prob}")


def expert_dataset(task: str, num_episodes: int, seed: int, data_dir: str, log=print,
                   progress: bool = True, sloppy_prob: float | None = None) -> tuple[dict, dict]:
    """Loads the expert dataset of ``task`` from ``data_dir``, building it first if missing or corrupt.

    ``sloppy_prob``: the expert's share of sloppy episodes (None: its default;
    see :func:`collect_expert_episodes`); it is part of the dataset's name.

    Returns:
      ``(steps, card)``: flat steps (``obs [N, O]``, ``action [N, A]``,
      ``reward``, ``next_obs``, ``terminated``, ``truncated``, ``episode_id``;
      see :func:`envs.dataset.load_dataset`) and the dataset card (expert
      success rate, mode split, episode lengths, seed).

    Raises:
      envs.dataset.DatasetMismatchError: the stored dataset's obs/action size
        does not match the task.
      ValueError: ``sloppy_prob`` outside [0, 1].
    """
    check_sloppy_prob(sloppy_prob)
    env = registry.make(task)
    name = dataset_name(task, num_episodes, seed, sloppy_prob)
    expert = registry.expert(task)

    def episodes_fn():
        log(f"building dataset {name}: {num_episodes} scripted-expert episodes (seed {seed})")
        return collect_expert_episodes(task, num_episodes, seed, progress=progress, sloppy_prob=sloppy_prob)

    metadata = {"task": task, "seed": seed, "expert": type(expert).__name__,
                "sloppy_prob": float(expert.sloppy_prob if sloppy_prob is None else sloppy_prob),
                "episode_length_limit": env.episode_length, "env_steps_per_s": registry.throughput(task)}
    return dataset_lib.load_or_build(
        name, _StatsEpisodes(episodes_fn, metadata), obs_size=int(env.observation_size),
        action_size=int(env.action_size), data_dir=data_dir, metadata=metadata, log=log)


class _StatsEpisodes:
    """Callable yielding the episodes, adding their statistics to ``metadata`` once generated."""

    def __init__(self, episodes_fn, metadata: dict):
        self.episodes_fn, self.metadata = episodes_fn, metadata

    def __call__(self):
        episodes = self.episodes_fn()
        self.metadata.update(episode_stats(episodes))
        print(f"  expert success {self.metadata['success_rate']:.3f}, "
              f"mode split {self.metadata['mode_split']}")
        return episodes

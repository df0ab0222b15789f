"""MuJoCo Playground environments behind the project's task interface.

``envs.make("playground:<Name>", **overrides)`` calls :func:`load`, which
builds ``mujoco_playground.registry.load(<Name>)`` with the pure-JAX MJX
backend (``impl='jax'``; Playground's DM Control configs default to Warp)
and wraps it in :class:`PlaygroundEnv`, so that it runs through
:class:`envs.wrappers.VecEnv`, the chunk executor, the replay buffer and the
agents unchanged:

* ``reset`` and ``step`` return states with identical dtypes and no weak
  types (Playground's ``ReacherEasy``, ``CheetahRun``, ``HopperHop``, ...
  differ between the two in ``reward``, ``done``, ``data.time`` or
  ``metrics``, which makes ``jax.jit`` compile ``step`` twice);
* ``info['terminated']`` (bool, mirrors ``done``: DM Control tasks end only
  on NaN physics) and ``info['success']`` (always False: these tasks have a
  dense reward and no success criterion);
* ``episode_length`` from the env config (1000 control steps for DM
  Control), used by ``VecEnv`` as the time limit (truncation);
* actions are clipped to ``[-1, 1]`` (the DM Control actuators' range);
* everything else (``mj_model``, ``mjx_model``, ``render``, ``dt``, ...) is
  delegated to the Playground env.

Only the DM Control Suite tasks load on a machine without internet: the
locomotion and manipulation suites need the MuJoCo Menagerie, which
Playground fetches with ``git clone`` on first use. Without it :func:`load`
raises :class:`PlaygroundUnavailableError` at once instead of trying.

Throughput of ``playground:CheetahRun`` through this adapter (``python
benchmarks/env_speed.py --env=playground:CheetahRun``, 2-core CPU): MJX
2,593 / 6,831 / 9,812 env steps/s at batch 1 / 256 / 4096; C MuJoCo
(``mujoco.rollout``, same model) 87,145 / 271,536 / 268,829.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from mujoco_playground._src import mjx_env

try:  # the suites' name lists, imported once
    from mujoco_playground import registry as _registry
    from mujoco_playground._src import dm_control_suite as _dm_control_suite
except ImportError as _err:  # pragma: no cover - playground is a hard dependency
    raise ImportError("envs.playground needs the `playground` package (import mujoco_playground)") from _err


class PlaygroundUnavailableError(RuntimeError):
    """A Playground environment that cannot be built on this machine (e.g. it needs the Menagerie)."""


def dm_control_names() -> list[str]:
    """The DM Control Suite names of Playground (all load offline), sorted."""
    return sorted(_dm_control_suite.ALL_ENVS)


def all_names() -> list[str]:
    """Every environment name in ``mujoco_playground.registry``, sorted."""
    return sorted(_registry.ALL_ENVS)


def _menagerie_available() -> bool:
    return mjx_env.MENAGERIE_PATH.exists()


def load(name: str, **overrides) -> PlaygroundEnv:
    """Builds Playground environment ``name`` with the pure-JAX MJX backend.

    Args:
      name: a name of ``mujoco_playground.registry`` (e.g. ``'CheetahRun'``,
        ``'CartpoleBalance'``), without the ``playground:`` prefix.
      **overrides: fields of the env's Playground config (e.g.
        ``episode_length=200``, ``ctrl_dt=0.02``); ``impl`` defaults to ``'jax'``.

    Returns:
      a :class:`PlaygroundEnv` (an ``MjxEnv``).

    Raises:
      ValueError: unknown name (lists the DM Control names) or an override
        that is not a field of the env's config.
      PlaygroundUnavailableError: a locomotion/manipulation environment while
        the MuJoCo Menagerie is missing (it cannot be downloaded here).
    """
    if name not in _registry.ALL_ENVS:
        raise ValueError(f"env.name: unknown MuJoCo Playground environment {name!r}. Available DM Control "
                         f"Suite tasks (they load offline): {dm_control_names()}; other Playground names: "
                         f"{sorted(set(all_names()) - set(dm_control_names()))[:8]} ...")
    if name not in _dm_control_suite.ALL_ENVS and not _menagerie_available():
        raise PlaygroundUnavailableError(
            f"env.name: MuJoCo Playground environment {name!r} needs the MuJoCo Menagerie robot models, "
            f"which Playground fetches with `git clone` on first use; this machine cannot download them "
            f"(expected at {mjx_env.MENAGERIE_PATH}). The DM Control Suite tasks work offline: "
            f"{', '.join('playground:' + n for n in dm_control_names())}.")
    defaults = _registry.get_default_config(name)
    unknown = sorted(set(overrides) - set(defaults.keys()))
    if unknown:
        raise ValueError(f"env overrides {unknown} are not fields of the {name!r} config; expected some "
                         f"of {sorted(defaults.keys())}")
    config_overrides = dict(overrides)
    if "impl" in defaults:
        config_overrides.setdefault("impl", "jax")
    try:
        env = _registry.load(name, config_overrides=config_overrides)
    except Exception as err:  # a git clone or an asset fetch that failed half way
        if name in _dm_control_suite.ALL_ENVS:
            raise
        raise PlaygroundUnavailableError(
            f"env.name: MuJoCo Playground environment {name!r} could not be built "
            f"({type(err).__name__}: {err}). The DM Control Suite tasks work offline: "
            f"{', '.join(dm_control_names())}.") from err
    return PlaygroundEnv(env, name)


def _strong(x, like=None):
    """``x`` as a strongly typed array (dtype of ``like`` if given, else its own)."""
    x = jnp.asarray(x)
    return jax.lax.convert_element_type(x, x.dtype if like is None else like.dtype)


def _cast_dict(values: dict, spec: dict) -> dict:
    """Casts the entries of ``values`` named in ``spec``; other entries pass unchanged."""
    return {k: (jax.tree.map(_strong, v, spec[k]) if k in spec else v) for k, v in values.items()}


class PlaygroundEnv(mjx_env.MjxEnv):
    """A Playground env with consistent dtypes, ``terminated``/``success`` info and ``episode_length``.

    ``reset(rng) -> State`` and ``step(state, action [A]) -> State`` act on
    one environment (vmap for a batch, as :class:`envs.wrappers.VecEnv`
    does). ``state.obs`` is float32 ``[O]``, ``reward`` and ``done`` float32
    scalars, ``info['terminated']`` and ``info['success']`` bool scalars.
    Every field has the dtype that Playground's ``step`` produces, without
    weak types, in both ``reset`` and ``step``: ``step`` traces once.

    Args:
      env: the Playground ``MjxEnv``.
      name: its registry name (for messages).
    """

    def __init__(self, env: mjx_env.MjxEnv, name: str):  # no super().__init__: config is the env's
        self.env, self.name = env, name
        self._config = env._config
        self._ctrl_dt, self._sim_dt = env.dt, env.sim_dt
        self._spec = None

    def __getattr__(self, attr):
        if attr in ("env", "__setstate__"):  # not yet set (unpickling): no recursion
            raise AttributeError(attr)
        return getattr(self.env, attr)

    def __repr__(self) -> str:
        return f"PlaygroundEnv({self.name}, impl={self.env.mjx_model.impl.value})"

    # --- the task interface -------------------------------------------------------------------

    @property
    def episode_length(self) -> int:
        """Default time limit in control steps (the env config's ``episode_length``)."""
        return int(self.env._config.episode_length)

    @property
    def action_size(self) -> int:
        return int(self.env.action_size)

    @property
    def observation_size(self) -> int:
        size = self.env.observation_size
        if not isinstance(size, int):
            raise TypeError(f"{self.name}: dict observations {size} are not supported (flat obs only)")
        return int(size)

    def _step_spec(self) -> mjx_env.State:
        """Shapes and dtypes of Playground's ``step`` output (traced once, not compiled)."""
        if self._spec is None:
            def reset_step(key):
                state = self.env.reset(key)
                return self.env.step(state, jnp.zeros(self.env.action_size))

            self._spec = jax.eval_shape(reset_step, jax.random.PRNGKey(0))
        return self._spec

    def _canonical(self, state: mjx_env.State) -> mjx_env.State:
        spec = self._step_spec()
        try:
            return state.replace(
                data=jax.tree.map(_strong, state.data, spec.data),
                obs=jax.tree.map(_strong, state.obs, spec.obs),
                reward=_strong(state.reward, spec.reward), done=_strong(state.done, spec.done),
                metrics=_cast_dict(state.metrics, spec.metrics), info=_cast_dict(state.info, spec.info))
        except ValueError as err:  # tree structures differ between reset and step
            raise ValueError(f"{self.name}: reset and step states have different structures ({err})") from err

    def _with_flags(self, state: mjx_env.State) -> mjx_env.State:
        info = {**state.info, "terminated": state.done > 0, "success": jnp.zeros((), bool)}
        return state.replace(info=info)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        """Playground's reset with step's dtypes; ``info`` gains ``terminated``/``success`` (False)."""
        return self._with_flags(self._canonical(self.env.reset(rng)))

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        """One control step with ``action [A]`` clipped to ``[-1, 1]``; ``terminated`` mirrors ``done``."""
        action = jnp.clip(action, -1.0, 1.0)
        # Playground tasks write metrics into the dict they are given: hand them a copy
        inner = state.replace(metrics=dict(state.metrics), info=dict(state.info))
        return self._with_flags(self._canonical(self.env.step(inner, action)))

    # --- delegated MjxEnv interface -------------------------------------------------------------

    @property
    def xml_path(self) -> str:
        return self.env.xml_path

    @property
    def mj_model(self):
        return self.env.mj_model

    @property
    def mjx_model(self):
        return self.env.mjx_model

    @property
    def unwrapped(self) -> mjx_env.MjxEnv:
        return self.env.unwrapped

    def render(self, trajectory, *args, **kwargs):
        """Renders a list of (unbatched) States with Playground's renderer; see ``MjxEnv.render``."""
        return self.env.render(trajectory, *args, **kwargs)

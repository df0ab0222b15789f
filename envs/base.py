"""Shared plumbing of the project's own MJX tasks (model from generated XML, Playground properties)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env


NO_MODE = -1  # ``info['mode']`` before the episode has shown which way it goes


def no_mode() -> jax.Array:
    """The initial ``info['mode']``: int32 :data:`NO_MODE`."""
    return jnp.full((), NO_MODE, jnp.int32)


def settle_mode(mode: jax.Array, decided: jax.Array, value: jax.Array) -> jax.Array:
    """The episode's mode after one more step: the first decided ``value`` is kept for good.

    Args:
      mode: int32 scalar, the mode so far (:data:`NO_MODE` while undecided).
      decided: bool scalar, whether this step shows the mode.
      value: int scalar, the mode this step shows (read only when ``decided``).

    Returns:
      int32 scalar.
    """
    return jnp.where((mode == NO_MODE) & decided, value, mode).astype(jnp.int32)


class XmlTask(mjx_env.MjxEnv):
    """An ``MjxEnv`` whose model is built from an XML string written by the task module.

    Compiles ``xml`` with C MuJoCo, sets the physics step to ``config.sim_dt``
    (seconds) and puts the model on the device with the pure-JAX MJX backend.
    Subclasses implement ``reset`` and ``step``.

    Args:
      xml: MJCF model text.
      name: task name (``xml_path`` reads ``<generated:name>``).
      action_size: action dimension A (actions live in ``[-1, 1]^A``).
      config: task config with ``ctrl_dt``, ``sim_dt`` (s) and ``episode_length``
        (default time limit in control steps, applied by :class:`envs.wrappers.VecEnv`).
      config_overrides: updates to ``config``.

    Every task classifies its episodes into the modes of its scripted expert
    (``MODES``, their names in mode order): ``state.info['mode']`` is int32
    :data:`NO_MODE` until the episode has shown which way it goes, then the
    index of that mode for the rest of the episode (:func:`settle_mode`).
    """

    MODES: tuple[str, ...] = ()

    def __init__(self, xml: str, name: str, action_size: int, config: config_dict.ConfigDict,
                 config_overrides=None):
        super().__init__(config, config_overrides)
        self._mj_model = mujoco.MjModel.from_xml_string(xml)
        self._mj_model.opt.timestep = self._config.sim_dt
        self._mjx_model = mjx.put_model(self._mj_model, impl="jax")
        self._name, self._action_size = name, int(action_size)

    @property
    def xml_path(self) -> str:
        return f"<generated:{self._name}>"

    @property
    def action_size(self) -> int:
        return self._action_size

    @property
    def mj_model(self) -> mujoco.MjModel:
        return self._mj_model

    @property
    def mjx_model(self) -> mjx.Model:
        return self._mjx_model

    @property
    def episode_length(self) -> int:
        """Default time limit in control steps, used by :class:`envs.wrappers.VecEnv`."""
        return int(self._config.episode_length)

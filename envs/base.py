"""Shared plumbing of the project's own MJX tasks (model from generated XML, Playground properties)."""

from __future__ import annotations

import mujoco
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env


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
    """

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

"""Orbax checkpoints of an agent and its normaliser, with config checks on restore.

A checkpoint directory holds numbered steps (orbax ``CheckpointManager``),
each with two items: ``state`` (the agent's arrays and the normaliser, as a
state dict) and ``meta`` (JSON: the agent's config, the phase, obs/action
sizes). Restoring compares ``meta`` and every array shape with what the
current config builds, and names the first mismatch.
"""

from __future__ import annotations

import os

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for another config (names the field and both values)."""


def _manager(directory: str, max_to_keep: int | None = None) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_handlers=handlers)


def _to_state(tree) -> dict:
    state = flax.serialization.to_state_dict(tree)
    return jax.tree.map(np.asarray, state)


class Checkpointer:
    """Saves ``{'agent': agent, 'normalizer': normalizer}`` under ``run_dir/checkpoints``."""

    def __init__(self, directory: str, max_to_keep: int | None = None):
        self.directory = directory
        self.manager = _manager(directory, max_to_keep)

    def save(self, step: int, agent, normalizer, meta: dict) -> None:
        """Writes step ``step`` and waits for it to be complete on disk."""
        state = {"agent": _to_state(agent), "normalizer": _to_state(normalizer)}
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _compare_meta(found: dict, expected: dict, prefix: str = "") -> None:
    for key, value in expected.items():
        if key not in found:
            raise CheckpointMismatchError(f"checkpoint has no field {prefix}{key} (config expects {value!r})")
        if isinstance(value, dict):
            _compare_meta(found[key], value, f"{prefix}{key}.")
        elif _plain(found[key]) != _plain(value):
            raise CheckpointMismatchError(
                f"checkpoint was written with {prefix}{key}={found[key]!r}, config has {value!r}")


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def restore(directory: str, agent_template, normalizer_template, expected_meta: dict,
            step: int | None = None):
    """Restores ``(agent, normalizer, meta)`` from ``directory`` (latest step if None).

    Args:
      directory: a checkpoints folder (``<run>/checkpoints``).
      agent_template, normalizer_template: objects built from the current
        config; they give the tree structure, shapes and static fields.
      expected_meta: fields that must equal the stored ``meta`` (e.g. the
        actor's architecture, obs/action sizes).

    Raises:
      FileNotFoundError: no checkpoint in ``directory``.
      CheckpointMismatchError: a meta field or an array shape differs (named).
      ValueError: the checkpoint cannot be read (corrupt or partial).
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"pretrained: no checkpoint folder at {directory!r}")
    manager = _manager(directory)
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"pretrained: {directory!r} holds no finished checkpoint")
    try:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as err:  # orbax raises many types for unreadable files
        raise ValueError(f"checkpoint {directory!r} step {step} is unreadable ({err}); delete it or "
                         "point `pretrained` at another run") from err
    _compare_meta(meta, expected_meta)
    template = {"agent": _to_state(agent_template), "normalizer": _to_state(normalizer_template)}
    stored = manager.item_metadata(step)["state"]
    _compare_shapes(stored, template)
    try:
        state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(template)))["state"]
    except Exception as err:
        raise ValueError(f"checkpoint {directory!r} step {step} could not be restored ({err})") from err
    manager.close()
    agent = flax.serialization.from_state_dict(agent_template, state["agent"])
    normalizer = flax.serialization.from_state_dict(normalizer_template, state["normalizer"])
    return agent, normalizer, meta


def _compare_shapes(stored, template, path: str = "") -> None:
    if isinstance(template, dict):
        for key, sub in template.items():
            if key not in stored:
                raise CheckpointMismatchError(f"checkpoint lacks {path}{key}")
            _compare_shapes(stored[key], sub, f"{path}{key}/")
        return
    shape = tuple(getattr(stored, "shape", ()))
    if shape != tuple(np.shape(template)):
        raise CheckpointMismatchError(
            f"checkpoint array {path.rstrip('/')} has shape {shape}, config builds {tuple(np.shape(template))}")

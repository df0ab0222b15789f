"""Orbax checkpoints: the agent and its normaliser (``Checkpointer``), and a run's whole state (``RunState``).

An agent checkpoint directory (``<run>/checkpoints``) holds numbered steps
(orbax ``CheckpointManager``), each with two items: ``state`` (the agent's
arrays and the normaliser, as a state dict) and ``meta`` (JSON: the agent's
config, the phase, obs/action sizes). Restoring compares ``meta`` and every
array shape with what the current config builds, and names the first
mismatch. Step 0 (the BC agent) is never deleted by ``max_to_keep``.

A run-state directory (``<run>/resume``) holds what a killed run needs to go
on exactly where it stopped (:class:`RunState`): any pytree of arrays (agent,
optimiser states, replay buffer, env states, PRNG keys) plus JSON progress.
Orbax writes every step to a temporary folder and renames it when complete,
so a kill mid-write leaves the previous step intact.
"""

from __future__ import annotations

import os

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for another config (names the field and both values)."""


def _manager(directory: str, max_to_keep: int | None = None, keep: tuple[int, ...] = ()) -> ocp.CheckpointManager:
    """An orbax manager keeping the latest ``max_to_keep`` steps (all if None) and the steps in ``keep``."""
    policy = None
    if max_to_keep is not None:
        from orbax.checkpoint.checkpoint_managers import preservation_policy as pp
        policy = pp.AnyPreservationPolicy([pp.LatestN(max_to_keep), pp.CustomSteps(list(keep))])
    options = ocp.CheckpointManagerOptions(create=True, preservation_policy=policy, cleanup_tmp_directories=True)
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_handlers=handlers)


def _write(manager: ocp.CheckpointManager, step: int, state: dict, meta: dict) -> None:
    """Step ``step``: the arrays ``state`` and the JSON ``meta``, replacing a step of that number left by a killed
    run (a resumed run writes the same step again), complete on disk when this returns."""
    if step in manager.all_steps():
        manager.delete(step)
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                 force=True)
    manager.wait_until_finished()


def _to_state(tree) -> dict:
    state = flax.serialization.to_state_dict(tree)
    return jax.tree.map(np.asarray, state)


class Checkpointer:
    """Saves ``{'agent': agent, 'normalizer': normalizer}`` under ``run_dir/checkpoints``.

    Keeps the latest ``max_to_keep`` steps (all if None) and always step 0,
    the BC agent that ``--config.pretrained`` restores.
    """

    def __init__(self, directory: str, max_to_keep: int | None = None):
        self.directory = directory
        self.manager = _manager(directory, max_to_keep, keep=(0,))

    def save(self, step: int, agent, normalizer, meta: dict) -> None:
        """Writes step ``step`` (replacing one left by a killed run) and waits for it to be complete on disk."""
        _write(self.manager, step, {"agent": _to_state(agent), "normalizer": _to_state(normalizer)}, meta)

    def close(self) -> None:
        self.manager.close()


def first_difference(old: dict, new: dict, skip: tuple[str, ...] = (), new_keys_only: bool = False,
                     prefix: str = ""):
    """The first field where two nested dicts differ: ``(dotted path, old value, new value)``, or None.

    Lists and tuples with the same items are equal (JSON turns tuples into
    lists); a field one side lacks reads ``'<absent>'``. ``skip``: top-level
    fields left out; ``new_keys_only``: only the fields of ``new`` are compared.
    """
    keys = new if new_keys_only else sorted(set(old) | set(new))
    for key in keys:
        if not prefix and key in skip:
            continue
        was, now = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(was, dict) and isinstance(now, dict):
            found = first_difference(was, now, skip, new_keys_only, f"{prefix}{key}.")
            if found:
                return found
        elif _plain(was) != _plain(now):
            return f"{prefix}{key}", was, now
    return None


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _compare_meta(found: dict, expected: dict) -> None:
    difference = first_difference(found, expected, new_keys_only=True)
    if difference:
        field, was, now = difference
        if was == "<absent>":
            raise CheckpointMismatchError(f"checkpoint has no field {field} (config expects {now!r})")
        raise CheckpointMismatchError(f"checkpoint was written with {field}={was!r}, config has {now!r}")


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


def _leaves(tree) -> tuple[list[str], list]:
    """``(paths, leaves)`` of a pytree, in flattening order (paths as ``jax.tree_util.keystr``)."""
    with_paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [jax.tree_util.keystr(p) for p, _ in with_paths], [x for _, x in with_paths]


class RunState:
    """A run's whole training state at the end of a compiled call, for resuming after a kill.

    Saves any pytree of arrays (the agent with its optimiser states, replay
    buffers, env states, PRNG keys) as numbered leaves, next to JSON
    ``progress`` (phase, counters, the summary so far, the metrics rows
    written). Keeps the last ``max_to_keep`` steps so that an unreadable
    latest step falls back to the one before.

    Args:
      directory: ``<run>/resume``.
      max_to_keep: steps kept (>= 2 for the fallback).
    """

    def __init__(self, directory: str, max_to_keep: int = 2):
        self.directory = directory
        self.manager = _manager(directory, max_to_keep)
        self._found = None

    def save(self, step: int, tree, progress: dict) -> None:
        """Writes ``tree`` (its leaves; the structure comes from the template at restore) and ``progress``."""
        paths, leaves = _leaves(tree)
        # orbax cannot write empty arrays: those are rebuilt from the template's shape at restore
        state = {f"{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves) if np.size(leaf)}
        meta = {**progress, "_leaves": [[p, list(np.shape(x)), str(np.asarray(x).dtype)]
                                        for p, x in zip(paths, leaves)]}
        _write(self.manager, step, state, meta)

    def latest(self, warn=print) -> dict | None:
        """The progress of the newest readable step (None if there is none).

        A step that cannot be read (corrupt or partial files) is skipped with
        a warning through ``warn``, and the step before it is used.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                out = self.manager.restore(step, args=ocp.args.Composite(
                    meta=ocp.args.JsonRestore(), state=ocp.args.StandardRestore()))
                meta, state = dict(out["meta"]), dict(out["state"])
                listed = sum(1 for _, shape, _ in meta["_leaves"] if np.prod(shape, dtype=int))
                if len(state) != listed:
                    raise ValueError(f"{len(state)} arrays stored, {listed} listed")
            except Exception as err:  # orbax raises many types for unreadable files
                warn(f"warning: resume checkpoint {self.directory} step {step} is unreadable "
                     f"({type(err).__name__}: {str(err)[:200]}); falling back to the one before")
                continue
            self._found = (step, meta, state)
            return {k: v for k, v in meta.items() if k != "_leaves"}
        return None

    def restore(self, template):
        """The tree of the step found by :meth:`latest`, with ``template``'s structure.

        Raises:
          CheckpointMismatchError: the number, shape or dtype of the stored
            arrays differs from the template's (names the first leaf that does).
        """
        _, meta, state = self._found
        paths, leaves = _leaves(template)
        if len(leaves) != len(meta["_leaves"]):
            raise CheckpointMismatchError(f"resume checkpoint holds {len(meta['_leaves'])} arrays, the config "
                                          f"builds {len(leaves)} (another agent or config)")
        out = []
        for i, (path, leaf) in enumerate(zip(paths, leaves)):
            name = f"{i:05d}"
            stored = np.asarray(state[name]) if name in state else np.zeros(meta["_leaves"][i][1],
                                                                            meta["_leaves"][i][2])
            if stored.shape != tuple(leaf.shape) or stored.dtype != np.dtype(leaf.dtype):
                raise CheckpointMismatchError(
                    f"resume checkpoint array {meta['_leaves'][i][0]} is {stored.dtype}{list(stored.shape)}, "
                    f"the config builds {path} as {np.dtype(leaf.dtype)}{list(leaf.shape)}")
            out.append(stored)
        return jax.tree.unflatten(jax.tree.structure(template), out)

    def close(self) -> None:
        self.manager.close()

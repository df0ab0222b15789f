"""Demonstration datasets stored as TFDS ``array_record`` files, read and written without TensorFlow.

On disk, dataset ``name`` is the directory ``<data_dir>/<name>/`` holding TFDS's ``dataset_info.json``
and ``features.json``, the ``array_record`` shard(s) (one record per episode, in the order they were
generated) and ``card.json`` (user metadata plus ``num_episodes`` and ``num_steps``). The directory is
assembled in a hidden staging directory and renamed into place only when complete, so an interrupted
build leaves no half-written dataset behind; anything damaged afterwards is reported as
:class:`DatasetCorruptError`, which :func:`load_or_build` repairs by rebuilding.

An episode is a dict of numpy arrays, ``T`` steps long (``T`` varies per episode):
``obs`` float32 [T, O], ``action`` float32 [T, A], ``reward`` float32 [T], ``next_obs`` float32 [T, O],
``terminated`` bool [T], ``truncated`` bool [T], ``success`` bool scalar and ``mode`` int32 scalar
(the scripted expert's mode, -1 if unknown).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from array_record.python import array_record_module

CARD_FILE = "card.json"
_SPLIT = "train"
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_EPISODE_FIELDS = {"success": np.bool_, "mode": np.int32}
_COUNT_KEYS = ("num_episodes", "num_steps")


class DatasetMismatchError(ValueError):
    """The stored dataset's obs/action sizes differ from the ones the caller asked for."""


class DatasetCorruptError(ValueError):
    """The stored dataset is incomplete, truncated or fails to decode."""


def _step_fields(obs_size: int, action_size: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Per-step fields: name -> (shape of a single step, dtype)."""
    return {
        "obs": ((obs_size,), np.float32),
        "action": ((action_size,), np.float32),
        "reward": ((), np.float32),
        "next_obs": ((obs_size,), np.float32),
        "terminated": ((), np.bool_),
        "truncated": ((), np.bool_),
    }


class _LocalDatasetInfo(tfds.core.DatasetInfo):
    """DatasetInfo that skips TFDS's GCS look-up, which leaks an empty temp dir per builder."""

    def initialize_from_bucket(self) -> None:
        pass


@dataclasses.dataclass(eq=False)
class DemoConfig(tfds.core.BuilderConfig):
    """TFDS builder config carrying one dataset's observation and action sizes."""

    obs_size: int = 0
    action_size: int = 0


class Demonstrations(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """TFDS builder writing one record per episode, in generation order (shuffling disabled)."""

    VERSION = tfds.core.Version("1.0.0")
    # No source directory with checksums/metadata files. Also, TFDS 4.9.10's lookup of it needs the
    # `importlib_resources` backport (not installed on Python >= 3.9) for builders defined in a package.
    code_path = None

    def __init__(self, *, episodes_fn: Callable[[], Iterable[dict]], **kwargs):
        self._episodes_fn = episodes_fn
        self.num_steps = 0
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        features = {
            key: tfds.features.Tensor(shape=(None, *shape), dtype=dtype)
            for key, (shape, dtype) in _step_fields(config.obs_size, config.action_size).items()
        }
        features |= {key: tfds.features.Scalar(dtype=dtype) for key, dtype in _EPISODE_FIELDS.items()}
        return _LocalDatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(features), disable_shuffling=True
        )

    def _split_generators(self, dl_manager):
        return {_SPLIT: self._generate_examples()}

    def _generate_examples(self) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        episodes = tqdm.tqdm(
            self._episodes_fn(), desc=f"Building {config.name}", unit=" episodes", leave=False
        )
        index = -1
        for index, episode in enumerate(episodes):
            example = _to_example(index, episode, config.obs_size, config.action_size)
            self.num_steps += len(example["reward"])
            yield index, example
        if index < 0:
            raise ValueError(f"episodes_fn yielded no episodes for dataset {config.name!r}")

    # TFDS prints "Downloading and preparing..." / "...prepared to ..." to stdout; we stay quiet.
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass


def _to_example(index: int, episode: dict, obs_size: int, action_size: int) -> dict:
    """Checks one episode's fields and shapes and casts them to the stored dtypes."""
    fields = _step_fields(obs_size, action_size)
    missing = (fields.keys() | _EPISODE_FIELDS.keys()) - episode.keys()
    if missing:
        raise ValueError(f"episode {index} lacks field(s) {sorted(missing)}")
    length = len(episode["reward"])
    example = {}
    for key, (shape, dtype) in fields.items():
        value = np.asarray(episode[key], dtype=dtype)
        if value.shape != (length, *shape):
            raise ValueError(
                f"episode {index}: {key} has shape {value.shape}, expected {(length, *shape)} "
                f"(T={length} from reward, obs_size={obs_size}, action_size={action_size})"
            )
        example[key] = value
    for key, dtype in _EPISODE_FIELDS.items():
        example[key] = np.asarray(episode[key], dtype=dtype)
        if example[key].shape != ():
            raise ValueError(f"episode {index}: {key} must be a scalar, got shape {example[key].shape}")
    return example


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
    """Silences TFDS's absl log lines and its progress bars (re-enabled afterwards) in the block."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    tfds.disable_progress_bar()
    try:
        yield
    finally:
        tfds.enable_progress_bar()
        absl_logger.setLevel(level)


def _dataset_dir(name: str, data_dir: str) -> str:
    """The directory of dataset ``name``; ValueError if the name is not a plain file name."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"dataset name {name!r} must match {_NAME_RE.pattern} (letters, digits, _ . -)")
    return os.path.join(data_dir, name)


def _card_json(name: str, card: dict) -> str:
    """``card`` as JSON text; ValueError if it is not JSON-serialisable."""
    try:
        return json.dumps(card, indent=2)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata for dataset {name!r} is not JSON-serialisable: {e}") from e


def build_dataset(
    name: str,
    episodes_fn: Callable[[], Iterable[dict]],
    *,
    obs_size: int,
    action_size: int,
    data_dir: str,
    metadata: dict | None = None,
) -> str:
    """Writes the episodes yielded by ``episodes_fn()`` as dataset ``name`` under ``data_dir``.

    Args:
      name: dataset name, e.g. ``'point_obstacle_n1000_s0'`` (letters, digits, ``_ . -``; it is also
        the TFDS config name and the directory name).
      episodes_fn: called once; yields episode dicts (see the module docstring for fields, shapes and
        dtypes). Values are cast to the stored dtypes.
      obs_size: O, the observation size.
      action_size: A, the action size.
      data_dir: parent directory; created if absent.
      metadata: JSON-serialisable dict (expert success rate, mode split, seed, ...) stored as
        ``card.json`` together with ``num_episodes`` and ``num_steps`` counted from the data (these
        override same-named keys). It is read after ``episodes_fn()`` has run, so ``episodes_fn`` may
        add statistics to it.

    Returns:
      The dataset directory ``<data_dir>/<name>``. It appears only once complete: the data is written
      to a hidden staging directory in ``data_dir`` that is renamed into place at the end.

    Raises:
      ValueError: bad name, metadata not JSON-serialisable, an episode with missing fields or wrong
        shapes, or no episodes at all.
      FileExistsError: the dataset directory already exists.
    """
    final_dir = _dataset_dir(name, data_dir)
    metadata = {} if metadata is None else metadata
    _card_json(name, metadata)  # fail before the (possibly slow) episodes_fn
    if os.path.exists(final_dir):
        raise FileExistsError(f"dataset directory {final_dir} already exists; delete it to rebuild")

    os.makedirs(data_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.incomplete-", dir=data_dir)
    try:
        with _quiet_tfds():
            builder = Demonstrations(
                episodes_fn=episodes_fn,
                config=DemoConfig(name=name, obs_size=obs_size, action_size=action_size),
                data_dir=os.path.join(staging, "tfds"),
                file_format="array_record",
            )
            builder.download_and_prepare(download_dir=os.path.join(staging, "downloads"))
        num_episodes = builder.info.splits[_SPLIT].num_examples
        counts = {"num_episodes": num_episodes, "num_steps": builder.num_steps}
        with open(os.path.join(builder.data_dir, CARD_FILE), "w") as f:
            f.write(_card_json(name, metadata | counts))
        try:
            os.rename(builder.data_dir, final_dir)
        except OSError:
            if os.path.exists(final_dir):  # another process (a sweep's parallel job) finished it first
                raise FileExistsError(f"dataset directory {final_dir} was built by another process meanwhile")
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final_dir


def _corrupt(name: str, directory: str, file: str, problem: str) -> DatasetCorruptError:
    """The error for dataset ``name`` (in ``directory``) whose ``file`` has ``problem``, with the fix."""
    return DatasetCorruptError(
        f"dataset {name!r} is corrupt: {file} in {directory}: {problem}. Delete {directory} and build it "
        "again, or use load_or_build, which rebuilds it automatically."
    )


@contextlib.contextmanager
def _corrupt_on_error(name: str, directory: str, file: str) -> Iterator[None]:
    """Re-raises any error in the block as :func:`_corrupt`."""
    try:
        yield
    except Exception as e:
        raise _corrupt(name, directory, file, f"{type(e).__name__}: {e}") from e


def load_dataset(name: str, *, data_dir: str, obs_size: int, action_size: int) -> tuple[dict, dict]:
    """Reads every episode of dataset ``name`` back, concatenated in build order.

    Args:
      name: dataset name as given to :func:`build_dataset`.
      data_dir: parent directory of the dataset directory.
      obs_size: O the caller expects; must equal the stored one.
      action_size: A the caller expects; must equal the stored one.

    Returns:
      ``(steps, card)``. ``steps`` has N = total steps over all episodes: ``obs`` float32 [N, O],
      ``action`` float32 [N, A], ``reward`` float32 [N], ``next_obs`` float32 [N, O], ``terminated`` bool
      [N], ``truncated`` bool [N], ``episode_id`` int32 [N] (0-based episode index), and each step's
      episode-level ``success`` bool [N] and ``mode`` int32 [N]. ``card`` is the build metadata plus
      ``num_episodes`` and ``num_steps``.

    Raises:
      ValueError: ``name`` is not a valid dataset name.
      FileNotFoundError: the dataset directory does not exist.
      DatasetMismatchError: the stored obs or action size differs from ``obs_size`` / ``action_size``.
      DatasetCorruptError: a file is missing, truncated or fails to decode, or the card disagrees with
        the data; the message names the file and how to fix it.
    """
    path = _dataset_dir(name, data_dir)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"dataset {name!r} not found: no directory {path}")

    with _corrupt_on_error(name, path, "dataset_info.json/features.json"), _quiet_tfds():
        info = tfds.builder_from_directory(path).info
        features, split = info.features, info.splits[_SPLIT]
        stored = {"obs": features["obs"].shape[-1], "action": features["action"].shape[-1]}
    for field, expected in (("obs", obs_size), ("action", action_size)):
        if stored[field] != expected:
            raise DatasetMismatchError(
                f"dataset {name!r} at {path} stores {field} of size {stored[field]}, but {field}_size="
                f"{expected} was requested: this dataset does not fit the task. Use a dataset built for "
                f"this task (another name), or delete {path} to rebuild it with {field}_size={expected}."
            )
    with _corrupt_on_error(name, path, CARD_FILE), open(os.path.join(path, CARD_FILE)) as f:
        card = json.load(f)

    episodes = []
    for shard in split.filepaths:
        with _corrupt_on_error(name, path, shard.name):
            reader = array_record_module.ArrayRecordReader(os.fspath(shard))
            try:
                records = reader.read_all()
            finally:
                reader.close()
            episodes += [features.deserialize_example_np(record) for record in records]

    lengths = np.array([len(episode["reward"]) for episode in episodes])
    found = {"num_episodes": len(episodes), "num_steps": int(lengths.sum())}
    if any(card.get(key) != found[key] for key in _COUNT_KEYS):
        claimed = {key: card.get(key) for key in _COUNT_KEYS}
        raise _corrupt(name, path, CARD_FILE, f"it says {claimed} but the data holds {found}")

    step_keys = _step_fields(obs_size, action_size).keys()
    steps = {key: np.concatenate([episode[key] for episode in episodes]) for key in step_keys}
    steps["episode_id"] = np.repeat(np.arange(len(episodes), dtype=np.int32), lengths)
    for key, dtype in _EPISODE_FIELDS.items():
        steps[key] = np.repeat(np.array([episode[key] for episode in episodes], dtype=dtype), lengths)
    return steps, card


def load_or_build(
    name: str,
    episodes_fn: Callable[[], Iterable[dict]],
    *,
    obs_size: int,
    action_size: int,
    data_dir: str,
    metadata: dict | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict, dict]:
    """Loads dataset ``name``, building it first if it is missing and rebuilding it if it is corrupt.

    Arguments are those of :func:`build_dataset` and :func:`load_dataset`. ``episodes_fn`` is called
    only when building. A corrupt dataset is reported to ``log`` (one line: the problem and the action
    taken), its directory (and nothing else) is deleted and it is rebuilt.

    Returns:
      ``(steps, card)`` as from :func:`load_dataset`.

    Raises:
      DatasetMismatchError: the stored dataset has other obs/action sizes; not fixed automatically, as
        the requested dataset does not fit the task.
      ValueError: as :func:`build_dataset` when building.
    """
    kwargs = dict(data_dir=data_dir, obs_size=obs_size, action_size=action_size)
    try:
        return load_dataset(name, **kwargs)
    except FileNotFoundError:
        pass
    except DatasetCorruptError as e:
        log(f"{e} Deleting {_dataset_dir(name, data_dir)} and rebuilding it now.")
        shutil.rmtree(_dataset_dir(name, data_dir))
    try:
        build_dataset(name, episodes_fn, metadata=metadata, **kwargs)
    except FileExistsError:  # built by a concurrent job with the same name (hence the same data)
        log(f"dataset {name} was built by another process meanwhile; loading that copy")
    return load_dataset(name, **kwargs)

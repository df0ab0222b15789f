"""Tests for envs.dataset: round trip, size mismatch, corruption recovery, load_or_build caching."""

import json
import os

import numpy as np
import pytest

from envs import dataset

O, A = 6, 2
NAME = "toy_n12_s0"
STEP_KEYS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


def make_episodes(num_episodes=12, seed=0):
    """Synthetic episodes of 5-30 steps with random values."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(num_episodes):
        t = int(rng.integers(5, 31))
        episodes.append(
            dict(
                obs=rng.standard_normal((t, O), dtype=np.float32),
                action=rng.uniform(-1, 1, (t, A)).astype(np.float32),
                reward=rng.standard_normal(t, dtype=np.float32),
                next_obs=rng.standard_normal((t, O), dtype=np.float32),
                terminated=rng.random(t) < 0.1,
                truncated=np.arange(t) == t - 1,
                success=bool(rng.random() < 0.5),
                mode=np.int32(rng.integers(-1, 3)),
            )
        )
    return episodes


EPISODES = make_episodes()


class CountingEpisodes:
    """episodes_fn that counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return iter(EPISODES)


def assert_matches_episodes(steps):
    lengths = [len(e["reward"]) for e in EPISODES]
    for key in STEP_KEYS:
        np.testing.assert_array_equal(steps[key], np.concatenate([e[key] for e in EPISODES]), err_msg=key)
        assert steps[key].dtype == EPISODES[0][key].dtype, key
    np.testing.assert_array_equal(steps["episode_id"], np.repeat(np.arange(len(EPISODES)), lengths))
    assert steps["episode_id"].dtype == np.int32
    for key in ("success", "mode"):
        np.testing.assert_array_equal(steps[key], np.repeat([e[key] for e in EPISODES], lengths), err_msg=key)


def build(data_dir, **metadata):
    return dataset.build_dataset(
        NAME, lambda: EPISODES, obs_size=O, action_size=A, data_dir=str(data_dir), metadata=metadata
    )


def load(data_dir, obs_size=O, action_size=A):
    return dataset.load_dataset(NAME, data_dir=str(data_dir), obs_size=obs_size, action_size=action_size)


def load_or_build(data_dir, episodes_fn, logs):
    return dataset.load_or_build(
        NAME, episodes_fn, obs_size=O, action_size=A, data_dir=str(data_dir), log=logs.append
    )


def test_round_trip(tmp_path):
    path = build(tmp_path, seed=0, success_rate=0.5, mode_split={"0": 0.25, "1": 0.75})
    assert path == os.path.join(tmp_path, NAME)
    assert os.listdir(tmp_path) == [NAME]  # no staging directory left behind

    steps, card = load(tmp_path)

    assert_matches_episodes(steps)
    assert card == {
        "seed": 0,
        "success_rate": 0.5,
        "mode_split": {"0": 0.25, "1": 0.75},
        "num_episodes": len(EPISODES),
        "num_steps": sum(len(e["reward"]) for e in EPISODES),
    }
    with open(os.path.join(path, dataset.CARD_FILE)) as f:
        assert json.load(f) == card


@pytest.mark.parametrize("field", ["obs", "action"])
def test_size_mismatch_names_field_and_sizes(tmp_path, field):
    build(tmp_path)
    stored = {"obs": O, "action": A}[field]
    wrong = stored + 3
    sizes = {"obs_size": O, "action_size": A} | {f"{field}_size": wrong}

    with pytest.raises(dataset.DatasetMismatchError, match=rf"\b{field}\b") as info:
        load(tmp_path, **sizes)
    assert str(stored) in str(info.value) and str(wrong) in str(info.value)

    # load_or_build does not "fix" a mismatch: it propagates and keeps the dataset.
    episodes_fn = CountingEpisodes()
    with pytest.raises(dataset.DatasetMismatchError, match="does not fit the task"):
        dataset.load_or_build(NAME, episodes_fn, data_dir=str(tmp_path), **sizes)
    assert episodes_fn.calls == 0
    assert_matches_episodes(load(tmp_path)[0])


def _truncate_data_file(path):
    (shard,) = [f for f in os.listdir(path) if ".array_record-" in f]
    os.truncate(os.path.join(path, shard), os.path.getsize(os.path.join(path, shard)) // 2)
    return shard


def _delete_data_file(path):
    (shard,) = [f for f in os.listdir(path) if ".array_record-" in f]
    os.remove(os.path.join(path, shard))
    return shard


def _garbage_dataset_info(path):
    with open(os.path.join(path, "dataset_info.json"), "w") as f:
        f.write("{not json")
    return "dataset_info.json"


def _delete_card(path):
    os.remove(os.path.join(path, "card.json"))
    return "card.json"


@pytest.mark.parametrize("damage", [_truncate_data_file, _delete_data_file, _garbage_dataset_info, _delete_card])
def test_corruption_detected_and_rebuilt(tmp_path, damage):
    path = build(tmp_path)
    (tmp_path / "unrelated").mkdir()  # must survive the rebuild
    damaged_file = damage(path)

    with pytest.raises(dataset.DatasetCorruptError) as info:
        load(tmp_path)
    message = str(info.value)
    assert damaged_file in message and "load_or_build" in message and f"Delete {path}" in message

    episodes_fn, logs = CountingEpisodes(), []
    steps, card = load_or_build(tmp_path, episodes_fn, logs)

    assert episodes_fn.calls == 1
    assert len(logs) == 1 and "corrupt" in logs[0] and "rebuilding" in logs[0]
    assert_matches_episodes(steps)
    assert card["num_episodes"] == len(EPISODES)
    assert sorted(os.listdir(tmp_path)) == [NAME, "unrelated"]
    assert_matches_episodes(load(tmp_path)[0])


def test_load_or_build_builds_once_then_loads(tmp_path):
    data_dir = tmp_path / "new" / "datasets"  # does not exist yet
    episodes_fn, logs = CountingEpisodes(), []

    first, _ = load_or_build(data_dir, episodes_fn, logs)
    second, card = load_or_build(data_dir, episodes_fn, logs)

    assert episodes_fn.calls == 1
    assert logs == []
    assert_matches_episodes(first)
    assert_matches_episodes(second)
    assert card["num_steps"] == len(second["reward"])


def test_interrupted_build_leaves_nothing(tmp_path):
    def failing_episodes():
        yield from EPISODES[:3]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dataset.build_dataset(NAME, failing_episodes, obs_size=O, action_size=A, data_dir=str(tmp_path))

    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        load(tmp_path)


def test_build_rejects_bad_episodes_and_metadata(tmp_path):
    bad = dict(EPISODES[0], action=EPISODES[0]["action"][:-1])
    with pytest.raises(ValueError, match=r"episode 0: action has shape"):
        dataset.build_dataset(NAME, lambda: [bad], obs_size=O, action_size=A, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="JSON"):
        build(tmp_path, rate=np.float32(0.5))
    with pytest.raises(ValueError, match="no episodes"):
        dataset.build_dataset(NAME, lambda: [], obs_size=O, action_size=A, data_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_load_or_build_takes_the_copy_a_concurrent_job_finished_first(tmp_path):
    """Two sweep jobs building the same dataset at once: the one that loses the race loads the winner's copy."""
    data_dir = str(tmp_path)
    kwargs = dict(data_dir=data_dir, obs_size=O, action_size=A)

    def racing_episodes():  # while this job generates, another one finishes the same dataset
        dataset.build_dataset(NAME, lambda: iter(EPISODES), **kwargs)
        return iter(EPISODES)

    logs = []
    steps, _ = dataset.load_or_build(NAME, racing_episodes, log=logs.append, **kwargs)
    assert_matches_episodes(steps)
    assert any("another process" in line for line in logs)
    assert [d for d in os.listdir(data_dir) if d.startswith(".")] == []  # no staging folder left behind

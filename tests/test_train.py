"""launch/train.py end to end (smoke preset), the run folder, and bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest

from configs import qc as qc_config
from launch.checkpoint import CheckpointMismatchError
from launch.experiment import NonFiniteLossError, run
from launch.validate import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "launch", "train.py")


def _train(*flags, timeout=600):
    return subprocess.run([sys.executable, TRAIN, *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_smoke_run_writes_a_complete_run_folder(smoke_run):
    run_dir, _, stdout = smoke_run
    assert "success after BC" in stdout and "success after fine-tuning" in stdout and run_dir in stdout
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    for phase in ("bc", "finetuned"):
        assert 0.0 <= summary[phase]["success"] <= 1.0 and summary[phase]["episodes"] == 16
    assert summary["online"]["env_steps"] > 0 and summary["wall_time_s"] > 0
    # one compile per loop for the whole run (DESIGN.md invariant), evaluation included
    assert summary["compiles"] == {"pretrain": 1, "eval_bc": 1, "eval": 1, "offline": 1, "online": 1}
    assert set(summary["compile_s"]) == set(summary["compiles"])
    # the learning curve: BC, offline RL, the mid-run evaluation and the end, in run order
    assert [e["stage"] for e in summary["evals"]] == ["bc", "offline_rl", "online", "finetuned"]
    assert [e["env_steps"] for e in summary["evals"]][:2] == [0, 0]
    assert summary["evals"][-1]["env_steps"] == summary["online"]["env_steps"]
    with open(os.path.join(run_dir, "learning_curve.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # the critic's value at the start states next to the discounted return actually obtained
    for stage in ("offline_rl", "finetuned"):
        s = summary[stage]
        assert 0.0 <= s["mc_return"] <= 1.0 and abs(s["q_bias"] - (s["q_start"] - s["mc_return"])) < 1e-6
    assert 0.0 <= summary["offline_rl"]["success"] <= 1.0
    assert summary["dataset"]["num_episodes"] == 40 and "mode_split" in summary["dataset"]
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["agent"]["num_samples"] == 4 and config["env"]["name"] == "point_obstacle"
    rows = list(csv.DictReader(open(os.path.join(run_dir, "metrics.csv"))))
    assert {"pretrain", "offline", "online", "eval"} <= {r["phase"] for r in rows}
    online = [r for r in rows if r["phase"] == "online"]
    assert all(float(r["critic_loss"]) >= 0 for r in online)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(run_dir, "tb")))
    steps = sorted(int(s) for s in os.listdir(os.path.join(run_dir, "checkpoints")) if s.isdigit())
    assert steps == [0, 3, 6]  # after BC pretraining, at the mid-run evaluation, and at the end


def test_smoke_run_saves_an_evaluation_video(smoke_run):
    from envs.render import gl_available

    run_dir, _, stdout = smoke_run
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    if not gl_available():
        assert summary["videos"] == [] and "video" in stdout.lower()  # skipped with a warning, run completed
        pytest.skip("no OpenGL backend (MUJOCO_GL=egl/osmesa) on this machine")
    (path,) = summary["videos"]
    assert path.startswith(os.path.join(run_dir, "videos")) and os.path.getsize(path) > 1000


@pytest.mark.parametrize("method,metric", [("qc_fql", "distill_loss"), ("dql", "q_loss"), ("guided", "critic_loss")])
def test_every_method_runs_end_to_end_through_the_same_pipeline(method_sweep, method, metric):
    """``--config=configs/<method>.py:smoke`` (one sweep runs them all): same presets, phases and run folder as QC."""
    run_dir, stdout = method_sweep[2][method]
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["agent"] == method and summary["dataset"]["num_episodes"] == 40
    assert [e["stage"] for e in summary["evals"]] == ["bc", "offline_rl", "online", "finetuned"]
    assert all("q_start" in summary[s] for s in ("offline_rl", "finetuned"))  # every method has the critic
    assert summary["compiles"] == {"pretrain": 1, "eval_bc": 1, "eval": 1, "offline": 1, "online": 1}
    rows = list(csv.DictReader(open(os.path.join(run_dir, "metrics.csv"))))
    online = [r for r in rows if r["phase"] == "online"]
    assert online and all(r[metric] != "" and float(r[metric]) == float(r[metric]) for r in online)
    assert f"{metric}=" in stdout  # the method's own losses in its progress lines


def test_qc_fql_pretraining_distils_mu_and_checkpoint_0_holds_it(method_sweep, smoke_run, tmp_path):
    """QC-FQL's BC phase trains the one-step policy too: its pretraining rows log ``distill_loss``,
    checkpoint 0 loads as the ``DistilledBCAgent``, and a plain BC checkpoint (QC's) is refused as
    ``pretrained`` with a message naming the switch."""
    from agents.qc_fql import DistilledBCAgent
    from configs import qc_fql as qc_fql_config
    from launch.experiment import load_run

    run_dir, stdout = method_sweep[2]["qc_fql"]
    rows = [r for r in csv.DictReader(open(os.path.join(run_dir, "metrics.csv"))) if r["phase"] == "pretrain"]
    assert rows and all(float(r["distill_loss"]) > 0 for r in rows)
    assert isinstance(load_run(run_dir, step=0).agent, DistilledBCAgent)
    c = qc_fql_config.get_config("smoke")
    c.run_dir, c.data_dir, c.pretrained = str(tmp_path / "run"), smoke_run[1], smoke_run[0]
    with pytest.raises(CheckpointMismatchError, match="pretrain_distill"):
        run(c, log=lambda *_: None)


def test_dppo_runs_through_the_same_pipeline(method_sweep):
    """``--config=configs/dppo.py:smoke``: same data and BC phase, then the on-policy loop; one compile each."""
    run_dir, stdout = method_sweep[2]["dppo"]
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["agent"] == "dppo" and summary["dataset"]["num_episodes"] == 40
    assert [e["stage"] for e in summary["evals"]] == ["bc", "online", "finetuned"]
    assert summary["compiles"] == {"pretrain": 1, "eval_bc": 1, "eval": 1, "onpolicy": 1}
    assert all("wall_s" in e for e in summary["evals"])
    rows = [r for r in csv.DictReader(open(os.path.join(run_dir, "metrics.csv"))) if r["phase"] == "online"]
    assert rows and all(float(r["value_loss"]) >= 0 for r in rows if r["value_loss"])
    assert "approx_kl=" in stdout and "success after fine-tuning" in stdout
    steps = sorted(int(s) for s in os.listdir(os.path.join(run_dir, "checkpoints")) if s.isdigit())
    assert steps == [0, 2, 4]  # BC, the mid-run evaluation, the end


def test_two_devices_give_the_one_device_result(smoke_run, tmp_path):
    """Data parallel over 2 (forced host) devices: the smoke run's metrics up to float reordering."""
    ref_dir, data_dir, _ = smoke_run
    run_dir = str(tmp_path / "run")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, TRAIN, "--config=configs/qc.py:smoke", f"--config.run_dir={run_dir}",
                           f"--config.data_dir={data_dir}", "--config.env.num_video_episodes=0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "data parallel over 2 devices" in proc.stdout
    ref, got = _timeless(os.path.join(ref_dir, "metrics.csv")), _timeless(os.path.join(run_dir, "metrics.csv"))
    assert [(r["phase"], r["step"]) for r in got] == [(r["phase"], r["step"]) for r in ref]
    differ = 0
    for a, b in zip(ref, got):
        for k, v in a.items():
            if k in ("phase", "step") or v == "":
                continue
            assert float(b[k]) == pytest.approx(float(v), rel=1e-4, abs=1e-5, nan_ok=True), (a["phase"], a["step"], k)
            differ += b[k] != v
    assert differ > 0  # the additions did run in another order: the run was split across the devices


def _timeless(path):
    """metrics.csv rows without the wall-clock columns (speeds and times differ between any two runs)."""
    with open(path) as f:
        return [{k: v for k, v in row.items() if not k.endswith("_per_s") and k != "wall_s"}
                for row in csv.DictReader(f)]


def test_run_killed_in_every_phase_resumes_to_the_same_metrics(smoke_run, tmp_path):
    """SIGKILL at a random moment of pretraining, of offline RL and of online RL; the same command each time."""
    import random
    import signal

    ref_dir, data_dir, _ = smoke_run  # the same config, never interrupted
    run_dir = str(tmp_path / "run")
    cmd = [sys.executable, TRAIN, "--config=configs/qc.py:smoke", f"--config.run_dir={run_dir}",
           f"--config.data_dir={data_dir}", "--config.env.num_video_episodes=1", "--config.checkpoint_every_s=0"]
    rng = random.Random()
    delays = {marker: rng.uniform(0.0, 0.3) for marker in ("[pretrain]", "[offline]", "[online]")}
    for marker, delay in delays.items():  # killed shortly after a progress line of the phase
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, seen = [], 0
        for line in proc.stdout:
            out.append(line)
            seen += line.startswith(marker)
            # online: the second line, so that a checkpoint inside the online phase exists (the first call's)
            if seen == (2 if marker == "[online]" else 1):
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=600)
        assert proc.returncode == -signal.SIGKILL, (delays, "".join(out)[-3000:])
        assert not os.path.exists(os.path.join(run_dir, "summary.json"))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (delays, proc.stdout[-3000:] + proc.stderr[-3000:])
    assert "resuming" in proc.stdout
    ref, got = (json.load(open(os.path.join(d, "summary.json"))) for d in (ref_dir, run_dir))
    assert got["resumed"] and got["resumed"][-1]["phase"] == "online", (delays, got["resumed"])  # mid-phase state
    # every logged metric, in the same order, bit for bit: nothing logged twice, nothing lost
    assert _timeless(os.path.join(run_dir, "metrics.csv")) == _timeless(os.path.join(ref_dir, "metrics.csv")), delays
    for stage in ("bc", "offline_rl", "finetuned"):
        assert {k: v for k, v in got[stage].items() if k != "wall_s"} == \
            {k: v for k, v in ref[stage].items() if k != "wall_s"}, (stage, delays)
    assert got["online"]["env_steps"] == ref["online"]["env_steps"]
    assert [e["stage"] for e in got["evals"]] == [e["stage"] for e in ref["evals"]]
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == sorted(
        os.listdir(os.path.join(ref_dir, "checkpoints")))  # the BC checkpoint (step 0) is kept
    assert not os.path.exists(os.path.join(run_dir, "resume"))  # dropped once summary.json is written


def test_resume_state_falls_back_past_an_unreadable_step_and_names_a_mismatch(tmp_path):
    import jax
    import numpy as np

    from launch.checkpoint import RunState

    tree = {"w": np.arange(6.0).reshape(2, 3), "empty": np.zeros((0, 4)), "key": jax.random.PRNGKey(3)}
    state = RunState(str(tmp_path / "resume"))
    state.save(1, tree, {"phase": "offline", "counters": {"calls": 1}})
    state.save(2, {**tree, "w": tree["w"] + 1}, {"phase": "online", "counters": {"calls": 2}})
    state.close()
    fresh = RunState(str(tmp_path / "resume"))
    assert fresh.latest()["phase"] == "online"
    got = fresh.restore(jax.tree.map(np.zeros_like, tree))
    np.testing.assert_array_equal(got["w"], tree["w"] + 1)
    assert got["empty"].shape == (0, 4) and got["key"].dtype == np.uint32
    with pytest.raises(CheckpointMismatchError, match=r"\['w'\]"):
        fresh.restore({**tree, "w": np.zeros((3, 3))})
    for root, _, files in os.walk(tmp_path / "resume" / "2" / "state"):  # damage every file of the latest step
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"not a checkpoint")
    warnings = []
    progress = RunState(str(tmp_path / "resume")).latest(warn=warnings.append)
    assert progress["phase"] == "offline" and progress["counters"] == {"calls": 1}
    assert len(warnings) == 1 and "step 2" in warnings[0] and "falling back" in warnings[0]


def test_a_run_folder_started_with_another_config_is_refused(smoke_run, tmp_path):
    run_dir, data_dir, _ = smoke_run
    c = _smoke_config(tmp_path, data_dir)
    c.run_dir = run_dir
    stored = c.agent.discount
    c.agent.discount = 0.5
    with pytest.raises(CheckpointMismatchError, match=f"agent.discount.*{stored}.*0.5"):
        run(c, log=lambda *_: None)


def test_default_run_folder_is_the_same_for_the_same_config():
    from launch.experiment import _run_dir

    a, b = qc_config.get_config("smoke"), qc_config.get_config("smoke")
    assert _run_dir(a) == _run_dir(b) and _run_dir(a).startswith(os.path.join("runs", "qc_point_obstacle_s0_"))
    b.data_dir = "elsewhere"  # where the data lives is not what is run
    assert _run_dir(a) == _run_dir(b)
    b.agent.num_samples = 7
    assert _run_dir(a) != _run_dir(b)


def _smoke_config(tmp_path, data_dir=None):
    c = qc_config.get_config("smoke")
    c.run_dir, c.data_dir = str(tmp_path / "run"), data_dir or str(tmp_path / "data")
    return c


@pytest.mark.parametrize("field,value,match", [
    ("agent.action_steps", 6, "agent.action_steps"),
    ("agent.num_samples", 0, "agent.num_samples"),
    ("agent.horizon", 41, "agent.horizon.*episode_length"),
    ("online.offline_ratio", 1.5, "online.offline_ratio"),
    ("agent.selection", "median", "agent.selection"),  # an agent's own field, checked before any work
    ("agent.actor_activation", "sigmoid", "agent.actor_activation"),
    ("data.sloppy_prob", 1.2, "data.sloppy_prob"),
])
def test_bad_values_fail_before_any_work(tmp_path, field, value, match):
    c = _smoke_config(tmp_path)
    section, key = field.split(".")
    c[section][key] = value
    with pytest.raises(ConfigError, match=match):
        run(c, log=lambda *_: None)
    assert not os.path.exists(c.run_dir) and not os.path.exists(c.data_dir)


@pytest.mark.parametrize("flag,match", [
    ("--config.agent.num_sample=3", "num_sample"),   # mistyped key
    ("--config.seed=abc", "seed"),                   # wrong type
])
def test_cli_rejects_unknown_keys_and_wrong_types(tmp_path, flag, match):
    proc = _train("--config=configs/qc.py:smoke", flag, f"--config.run_dir={tmp_path}/run", timeout=120)
    assert proc.returncode != 0
    assert match in proc.stderr
    assert not os.path.exists(tmp_path / "run")


def test_dataset_that_does_not_fit_the_task_is_refused(tmp_path):
    import numpy as np

    from envs.dataset import DatasetMismatchError, build_dataset
    from launch.data import dataset_name, sloppy_prob

    data_dir = str(tmp_path / "data")
    episode = {"obs": np.zeros((3, 7), np.float32), "action": np.zeros((3, 2), np.float32),
               "reward": np.zeros(3, np.float32), "next_obs": np.zeros((3, 7), np.float32),
               "terminated": np.array([0, 0, 1], bool), "truncated": np.zeros(3, bool),
               "success": True, "mode": np.int32(0)}
    c = _smoke_config(tmp_path, data_dir)
    name = dataset_name(c.env.name, c.data.num_episodes, c.data.seed, sloppy_prob(c))
    build_dataset(name, lambda: [episode], obs_size=7, action_size=2, data_dir=data_dir)
    with pytest.raises(DatasetMismatchError, match="obs"):
        run(c, log=lambda *_: None)
    assert os.path.isdir(os.path.join(data_dir, name))  # the user's data is left alone


def test_pretrained_checkpoint_must_match_the_config(smoke_run, tmp_path):
    run_dir, data_dir, _ = smoke_run
    c = _smoke_config(tmp_path, data_dir)
    c.pretrained = run_dir
    c.agent.actor_hidden_dims = (64, 64)
    with pytest.raises(CheckpointMismatchError, match="actor_hidden_dims"):
        run(c, log=lambda *_: None)


def test_non_finite_loss_stops_the_run_and_keeps_the_checkpoint(smoke_run, tmp_path):
    run_dir, data_dir, _ = smoke_run
    c = _smoke_config(tmp_path, data_dir)
    c.pretrained = run_dir          # restores the smoke BC agent (skips pretraining)
    c.agent.critic_lr = 1e30        # the critic diverges in the offline phase
    c.offline.steps = 20
    with pytest.raises(NonFiniteLossError, match="critic_loss"):
        run(c, log=lambda *_: None)
    assert os.listdir(os.path.join(c.run_dir, "checkpoints")) == ["0"]
    assert not os.path.exists(os.path.join(c.run_dir, "summary.json"))


def test_checkpoint_round_trip_restores_the_same_arrays(tmp_path):
    import jax
    import numpy as np

    from agents.bc import BCAgent
    from launch.checkpoint import Checkpointer, restore
    from replay.normalizer import Normalizer

    c = qc_config.get_config("smoke").agent
    agent = BCAgent.create(0, 6, 2, c)
    normalizer = Normalizer.from_data(np.random.rand(50, 6), np.random.rand(50, 2) * 2 - 1)
    ckpt = Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(0, agent, normalizer, {"phase": "bc", "obs_size": 6})
    ckpt.close()
    other = BCAgent.create(1, 6, 2, c)  # different weights, same structure
    restored, norm, meta = restore(str(tmp_path / "ckpt"), other, Normalizer.from_data(
        np.zeros((2, 6)), np.zeros((2, 2))), {"phase": "bc"})
    for a, b in zip(jax.tree.leaves(agent), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(norm.obs_mean, normalizer.obs_mean)
    with pytest.raises(CheckpointMismatchError, match="obs_size"):
        restore(str(tmp_path / "ckpt"), other, normalizer, {"obs_size": 7})
    with pytest.raises(FileNotFoundError, match="pretrained"):
        restore(str(tmp_path / "nothing"), other, normalizer, {})


def test_bc_checkpoint_outlives_max_to_keep(tmp_path):
    """``--config.pretrained=runs/<run>`` reads step 0: later checkpoints must not delete it."""
    import numpy as np

    from agents.bc import BCAgent
    from launch.checkpoint import Checkpointer, restore
    from replay.normalizer import Normalizer

    c = qc_config.get_config("smoke").agent
    agent = BCAgent.create(0, 6, 2, c)
    normalizer = Normalizer.from_data(np.random.rand(50, 6), np.random.rand(50, 2) * 2 - 1)
    ckpt = Checkpointer(str(tmp_path / "ckpt"), max_to_keep=3)
    for step in (0, 3, 6, 9, 12):
        ckpt.save(step, agent, normalizer, {"phase": "bc" if step == 0 else "online"})
    ckpt.close()
    assert sorted(int(s) for s in os.listdir(tmp_path / "ckpt") if s.isdigit()) == [0, 6, 9, 12]
    _, _, meta = restore(str(tmp_path / "ckpt"), agent, normalizer, {"phase": "bc"}, step=0)
    assert meta["phase"] == "bc"


def test_wandb_logging_offline_keeps_rows_config_and_summary(tmp_path):
    """``--config.log.wandb=True`` without a network: an offline W&B run in the run folder, same id on resume."""
    wandb = pytest.importorskip("wandb")
    from launch.logger import Logger

    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    opts = {"project": "test", "mode": "offline", "config": {"seed": 3, "agent": {"eta": 0.5}}}
    logger = Logger(run_dir, wandb=opts)
    run_id = logger.wandb.id
    logger.log("online", 10, {"critic_loss": 0.5})
    logger.log("eval", 10, {"success": 0.25})
    logger.summary({"bc": {"success": 0.1}, "finetuned": {"success": 0.25}, "evals": [{}]})
    assert logger.wandb.config["agent"]["eta"] == 0.5 and logger.wandb.summary["finetuned/success"] == 0.25
    assert logger.wandb.summary["eval/success"] == 0.25  # the logged rows reach W&B too
    logger.close()
    runs = [d for d in os.listdir(os.path.join(run_dir, "wandb")) if d.startswith("offline-run")]
    assert len(runs) == 1 and runs[0].endswith(run_id)
    again = Logger(run_dir, keep_rows=1, wandb=opts)  # a resumed run continues the same W&B run
    assert again.wandb.id == run_id and [r["phase"] for r in again.rows] == ["online"]
    again.close()
    del wandb


def test_vmapped_update_loop_equals_each_seed_alone():
    """``vmap_seeds``: the compiled update loop over two stacked BC agents == each agent's own loop, per seed."""
    import jax
    import numpy as np

    from agents.bc import BCAgent
    from launch import loops
    from replay.buffer import ReplayBuffer

    c = qc_config.get_config("smoke").agent
    rng = np.random.default_rng(0)
    n = 64
    obs = rng.normal(size=(n, 6)).astype(np.float32)
    steps = {"obs": obs, "action": rng.uniform(-1, 1, (n, 2)).astype(np.float32), "reward": np.zeros(n, np.float32),
             "next_obs": np.roll(obs, -1, 0), "terminated": np.zeros(n, bool),
             "truncated": np.arange(n) % 16 == 15}
    buffer = ReplayBuffer.from_steps(steps)
    agents = [jax.jit(lambda seed=seed: BCAgent.create(seed, 6, 2, c))() for seed in (0, 1)]
    pair = jax.jit(jax.vmap(lambda seed: BCAgent.create(seed, 6, 2, c)))(jax.numpy.arange(2))  # as run() builds it
    keys = [jax.random.PRNGKey(10), jax.random.PRNGKey(11)]
    args = (c.batch_size, c.horizon, c.action_steps, c.discount, 3)
    single = loops.make_offline_updates(*args)
    both = loops.make_offline_updates(*args, vmap_seeds=True)
    stacked, info = both(pair, buffer, jax.numpy.stack(keys))
    for i, (agent, key) in enumerate(zip(agents, keys)):
        alone, alone_info = single(agent, buffer, key)
        np.testing.assert_allclose(info["bc_loss"][i], alone_info["bc_loss"], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(stacked)):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=1e-4, atol=1e-6)
    assert not np.allclose(info["bc_loss"][0], info["bc_loss"][1])  # each seed its own weights and keys

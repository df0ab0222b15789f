"""Headless rendering of point_obstacle states, and evaluation videos written to disk."""

from __future__ import annotations

import os

import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from envs import render
from launch import videos

needs_gl = pytest.mark.skipif(not render.gl_available(),
                              reason="no OpenGL backend for offscreen rendering (EGL or OSMesa) on this machine")


def fields(x, y, goal=(0.8, 0.0)):
    """Host physics of one point_obstacle env: disc at (x, y), goal disc at ``goal`` (m)."""
    return {"qpos": np.array([x, y]), "qvel": np.zeros(2), "mocap_pos": np.array([[goal[0], goal[1], 0.0]])}


def disc_centre(frame: np.ndarray) -> np.ndarray:
    """(column, row) centroid of the blue disc's pixels in ``frame [H, W, 3]``."""
    f = frame.astype(int)
    rows, cols = np.nonzero((f[..., 2] > f[..., 0] + 60) & (f[..., 2] > f[..., 1] + 30))
    assert len(rows) > 10, "the disc is not visible"
    return np.array([cols.mean(), rows.mean()])


@pytest.fixture(scope="module")
def renderer(task):
    if not render.gl_available():
        pytest.skip("no OpenGL backend for offscreen rendering (EGL or OSMesa) on this machine")
    with render.Renderer(task, width=320, height=240) as r:
        yield r


@needs_gl
def test_frame_not_blank_and_follows_the_state(renderer):
    frame = renderer.frame(fields(-0.5, 0.0))
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    assert frame.std() > 10  # not a blank image
    np.testing.assert_array_equal(renderer.frame(fields(-0.5, 0.0)), frame)  # deterministic
    # top camera: +x to the right, +y up in the image
    left, right, up = (disc_centre(renderer.frame(fields(*p))) for p in [(-0.5, 0.0), (0.5, 0.0), (-0.5, 0.5)])
    assert right[0] - left[0] > 50 and abs(right[1] - left[1]) < 3
    assert left[1] - up[1] > 25 and abs(up[0] - left[0]) < 3
    # the goal (a mocap body) moves with mocap_pos
    moved = renderer.frame(fields(-0.5, 0.0, goal=(0.7, 0.2)))
    assert np.abs(moved.astype(int) - frame).sum() > 1000


@needs_gl
def test_frames_of_batched_trajectory_and_mjx_data(renderer, task):
    xs = np.linspace(-0.8, 0.6, 5)
    traj = {"qpos": np.stack([[[x, 0.0], [x, 0.5]] for x in xs]),  # [T=5, N=2, 2]
            "mocap_pos": np.tile(np.array([0.8, 0.0, 0.0]), (5, 2, 1, 1))}
    out = renderer.frames(traj, env_index=1)
    assert out.shape == (5, 240, 320, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[3], renderer.frame(fields(xs[3], 0.5)))
    assert renderer.frames(traj, env_index=0, num_frames=2).shape == (2, 240, 320, 3)
    # an mjx.Data (device arrays) renders like the host fields it holds
    d = mujoco.MjData(task.mj_model)
    d.qpos[:], d.mocap_pos[0] = [0.3, -0.4], [0.8, 0.0, 0.0]
    np.testing.assert_array_equal(renderer.frame(mjx.put_data(task.mj_model, d)), renderer.frame(fields(0.3, -0.4)))
    with pytest.raises(ValueError, match="env_index"):
        renderer.frame(traj)  # batched state without env_index


@needs_gl
def test_camera_choice(task):
    with pytest.raises(ValueError, match=r"camera 'side' not in the model; its cameras are \['top'\]"):
        render.Renderer(task, camera="side")
    with render.Renderer(task, width=64, height=48, camera=-1) as free:  # default free camera
        assert free.frame(fields(0.0, 0.0)).shape == (48, 64, 3)


def test_disabled_gl_is_reported(monkeypatch, task):
    monkeypatch.setattr(render, "_backend", None)
    monkeypatch.setattr(render, "_failure", None)
    monkeypatch.setattr(videos, "_warned_no_gl", False)
    monkeypatch.setenv("MUJOCO_GL", "off")
    assert render.gl_available() is False
    with pytest.raises(render.RenderUnavailableError, match="disabled by MUJOCO_GL='off'"):
        render.Renderer(task)
    lines = []
    for _ in range(2):  # no crash, nothing written, one warning
        assert videos.save_rollout_videos("/nonexistent", task, None, 1, log=lines.append) == []
    assert len(lines) == 1 and "no videos" in lines[0]


@needs_gl
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # imageio's reader forks + execs ffmpeg
def test_rollout_videos_written_and_read_back(tmp_path, task):
    import imageio.v2 as imageio

    def policy(obs, key):  # push right-up for the whole chunk [N, 3, 2]
        return jnp.broadcast_to(jnp.array([1.0, 0.5]), (obs.shape[0], 3, 2))

    paths = videos.save_rollout_videos(str(tmp_path), task, policy, action_steps=2, num_episodes=2,
                                       episode_length=5, tag="final", fps=10)
    assert [os.path.basename(p) for p in paths] == ["final_ep0_timeout.mp4", "final_ep1_timeout.mp4"]
    for path in paths:
        assert os.path.dirname(path) == str(tmp_path / "videos") and os.path.getsize(path) > 0
        frames = np.stack(imageio.mimread(path, format="FFMPEG"))
        assert frames.shape == (6, 240, 320, 3)  # the reset state + 5 control steps
        assert np.abs(frames[-1].astype(int) - frames[0]).mean() > 0.1  # the disc moved


@needs_gl
def test_write_gif(tmp_path):
    from PIL import Image
    frames = np.zeros((4, 30, 41, 3), np.uint8)
    frames[np.arange(4), 5, np.arange(4) * 10] = 255  # a moving dot: no two frames alike
    path = videos.write_video(str(tmp_path / "x.gif"), frames, fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.size == (41, 30)
    assert os.path.getsize(videos.write_video(str(tmp_path / "odd.mp4"), frames, fps=5)) > 0  # odd width padded
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        videos.write_video(str(tmp_path / "x.avi"), frames, fps=5)

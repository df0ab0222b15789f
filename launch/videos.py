"""Evaluation videos: a few episodes of a chunked policy, rendered to ``<run_dir>/videos/``.

:func:`save_rollout_videos` runs ``num_episodes`` episodes in one compiled
rollout (receding-horizon chunks, as :func:`envs.chunk.rollout_episodes`),
records the physics state after every control step (:func:`envs.render.physics_fields`,
a few floats per step), renders the frames on the host
(:class:`envs.render.Renderer`, about 20 frames/s at 320x240 on a 2-core CPU)
and writes one MP4 per episode (imageio with the ffmpeg binary shipped in
the ``imageio-ffmpeg`` wheel; GIF through Pillow when that is missing or
asked for). Without a working OpenGL backend it logs one warning per process
and writes nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from envs import registry, render
from envs.wrappers import VecEnv, select

_log = logging.getLogger(__name__)
_warned_no_gl = False


def record_episodes(env: VecEnv, policy: Callable, action_steps: int, key: jax.Array) -> dict:
    """Runs one episode per env with a chunked policy, recording the physics after every step.

    Args:
      env: batched env (N episodes); its ``episode_length`` bounds the rollout.
      policy: ``policy(obs [N, O], key) -> chunk [N, H, A]`` in env units (jittable).
      action_steps: ``h <= H`` actions executed per chunk (static).
      key: PRNG key.

    Returns:
      dict: ``physics`` (:func:`envs.render.physics_fields` with arrays
      ``[T + 1, N, ...]``: index 0 after reset, index ``t`` after step ``t``;
      ``T = ceil(episode_length / h) * h``; an ended env stays frozen),
      ``length`` (int32 ``[N]``, control steps), ``success`` and
      ``terminated`` (bool ``[N]``), ``return`` (float32 ``[N]``).

    Raises:
      ValueError: the chunk is not ``[N, H >= action_steps, A]`` (at trace time).
    """
    num_chunks = -(-env.episode_length // action_steps)
    k_reset, k_loop = jax.random.split(key)
    state = env.reset(k_reset)

    def chunk_body(state, k):
        chunk = policy(state.obs, k)
        if chunk.ndim != 3 or chunk.shape[0] != env.num_envs or chunk.shape[2] != env.action_size \
                or chunk.shape[1] < action_steps:
            raise ValueError(f"policy must return a chunk [N={env.num_envs}, H>={action_steps}, "
                             f"A={env.action_size}], got {chunk.shape}")

        def step_body(state, action):
            nxt = select(state.done == 0, env.step(state, action), state)  # ended envs stay frozen
            return nxt, render.physics_fields(nxt.data)

        return jax.lax.scan(step_body, state, jnp.swapaxes(chunk[:, :action_steps], 0, 1))

    first = render.physics_fields(state.data)
    state, physics = jax.lax.scan(chunk_body, state, jax.random.split(k_loop, num_chunks))
    physics = jax.tree.map(lambda x0, xs: jnp.concatenate([x0[None], xs.reshape((-1,) + xs.shape[2:])]),
                           first, physics)
    return {"physics": physics, "length": state.info["steps"], "success": state.info["success"],
            "terminated": state.info["terminated"], "return": state.info["episode_return"]}


def write_video(path: str, frames: np.ndarray, fps: float) -> str:
    """Writes ``frames`` (uint8 ``[T, H, W, 3]``) to ``path`` (``.mp4`` or ``.gif``). Returns ``path``.

    MP4: H.264 (yuv420p; odd sizes are padded by one pixel). GIF: Pillow merges
    consecutive identical frames (their durations add up), so a GIF can hold
    fewer frames than given.

    Raises:
      ValueError: frames not ``[T, H, W, 3]`` uint8 with ``T >= 1``, or another extension.
      ImportError: ``.mp4`` without imageio / imageio-ffmpeg.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 [T >= 1, H, W, 3], got {frames.dtype} {frames.shape}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".mp4":
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary; a clear ImportError if missing)
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        with warnings.catch_warnings():  # JAX warns on any fork; imageio forks + execs ffmpeg
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            with imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                    pixelformat="yuv420p", macro_block_size=1, quality=7) as writer:
                for frame in frames:
                    writer.append_data(frame)
    elif ext == ".gif":
        from PIL import Image
        images = [Image.fromarray(frame) for frame in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)),
                       loop=0)
    else:
        raise ValueError(f"video path must end in .mp4 or .gif, got {path!r}")
    return path


def _mp4_available() -> bool:
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
        return True
    except ImportError:
        return False


def save_rollout_videos(run_dir: str, task, policy_fn: Callable, action_steps: int, num_episodes: int = 2,
                        key: jax.Array | None = None, episode_length: int | None = None, tag: str = "final",
                        fps: float | None = None, width: int = 320, height: int = 240,
                        camera: str | int | None = None, fmt: str = "mp4", log: Callable | None = None
                        ) -> list[str]:
    """Renders ``num_episodes`` evaluation episodes to ``<run_dir>/videos/<tag>_ep<i>_<outcome>.<fmt>``.

    Args:
      run_dir: the run folder.
      task: task name (see :func:`envs.make`) or an ``MjxEnv``.
      policy_fn: ``policy_fn(obs [N, O], key) -> chunk [N, H, A]`` in env
        units (as for :func:`envs.chunk.rollout_episodes`); jitted here with
        the rollout (one compile per call).
      action_steps: ``h`` actions executed per chunk.
      num_episodes: episodes (= videos), each in its own env.
      key: PRNG key (``PRNGKey(0)`` if None).
      episode_length: time limit in control steps; the task default if None.
      tag: file-name prefix (e.g. ``"bc"``, ``"final"``).
      fps: frames per second; real time (``1 / task.dt``) if None.
      width, height, camera: see :class:`envs.render.Renderer`.
      fmt: ``"mp4"`` (falls back to ``"gif"`` without imageio-ffmpeg) or ``"gif"``.
      log: ``log(str)`` for progress lines (the module logger if None).

    Returns:
      the written paths, one per episode (frames: the reset state, then one per
      control step up to the episode end); ``[]`` when OpenGL is unavailable.
      ``<outcome>`` is ``success``, ``fail`` (terminated without success) or
      ``timeout`` (truncated).

    Raises:
      ValueError: ``num_episodes < 1``, unknown ``fmt``, or a policy chunk of the wrong shape.
    """
    global _warned_no_gl
    user_log, log = log, log or _log.info
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if fmt not in ("mp4", "gif"):
        raise ValueError(f"fmt must be 'mp4' or 'gif', got {fmt!r}")
    try:
        render.gl_backend()
    except render.RenderUnavailableError as e:
        if not _warned_no_gl:
            _warned_no_gl = True
            _log.warning("no videos: %s", e)
            if user_log is not None:
                user_log(f"WARNING: no videos: {e}")
        return []
    if fmt == "mp4" and not _mp4_available():
        log("imageio-ffmpeg is not installed; writing GIF videos instead of MP4")
        fmt = "gif"

    t0 = time.time()
    env_task = registry.make(task) if isinstance(task, str) else task
    env = VecEnv(env_task, num_episodes, episode_length or env_task.episode_length)
    rollout = jax.jit(functools.partial(record_episodes, env, policy_fn, action_steps))
    out = rollout(jax.random.PRNGKey(0) if key is None else key)
    host = jax.device_get({k: out[k] for k in ("length", "success", "terminated")})
    fps = fps or (1.0 / float(env_task.dt) if getattr(env_task, "dt", None) else 30.0)

    folder = os.path.join(run_dir, "videos")
    os.makedirs(folder, exist_ok=True)
    paths = []
    t_render = time.time()
    with render.Renderer(env_task, width=width, height=height, camera=camera) as renderer:
        for i in range(num_episodes):
            outcome = ("success" if host["success"][i] else "fail" if host["terminated"][i] else "timeout")
            frames = renderer.frames(out["physics"], env_index=i, num_frames=int(host["length"][i]) + 1)
            paths.append(write_video(os.path.join(folder, f"{tag}_ep{i}_{outcome}.{fmt}"), frames, fps))
    log(f"videos: {len(paths)} episodes to {folder} ({time.time() - t0:.1f} s, "
        f"rendering {time.time() - t_render:.1f} s)")
    return paths

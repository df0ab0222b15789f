"""Headless rendering of MJX states with C MuJoCo on the host.

A :class:`Renderer` keeps one host ``MjData`` and one offscreen OpenGL
context per model. To draw a state it copies only the fields that fix the
picture (:data:`PHYSICS_FIELDS`: ``qpos``, ``qvel``, ``act``, ``mocap_pos``,
``mocap_quat``) from the device to that ``MjData``, runs ``mj_forward`` and
reads the pixels back: ``uint8 [H, W, 3]`` per frame.

Inside a compiled rollout, record :func:`physics_fields` of each step's
``state.data`` (a few floats per env and step) and render the trajectory
afterwards with :meth:`Renderer.frames`.

OpenGL backend (there is no display on the machines this runs on):

* an existing ``MUJOCO_GL`` (``egl``, ``osmesa``, ``glfw``) is respected;
* if it is unset, ``egl`` is tried, then ``osmesa``, and the first that works
  is written to ``os.environ['MUJOCO_GL']`` (so subprocesses agree);
* each candidate is probed once in a subprocess (creating a GL context can
  abort the process on a broken driver), and the answer is cached;
* if none works, :class:`RenderUnavailableError` says what was tried.

Debian packages: ``libegl1 libegl-mesa0 libgl1-mesa-dri`` (EGL) or
``libosmesa6`` (OSMesa). Measured speed at 320x240 on the 2-core CPU (Mesa
llvmpipe): about 23 frames/s with EGL and 20 with OSMesa on a quiet machine,
8-9 frames/s with either at load average 8.
"""

from __future__ import annotations

import copy
import importlib
import os
import subprocess
import sys
import warnings
import weakref
from collections.abc import Mapping

import mujoco
import numpy as np

# Fields of mjx.Data that determine a rendered picture (mj_forward recomputes the rest).
PHYSICS_FIELDS = ("qpos", "qvel", "act", "mocap_pos", "mocap_quat")

_CANDIDATES = ("egl", "osmesa")
_DISABLED = ("disable", "disabled", "off", "false", "0")
# MUJOCO_GL value -> module of mujoco that holds its GLContext
_MODULES = {"egl": "egl", "osmesa": "osmesa", "cgl": "cgl", "glfw": "glfw", "glx": "glfw",
            "enable": "glfw", "enabled": "glfw", "on": "glfw", "true": "glfw", "1": "glfw"}
_PROBE_TIMEOUT_S = 120

_PROBE = """
import importlib, sys
import mujoco
ctx = importlib.import_module("mujoco." + sys.argv[1]).GLContext(64, 64)
ctx.make_current()
model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='.1'/></worldbody></mujoco>")
con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100.value)
con.free()
ctx.free()
"""


class RenderUnavailableError(RuntimeError):
    """No OpenGL backend can render offscreen on this machine (the message says what was tried)."""


_backend: str | None = None
_failure: str | None = None


def _probe(backend: str) -> str | None:
    """Creates a GL context with ``backend`` in a subprocess. Returns None if it worked, else why not."""
    module = _MODULES.get(backend)
    if module is None:
        return f"MUJOCO_GL={backend!r} is not a backend MuJoCo knows (expected one of {sorted(_MODULES)})"
    env = {**os.environ, "MUJOCO_GL": backend}
    try:
        with warnings.catch_warnings():  # JAX warns on any fork; fork + exec runs no Python in the child
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            proc = subprocess.run([sys.executable, "-c", _PROBE, module], check=False, env=env, capture_output=True,
                                  text=True, timeout=_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"MUJOCO_GL={backend}: creating a context took over {_PROBE_TIMEOUT_S} s"
    if proc.returncode == 0:
        return None
    last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return f"MUJOCO_GL={backend}: {last}"


def gl_backend() -> str:
    """The OpenGL backend used for rendering (``'egl'``, ``'osmesa'``, ...), chosen once per process.

    Respects an existing ``MUJOCO_GL``; otherwise tries ``egl`` then
    ``osmesa`` and sets ``MUJOCO_GL`` to the first that works.

    Raises:
      RenderUnavailableError: no backend works (or ``MUJOCO_GL`` disables GL).
    """
    global _backend, _failure
    if _backend is not None:
        return _backend
    if _failure is None:
        requested = os.environ.get("MUJOCO_GL", "").strip().lower()
        if requested in _DISABLED:
            _failure = f"rendering is disabled by MUJOCO_GL={requested!r}"
        else:
            reasons = []
            for backend in [requested] if requested else _CANDIDATES:
                why = _probe(backend)
                if why is None:
                    if not requested:
                        os.environ["MUJOCO_GL"] = backend
                    _backend = backend
                    return backend
                reasons.append(why)
            _failure = ("no OpenGL backend can render offscreen: " + "; ".join(reasons) +
                        ". Install EGL (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri) or OSMesa "
                        "(libosmesa6), or set MUJOCO_GL to a working backend")
    raise RenderUnavailableError(_failure)


def gl_available() -> bool:
    """Whether offscreen rendering works here (probed once per process, in a subprocess; never raises)."""
    try:
        gl_backend()
        return True
    except RenderUnavailableError:
        return False


def physics_fields(data) -> dict:
    """The arrays of ``data`` that fix a rendered picture, without copying them to the host.

    Args:
      data: an ``mjx.Data``, a Playground ``State`` (its ``.data`` is used),
        or a mapping with some of :data:`PHYSICS_FIELDS`; any leading batch
        or time axes are kept (``qpos [..., nq]``, ``mocap_pos [..., nmocap, 3]``).

    Returns:
      dict from field name to array, for the fields present and non-empty.
      Jittable: record it for every step of a rollout and render afterwards.
    """
    if not isinstance(data, Mapping) and hasattr(data, "data") and hasattr(data, "obs"):
        data = data.data  # an MjxEnv State
    get = data.get if isinstance(data, Mapping) else (lambda name: getattr(data, name, None))
    out = {}
    for name in PHYSICS_FIELDS:
        value = get(name)
        if value is not None and int(np.prod(np.shape(value))) > 0:
            out[name] = value
    if "qpos" not in out:
        raise ValueError(f"no 'qpos' in the state to render (fields: {sorted(out)})")
    return out


def _free(mjr_context, gl_context):
    mjr_context.free()
    if gl_context is not None:
        gl_context.free()


class Renderer:
    """Offscreen renderer for one task's model.

    Args:
      env: an ``MjxEnv`` (its ``mj_model`` is used) or a ``mujoco.MjModel``.
      width, height: frame size in pixels (the model's offscreen buffer is
        enlarged on a private copy of the model when needed).
      camera: camera name or id; ``None`` uses the camera named ``"top"`` if
        the model has one, else the default free camera looking at the whole
        model; ``-1`` forces the free camera.

    Raises:
      RenderUnavailableError: no OpenGL backend works here.
      ValueError: unknown camera name or id, or a non-positive size.

    Not thread-safe: use one renderer per thread. Call :meth:`close` (or use
    it as a context manager) to free the GL context early.
    """

    def __init__(self, env, width: int = 320, height: int = 240, camera: str | int | None = None):
        if width < 1 or height < 1:
            raise ValueError(f"render size must be positive, got width={width}, height={height}")
        backend = gl_backend()
        model = env if isinstance(env, mujoco.MjModel) else env.mj_model
        model = copy.deepcopy(model)  # private copy: the offscreen buffer size is a model field
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
        self.model, self.width, self.height = model, int(width), int(height)
        self._data = mujoco.MjData(model)
        self._camera = self._make_camera(model, camera)
        self._option = mujoco.MjvOption()
        self._scene = mujoco.MjvScene(model, maxgeom=max(1000, 2 * model.ngeom))
        self._rect = mujoco.MjrRect(0, 0, self.width, self.height)
        self._gl = None
        try:
            self._gl = importlib.import_module(f"mujoco.{_MODULES[backend]}").GLContext(width, height)
            self._gl.make_current()
            self._mjr = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150.value)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._mjr)
        except Exception as e:  # a broken driver surfaces as ImportError, RuntimeError, GLError, ...
            if self._gl is not None:
                self._gl.free()
            raise RenderUnavailableError(f"could not create an OpenGL context with MUJOCO_GL={backend}: "
                                         f"{type(e).__name__}: {e}") from e
        self._finalizer = weakref.finalize(self, _free, self._mjr, self._gl)

    @staticmethod
    def _make_camera(model: mujoco.MjModel, camera) -> mujoco.MjvCamera:
        names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
        if camera is None:
            camera = "top" if "top" in names else -1
        if isinstance(camera, str):
            cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            if cam_id < 0:
                raise ValueError(f"camera {camera!r} not in the model; its cameras are {names}")
        else:
            cam_id = int(camera)
            if not -1 <= cam_id < model.ncam:
                raise ValueError(f"camera id must be in [-1, {model.ncam}), got {cam_id}")
        cam = mujoco.MjvCamera()
        if cam_id == -1:
            mujoco.mjv_defaultFreeCamera(model, cam)
        else:
            cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
            cam.fixedcamid = cam_id
        return cam

    def _load(self, fields: Mapping) -> None:
        for name, value in fields.items():
            target = getattr(self._data, name)
            value = np.asarray(value, dtype=np.float64)
            if value.size != target.size:
                raise ValueError(f"{name} has shape {value.shape}, expected {target.shape} for one env; "
                                 "pass env_index for a batched state")
            target[...] = value.reshape(target.shape)

    def _draw(self) -> np.ndarray:
        if not self._finalizer.alive:
            raise RuntimeError("Renderer used after close()")
        mujoco.mj_forward(self.model, self._data)
        mujoco.mjv_updateScene(self.model, self._data, self._option, None, self._camera,
                               mujoco.mjtCatBit.mjCAT_ALL.value, self._scene)
        self._gl.make_current()
        mujoco.mjr_render(self._rect, self._scene, self._mjr)
        pixels = np.empty((self.height, self.width, 3), np.uint8)
        mujoco.mjr_readPixels(pixels, None, self._rect, self._mjr)
        return np.ascontiguousarray(pixels[::-1])  # OpenGL rows start at the bottom

    def frame(self, state, env_index: int | None = None) -> np.ndarray:
        """Renders one state. Returns ``uint8 [H, W, 3]``.

        Args:
          state: a ``State``, ``mjx.Data`` or :func:`physics_fields` dict of one
            env (``qpos [nq]``), or of a batch (``qpos [N, nq]``) with ``env_index``.
          env_index: which env of a batched state to draw.

        Raises:
          ValueError: the state does not fit the model (e.g. batched without ``env_index``).
        """
        fields = physics_fields(state)
        if env_index is not None:
            fields = {k: v[env_index] for k, v in fields.items()}
        self._load(fields)
        return self._draw()

    def frames(self, trajectory, env_index: int | None = None, num_frames: int | None = None) -> np.ndarray:
        """Renders a trajectory. Returns ``uint8 [T, H, W, 3]``.

        Args:
          trajectory: :func:`physics_fields` (or a State / ``mjx.Data``) with a
            leading time axis: ``qpos [T, N, nq]`` with ``env_index``, or
            ``[T, nq]`` without.
          env_index: which env of the batch to draw.
          num_frames: draw only the first ``num_frames`` steps (e.g. up to the
            episode end); all ``T`` if None.
        """
        fields = physics_fields(trajectory)
        stop = int(np.shape(fields["qpos"])[0]) if num_frames is None else int(num_frames)
        host = {}
        for name, value in fields.items():  # one device-to-host copy per field
            value = value[:stop] if env_index is None else value[:stop, env_index]
            host[name] = np.asarray(value)
        out = np.empty((stop, self.height, self.width, 3), np.uint8)
        for t in range(stop):
            self._load({name: value[t] for name, value in host.items()})
            out[t] = self._draw()
        return out

    def close(self) -> None:
        """Frees the GL context (idempotent)."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""PushT: push a T-shaped block to a goal pose with a disc (planar Push-T).

In the spirit of Diffusion Policy's Push-T. A pusher disc (a sphere of
radius 0.02 m, 0.3 kg) slides on a square table ``[-0.5, 0.5]^2`` (metres),
driven by two motors (x and y force, action in ``[-1, 1]^2``, gear 3 N,
viscous damping 8 N s/m, so the free top speed is about 0.37 m/s; the table
edge is a joint limit). It pushes a T (a bar 0.2 x 0.05 m on top of a stem
0.05 x 0.2 m, 4 cm thick, 0.4 kg) that moves in the plane on three joints
(slide x, slide y, hinge z about its centre of mass). There is no gravity;
joint damping stands in for table friction (5 N s/m in x and y, 0.035 N m s
in yaw, about what uniform friction under the T gives). The T's origin and
pose are those of its centre of mass, 3.75 cm below the bar's lower edge.

The goal pose is fixed: the T at the table centre, upright (angle 0, bar up,
green outline). The T starts 0.1-0.25 m from it in a uniformly random
direction with a uniform random angle; the pusher starts uniformly on the
table, at least 0.2 m from the T's centre.

* Observation ``[15]`` (float32): pusher ``x, y`` (m), pusher ``vx, vy``
  (m/s), T ``x, y`` (m), T ``cos(angle), sin(angle)``, T ``vx, vy`` (m/s) and
  angular velocity (rad/s), goal ``x, y`` (m), goal ``cos(angle),
  sin(angle)``. Angles are counter-clockwise from the x axis.
* Action ``[2]``: motor commands in ``[-1, 1]`` (clipped), x then y.
* Reward: sparse, 1 on the step the goal pose is reached, else 0.
* Success: position error < 2.5 cm (``POS_TOL``) and angle error < 15 deg
  (``ANGLE_TOL``).
* ``terminated``: success, or the T's centre leaves the table (failure).
  Both end the episode with no bootstrap. The time limit (``truncated``,
  200 control steps = 20 s by default) is applied by
  :class:`envs.wrappers.VecEnv`, never here.
* Control step 0.1 s (5 physics steps of 0.02 s; implicit-fast integrator,
  4 Newton iterations).

Only two contact pairs exist (pusher-bar and pusher-stem, sphere-box, with
friction 0.5); everything else has collisions off, and leaving the table is
checked geometrically. The fixed camera ``top`` looks straight down at the
table; a light sits above it.

The scripted expert (:class:`PushTExpert`) works in phases, each a push at a
point of the T, given in the T's frame: first it turns the T (while its angle
error is above 10 deg, until below 4 deg) by pushing near a bar end or at the
stem's foot, choosing the contact whose side-effect translation best moves
the T towards the goal; then it translates the T along one of the T's own
axes at a time, pushing through (just beside) the centre of mass and shifting
the contact sideways to hold the angle. Between pushes it backs out and
circles the T at a safe radius to the next contact, so it pushes from all
sides. ``mode`` (half each) is the order of the translations: 0 = along the
T's x axis (the bar; pushing on the stem's sides) first, then along its y
axis (the stem; pushing on the stem's foot or the top of the bar); 1 = y
first, then x; after every turn it starts again with the mode's axis. It adds temporally
correlated (Ornstein-Uhlenbeck) action noise; a quarter of the episodes are
"sloppy" (three times the noise), which makes most of them fail: the pusher
slips off its contact, knocks the T askew and runs out of time.

Measured (``envs.demos.collect_expert_episodes("push_t", 1000, seed=0)`` and
``envs.demos.episode_stats``):

* expert success 0.805 (0.806 / 0.804 in mode 0 / 1); all failures are
  time-outs (0.195), none left the table;
* mode split 0.516 / 0.484 (mode 0 / 1);
* episode length mean 122.5, min 22, max 200 control steps (122,494 steps);
* env steps/s at batch 1 / 256 / 4096 on the 2-core CPU: MJX 3,970 / 8,063 /
  7,811; C MuJoCo (``mujoco.rollout``, 2 threads, same model) 37,088 / 125,453
  / 142,090.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env

from envs.base import XmlTask, no_mode, settle_mode

# --- geometry (metres, radians); the T's body frame has its origin at the T's centre of mass ---
TABLE_HALF = 0.5
PUSHER_RADIUS = 0.02
HEIGHT = 0.02  # half-height of the T boxes; the pusher centre and the T centre are at z = HEIGHT
BAR_HALF = (0.1, 0.025)
STEM_HALF = (0.025, 0.1)
_BAR_AREA, _STEM_AREA = 4 * BAR_HALF[0] * BAR_HALF[1], 4 * STEM_HALF[0] * STEM_HALF[1]
# bar on top of the stem; y of their centres relative to the centre of mass (area-weighted)
_COM_Y = (_BAR_AREA * BAR_HALF[1] - _STEM_AREA * STEM_HALF[1]) / (_BAR_AREA + _STEM_AREA)
BAR_Y = BAR_HALF[1] - _COM_Y
STEM_Y = -STEM_HALF[1] - _COM_Y
BOXES = ((0.0, BAR_Y, *BAR_HALF), (0.0, STEM_Y, *STEM_HALF))  # (cx, cy, hx, hy) in the T frame
T_RADIUS = max(math.hypot(abs(cx) + hx, abs(cy) + hy) for cx, cy, hx, hy in BOXES)
GOAL_POSE = (0.0, 0.0, 0.0)  # x, y (m), angle (rad)
POS_TOL = 0.025
ANGLE_TOL = math.radians(15.0)
START_RADIUS = (0.1, 0.25)  # the T's start is this far (m) from the goal
EXPERT_SUCCESS = 0.805  # measured, see the module docstring
# Measured env steps/s (benchmarks/env_speed.py), copied into dataset cards.
THROUGHPUT = {
    'push_t': {'mjx': {1: 3970, 256: 8063, 4096: 7811}, 'c': {1: 37088, 256: 125453, 4096: 142090}, 'command': 'python benchmarks/env_speed.py --env=<task> --batch=1,256,4096 (2-core CPU, 2026-11-21)'},
}
PUSHER_CLEARANCE = T_RADIUS + PUSHER_RADIUS + 0.02  # the pusher starts at least this far from the T

_XML = f"""
<mujoco model="push_t">
  <option timestep="0.02" integrator="implicitfast" gravity="0 0 0" iterations="4" ls_iterations="8"/>
  <default>
    <geom contype="0" conaffinity="0"/>
  </default>
  <visual>
    <headlight ambient=".3 .3 .3" diffuse=".3 .3 .3" specular="0 0 0"/>
  </visual>
  <worldbody>
    <light pos="0 0 2" dir="0 0 -1" diffuse=".5 .5 .5" specular=".1 .1 .1"/>
    <camera name="top" pos="0 0 1.35" xyaxes="1 0 0 0 1 0" fovy="45"/>
    <geom name="table" type="plane" size="{TABLE_HALF} {TABLE_HALF} 0.01" rgba=".55 .55 .52 1"/>
    <body name="goal" pos="{GOAL_POSE[0]} {GOAL_POSE[1]} 0.001" euler="0 0 {GOAL_POSE[2]}">
      <geom type="box" pos="0 {BAR_Y} 0" size="{BAR_HALF[0]} {BAR_HALF[1]} 0.001" rgba=".25 .7 .3 .6"/>
      <geom type="box" pos="0 {STEM_Y} 0" size="{STEM_HALF[0]} {STEM_HALF[1]} 0.001" rgba=".25 .7 .3 .6"/>
    </body>
    <body name="pusher" pos="0 0 {HEIGHT}">
      <joint name="pusher_x" type="slide" axis="1 0 0" limited="true"
             range="-{TABLE_HALF} {TABLE_HALF}" damping="8"/>
      <joint name="pusher_y" type="slide" axis="0 1 0" limited="true"
             range="-{TABLE_HALF} {TABLE_HALF}" damping="8"/>
      <geom name="pusher" type="sphere" size="{PUSHER_RADIUS}" mass="0.3" rgba=".2 .4 .8 1"/>
    </body>
    <body name="t" pos="0 0 {HEIGHT}">
      <joint name="t_x" type="slide" axis="1 0 0" damping="5"/>
      <joint name="t_y" type="slide" axis="0 1 0" damping="5"/>
      <joint name="t_yaw" type="hinge" axis="0 0 1" damping="0.035"/>
      <geom name="bar" type="box" pos="0 {BAR_Y} 0" size="{BAR_HALF[0]} {BAR_HALF[1]} {HEIGHT}"
            density="500" rgba=".7 .25 .2 1"/>
      <geom name="stem" type="box" pos="0 {STEM_Y} 0" size="{STEM_HALF[0]} {STEM_HALF[1]} {HEIGHT}"
            density="500" rgba=".7 .25 .2 1"/>
    </body>
  </worldbody>
  <contact>
    <pair geom1="pusher" geom2="bar" condim="3" friction="0.5 0.5"/>
    <pair geom1="pusher" geom2="stem" condim="3" friction="0.5 0.5"/>
  </contact>
  <actuator>
    <motor name="fx" joint="pusher_x" gear="3" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="fy" joint="pusher_y" gear="3" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


def default_config() -> config_dict.ConfigDict:
    """Task constants (seconds). The time limit lives in the env wrapper."""
    return config_dict.create(ctrl_dt=0.1, sim_dt=0.02, episode_length=200)


def wrap_angle(a: jax.Array) -> jax.Array:
    """Angle ``a`` (rad, any shape) wrapped to ``[-pi, pi)``."""
    return (a + jnp.pi) % (2 * jnp.pi) - jnp.pi


def _rot(angle: jax.Array) -> jax.Array:
    c, s = jnp.cos(angle), jnp.sin(angle)
    return jnp.array([[c, -s], [s, c]])


def pose_error(obj: jax.Array, goal: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Position error (m) and absolute angle error (rad) of T pose ``obj [3]`` to ``goal [3]``."""
    return jnp.linalg.norm(obj[:2] - goal[:2]), jnp.abs(wrap_angle(obj[2] - goal[2]))


MODE_SPEED, MODE_SPIN, MODE_ANGLE = 0.03, 0.2, math.radians(10.0)  # m/s, rad/s, rad: a translation push


def translation_mode(mode: jax.Array, obj: jax.Array, vel: jax.Array, goal: jax.Array) -> jax.Array:
    """The episode's mode after one step: the T-frame axis of the first translation push.

    A translation push is a step where the T moves faster than
    ``MODE_SPEED`` while turning slower than ``MODE_SPIN``, already within
    ``MODE_ANGLE`` of the goal angle. Its mode is the T-frame axis it mostly
    moves along: 0 for x (the bar), 1 for y (the stem), as the expert's modes.

    Args:
      mode: int32 scalar, the mode so far; obj: T pose ``[3]`` (x, y, yaw);
      vel: T velocity ``[3]`` (m/s, rad/s); goal: goal pose ``[3]``.

    Returns:
      int32 scalar.
    """
    local = _rot(obj[2]).T @ vel[:2]
    pushed = ((jnp.linalg.norm(vel[:2]) > MODE_SPEED) & (jnp.abs(vel[2]) < MODE_SPIN)
              & (pose_error(obj, goal)[1] < MODE_ANGLE))
    return settle_mode(mode, pushed, jnp.where(jnp.abs(local[0]) >= jnp.abs(local[1]), 0, 1))


def off_table(xy: jax.Array) -> jax.Array:
    """Whether the T's centre of mass ``xy [..., 2]`` (m) is off the table. Returns bool ``[...]``."""
    return jnp.any(jnp.abs(xy) > TABLE_HALF, axis=-1)


class PushT(XmlTask):
    """The planar Push-T task (see module docstring).

    Follows MuJoCo Playground's ``MjxEnv`` interface: ``reset(rng) -> State``,
    ``step(state, action [2]) -> State`` on one environment (vmap for a
    batch). ``state.info`` holds ``terminated`` (bool), ``success`` (bool)
    and ``mode`` (:func:`translation_mode`: 0 the first translation was along
    the T's x axis, 1 along its y axis); ``state.done`` equals ``terminated``
    (float 0/1, as in Playground).
    """

    MODES = ("x_first", "y_first")

    def __init__(self, config: config_dict.ConfigDict | None = None, config_overrides=None):
        super().__init__(_XML, "push_t", 2, config or default_config(), config_overrides)
        self._goal = jnp.array(GOAL_POSE, jnp.float32)

    def _obs(self, data: mjx.Data) -> jax.Array:
        return observation(data.qpos, data.qvel, self._goal)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        """Samples the T's start pose and the pusher's start. Returns a State with obs ``[15]``."""
        k_r, k_phi, k_yaw, k_push = jax.random.split(rng, 4)
        r = jax.random.uniform(k_r, (), minval=START_RADIUS[0], maxval=START_RADIUS[1])
        phi = jax.random.uniform(k_phi, (), minval=-jnp.pi, maxval=jnp.pi)
        obj_xy = self._goal[:2] + r * jnp.array([jnp.cos(phi), jnp.sin(phi)])
        yaw = jax.random.uniform(k_yaw, (), minval=-jnp.pi, maxval=jnp.pi)
        lim = TABLE_HALF - 2 * PUSHER_RADIUS
        pusher = jax.random.uniform(k_push, (2,), minval=-lim, maxval=lim)
        rel = pusher - obj_xy
        dist = jnp.linalg.norm(rel)
        # too close to the T: move the pusher out radially (then keep it on the table)
        pusher = jnp.where(dist < PUSHER_CLEARANCE,
                           obj_xy + rel / jnp.maximum(dist, 1e-6) * PUSHER_CLEARANCE, pusher)
        pusher = jnp.clip(pusher, -lim, lim)
        qpos = jnp.concatenate([pusher, obj_xy, yaw[None]])
        data = mjx_env.make_data(self._mj_model, qpos=qpos, qvel=jnp.zeros(5), ctrl=jnp.zeros(2),
                                 impl="jax")
        data = mjx.kinematics(self._mjx_model, data)  # positions for rendering; step() does the rest
        zero = jnp.zeros((), jnp.float32)
        pos_err, ang_err = pose_error(qpos[2:], self._goal)
        info = {"terminated": jnp.zeros((), bool), "success": jnp.zeros((), bool), "mode": no_mode()}
        metrics = {"success": zero, "off_table": zero, "position_error": pos_err, "angle_error": ang_err}
        return mjx_env.State(data, self._obs(data), zero, zero, metrics, info)

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        """Applies ``action [2]`` (clipped to ``[-1, 1]``) for one control step (0.1 s)."""
        action = jnp.clip(action, -1.0, 1.0)
        data = mjx_env.step(self._mjx_model, state.data, action, self.n_substeps)
        pos_err, ang_err = pose_error(data.qpos[2:], self._goal)
        success = (pos_err < POS_TOL) & (ang_err < ANGLE_TOL)
        fell = off_table(data.qpos[2:4]) & ~success
        terminated = success | fell
        info = {**state.info, "terminated": terminated, "success": success,
                "mode": translation_mode(state.info["mode"], data.qpos[2:5], data.qvel[2:5], self._goal)}
        metrics = {"success": success.astype(jnp.float32), "off_table": fell.astype(jnp.float32),
                   "position_error": pos_err, "angle_error": ang_err}
        return state.replace(data=data, obs=self._obs(data), reward=success.astype(jnp.float32),
                             done=terminated.astype(jnp.float32), metrics=metrics, info=info)


def observation(qpos: jax.Array, qvel: jax.Array, goal: jax.Array) -> jax.Array:
    """The flat observation ``[15]`` from ``qpos [5]``, ``qvel [5]`` and goal pose ``[3]``."""
    yaw, goal_yaw = qpos[4], goal[2]
    return jnp.concatenate([
        qpos[:2], qvel[:2], qpos[2:4], jnp.stack([jnp.cos(yaw), jnp.sin(yaw)]), qvel[2:5],
        goal[:2], jnp.stack([jnp.cos(goal_yaw), jnp.sin(goal_yaw)]),
    ]).astype(jnp.float32)


# Pushes, in the T frame: where the pusher's centre touches the T, and the push direction.
# Rotations (indices 0-5; 0-2 turn the T counter-clockwise, 3-5 clockwise): under a bar end
# (pushing up), on top of the other bar end (pushing down), at the side of the stem's foot.
# Translations (6-9: +x, -x, +y, -y) pass through the centre of mass: at the stem's sides, at the
# stem's foot and on top of the bar; the expert shifts them sideways to steer the angle.
_BAR_BOTTOM, _BAR_TOP = BAR_Y - BAR_HALF[1], BAR_Y + BAR_HALF[1]
_STEM_SIDE, _STEM_FOOT = STEM_HALF[0] + PUSHER_RADIUS, STEM_Y - STEM_HALF[1] - PUSHER_RADIUS
_ARM = BAR_HALF[0] - 0.015
_SIDE_Y = -0.008  # below the centre of mass, to keep the pusher clear of the bar
_LOW = STEM_Y - STEM_HALF[1] + 0.015
_PUSH_AT = np.array([
    [_ARM, _BAR_BOTTOM - PUSHER_RADIUS], [-_ARM, _BAR_TOP + PUSHER_RADIUS], [-_STEM_SIDE, _LOW],
    [-_ARM, _BAR_BOTTOM - PUSHER_RADIUS], [_ARM, _BAR_TOP + PUSHER_RADIUS], [_STEM_SIDE, _LOW],
    [-_STEM_SIDE, _SIDE_Y], [_STEM_SIDE, _SIDE_Y], [0.0, _STEM_FOOT], [0.0, _BAR_TOP + PUSHER_RADIUS],
])
_PUSH_DIR = np.array([[0, 1], [0, -1], [1, 0], [0, 1], [0, -1], [-1, 0],
                      [1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)


_DEG10, _DEG4 = math.radians(10.0), math.radians(4.0)


class PushTExpert:
    """Scripted, noisy, two-mode expert for :class:`PushT` (see module docstring).

    Per episode it draws ``mode`` (0 = T's x axis first, 1 = y first; half
    each) and whether it is sloppy (probability ``sloppy_prob``). Each step it
    picks a push (an entry of ``_PUSH_AT``/``_PUSH_DIR``, kept in
    ``plan["push"]``): a turn while the angle error exceeds ``angle_hi`` (rad)
    until it is below ``angle_lo``, else a translation along the current
    T-frame axis, which moves on to the other axis once its error is below
    ``pos_lo`` (m) and the other's above ``pos_hi``. Lined up behind the
    contact (within 1.5 cm) it pushes: its target is the contact point moved
    ``clip(push_gain * error, min_depth, max_depth)`` metres into the T (the
    error in m, or for a turn the angle error times the 8.5 cm lever), a
    translation shifted sideways by ``clip(steer_gain * angle error,
    +-max_steer)`` m. Otherwise it backs out to ``orbit_radius`` (m) around
    the T's centre, circles, and comes in to ``standoff`` m behind the
    contact. Rotation contacts are scored ``align_weight`` times their
    translation towards the goal (m) minus the pusher's distance to them (m).
    A PD law (gains ``kp`` per m, ``kd`` per m/s) tracks the target, plus OU
    noise (correlation ``noise_corr`` per step, stationary std ``noise_std``,
    or ``sloppy_noise_std`` when sloppy), clipped to ``[-1, 1]``.

    All functions act on one environment; vmap them for a batch.
    """

    def __init__(self, noise_std=0.2, sloppy_noise_std=0.6, sloppy_prob=0.25, noise_corr=0.8,
                 kp=15.0, kd=0.5, standoff=0.025, orbit_radius=T_RADIUS + PUSHER_RADIUS + 0.04,
                 angle_hi=_DEG10, angle_lo=_DEG4, pos_hi=0.015, pos_lo=0.008, align_weight=3.0,
                 push_gain=1.0, min_depth=0.01, max_depth=0.06, steer_gain=0.1, max_steer=0.012):
        self.noise_std, self.sloppy_noise_std = noise_std, sloppy_noise_std
        self.sloppy_prob, self.noise_corr, self.kp, self.kd = sloppy_prob, noise_corr, kp, kd
        self.standoff, self.orbit_radius = standoff, orbit_radius
        self.angle_hi, self.angle_lo, self.pos_hi, self.pos_lo = angle_hi, angle_lo, pos_hi, pos_lo
        self.align_weight = align_weight
        self.push_gain, self.min_depth, self.max_depth = push_gain, min_depth, max_depth
        self.steer_gain, self.max_steer = steer_gain, max_steer

    def init(self, key: jax.Array) -> dict:
        """Draws the episode's plan: ``mode`` (int32), ``sloppy`` (bool) and the controller state."""
        k_mode, k_sloppy = jax.random.split(key)
        mode = jax.random.bernoulli(k_mode).astype(jnp.int32)
        return {
            "mode": mode,
            "sloppy": jax.random.bernoulli(k_sloppy, self.sloppy_prob),
            "axis": mode,  # T-frame axis being corrected: 0 = x, 1 = y
            "rotating": jnp.zeros((), bool),
            "engaged": jnp.zeros((), bool),
            "push": -jnp.ones((), jnp.int32),  # index into the push table, -1 = none yet
            "noise": jnp.zeros(2),
        }

    def act(self, plan: dict, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """Action ``[2]`` in ``[-1, 1]`` for ``obs [15]``; returns ``(action, new_plan)``."""
        p, pv, o = obs[0:2], obs[2:4], obs[4:6]
        yaw = jnp.arctan2(obs[7], obs[6])
        goal, goal_yaw = obs[11:13], jnp.arctan2(obs[14], obs[13])
        rot = _rot(yaw)
        push_at, push_dir = jnp.asarray(_PUSH_AT, jnp.float32), jnp.asarray(_PUSH_DIR)

        # which correction: the angle first (with hysteresis), then one T-frame axis at a time
        ang_err = wrap_angle(goal_yaw - yaw)
        rotating = jnp.where(plan["rotating"], jnp.abs(ang_err) > self.angle_lo,
                             jnp.abs(ang_err) > self.angle_hi)
        err = rot.T @ (goal - o)  # position error in the T frame
        cur, other = err[plan["axis"]], err[1 - plan["axis"]]
        switch = (jnp.abs(cur) < self.pos_lo) & (jnp.abs(other) > self.pos_hi)
        # while turning, the T-frame errors swing around: hold the mode's axis for afterwards
        axis = jnp.where(rotating, plan["mode"], jnp.where(switch, 1 - plan["axis"], plan["axis"]))
        e_axis = err[axis]
        t_push = 6 + 2 * axis + (e_axis < 0)
        t_depth = jnp.abs(e_axis)

        # rotation: of the three pushes turning the right way, the one whose side effect (a
        # translation along its push direction) best moves the T towards the goal, traded against
        # the pusher's way there; keep it while it turns the right way and does not push the T
        # away from the goal (no dithering between contacts)
        first = jnp.where(ang_err > 0, 0, 3)
        at_all = o + jax.lax.dynamic_slice_in_dim(push_at, first, 3) @ rot.T
        align = jax.lax.dynamic_slice_in_dim(push_dir, first, 3) @ (rot.T @ (goal - o))
        score = self.align_weight * align - jnp.linalg.norm(at_all - p, axis=-1)
        kept = plan["push"] - first
        keep = (kept >= 0) & (kept < 3) & (align[jnp.clip(kept, 0, 2)] > -self.pos_hi)
        k = jnp.where(keep, kept, jnp.argmax(score))
        r_push = first + k
        r_depth = jnp.abs(ang_err) * _ARM

        push = jnp.where(rotating, r_push, t_push).astype(jnp.int32)
        depth = jnp.clip(self.push_gain * jnp.where(rotating, r_depth, t_depth),
                         self.min_depth, self.max_depth)
        n_t = push_dir[push]
        # steering: a translation push passes beside the centre of mass to turn the T back
        side = jnp.array([-n_t[1], n_t[0]])
        steer = jnp.clip(-self.steer_gain * ang_err, -self.max_steer, self.max_steer)
        at_t = push_at[push] + jnp.where(rotating, 0.0, steer) * side
        at, n = o + rot @ at_t, rot @ n_t

        # engage when lined up behind the contact; disengage when sliding off or on a new push
        rel = p - at
        along = rel @ n
        lateral = jnp.abs(rel @ jnp.array([-n[1], n[0]]))
        engaged = jnp.where((push == plan["push"]) & plan["engaged"],
                            (lateral < 0.02) & (along < 0.02),
                            (lateral < 0.015) & (along > -self.standoff - 0.02) & (along < 0.005))

        # not engaged: orbit around the T at a safe radius, then come in along the staging ray
        stage = at - n * self.standoff
        rel_p, rel_s = p - o, stage - o
        phi_p, phi_s = jnp.arctan2(rel_p[1], rel_p[0]), jnp.arctan2(rel_s[1], rel_s[0])
        dphi = wrap_angle(phi_s - phi_p)
        # inside the orbit (e.g. after a push): back out radially before going round
        outside = jnp.linalg.norm(rel_p) > self.orbit_radius - 0.03
        phi_t = phi_p + jnp.where(outside, jnp.clip(dphi, -0.6, 0.6), 0.0)
        orbit = o + self.orbit_radius * jnp.array([jnp.cos(phi_t), jnp.sin(phi_t)])
        target = jnp.where(engaged, at + n * depth, jnp.where(jnp.abs(dphi) < 0.2, stage, orbit))

        std = jnp.where(plan["sloppy"], self.sloppy_noise_std, self.noise_std)
        c = self.noise_corr
        noise = c * plan["noise"] + jnp.sqrt(1 - c**2) * std * jax.random.normal(key, (2,))
        action = jnp.clip(self.kp * (target - p) - self.kd * pv + noise, -1.0, 1.0)
        new_plan = {**plan, "axis": axis, "rotating": rotating, "engaged": engaged, "push": push,
                    "noise": noise}
        return action, new_plan

"""PickPlace / PickPlaceTwo: pick cubes up with a parallel gripper and place them on targets.

Model (built here, no asset files). A table (plane, top at z = 0, the usable
square ``[-0.3, 0.3]^2`` m), cubes of edge 4 cm (mass 50 g) on free joints,
and a parallel gripper with no arm: a hand body on three slide joints
(x, y, z; gravity compensated), each a velocity servo (a motor plus an equal
joint damping, 40 N s/m), and two fingers (vertical capsules, radius 8 mm) on
slide joints along x, each driven by a position servo (kp 300 N/m, force
capped at 10 N, heavily damped so that closing takes about 0.2 s). The hand
position is the point midway between the fingers at mid-height of their
gripping length, so a cube resting on the table is grasped with the hand at
z = 2 cm. Targets are visual-only mocap discs. Collisions are restricted
with contype/conaffinity to finger-cube, cube-table and cube-cube (two-cube
task); the hand, fingers and table never collide with each other (hand
z >= 1.8 cm is a joint limit). Contacts per physics step: 8 (one cube: 4
cube-table, 2 per finger), 20 (two cubes: 4 more cube-table, 4 more
finger-cube, 4 cube-cube). Friction 1, pyramidal cones, contact solref
0.01 s; a held cube creeps down by about 1 cm over 3 s of fast carrying.

Solver settings: Newton (4 iterations, 6 line-search steps), semi-implicit
Euler (joint damping implicit) and a sparse mass matrix. A dense mass matrix
or the implicitfast integrator add LAPACK Cholesky calls that XLA:CPU may run
concurrently, and jaxlib 0.10.2's batched LAPACK kernels then deadlock its
intra-op thread pool (seen here at batch 1000: every pool thread waits in
``lapack_spotrf_ffi``/``ParallelBatchMap``); with these settings the only
Cholesky is the Newton solver's, which runs alone. Grasping needs the 5 ms
physics step: at 10 ms the held cube slips out.

* ``PickPlace``: one cube starts at a random xy in ``[-0.16, 0.16]^2``
  with a random yaw in ``[-30, 30]`` degrees; its target is a random xy in
  the same square at least 10 cm away. Time limit 150 control steps (7.5 s).
* ``PickPlaceTwo``: two cubes (A red, B blue), each with its own target
  (green for A, cyan for B); all four positions are at least 10 cm apart.
  Time limit 300 control steps (15 s).

Observation (flat float32; ``n`` = number of cubes, size ``7 + 15 n``:
``[22]`` for ``PickPlace``, ``[37]`` for ``PickPlaceTwo``; :func:`split_obs`
names the parts)::

    [0:3]    hand position (m, world frame; table top at z = 0)
    [3:6]    hand velocity (m/s)
    [6]      finger opening: gap between the finger surfaces (m, 0 .. 0.09)
    then 13 per cube i, starting at 7 + 13 i:
    [+0:3]   cube centre position (m)
    [+3:7]   cube orientation quaternion (w, x, y, z), sign chosen so w >= 0
    [+7:10]  cube linear velocity (m/s)
    [+10:13] cube angular velocity (rad/s, world frame)
    then 2 per target i, starting at 7 + 13 n + 2 i:
    [+0:2]   target i xy (m); targets lie on the table

Action ``[4]`` in ``[-1, 1]``: hand velocity command x, y, z (times
``V_MAX`` = 0.4 m/s) and the gripper command (-1 fully open, 9 cm gap;
+1 fully closed; in between, the finger target gap is linear in it).

* Reward: sparse, 1 on the step all cubes are placed, else 0.
* A cube is *placed* when its centre is within ``PLACE_TOL`` = 2.5 cm of its
  target in xy and it rests on the table (centre below 2.5 cm, i.e. not
  lifted; it may still be between the fingers).
* ``terminated``: success (every cube placed), or failure when a cube
  leaves the table (|x| or |y| > 0.3 m, or z < -0.05 m). The time limit
  (``truncated``) is applied by :class:`envs.wrappers.VecEnv`, never here.
* Control step 0.05 s (10 physics steps of 0.005 s).

Scripted experts (state machines over the observation, jit/vmap-able, with
Ornstein-Uhlenbeck action noise; the plan only carries the mode, the noise
state, sloppiness and a grasp height offset): hover above the current cube with the gripper open, descend,
close, lift to a carry height, move over the target, descend until the cube
touches the table, open, rise. A failed grasp (fingers closed on nothing) or
a dropped cube is retried. A share of episodes are sloppy (larger noise and
a grasp height up to 1.6 cm too high), which produces realistic
failures: missed grasps, pushed or slipping cubes and slow retries that end
in time-outs.

* ``PickPlaceExpert`` modes: 0 = high carry (hand at 14 cm while moving the
  cube), 1 = low carry (6 cm); half each.
* ``PickPlaceTwoExpert`` modes: 0 = cube A first, 1 = cube B first; half
  each. Carry height 11 cm.

Measured (``envs.demos.collect_expert_episodes(task, 1000, seed=0)``, default
batch 1024, and ``envs.demos.episode_stats``; 2-core CPU shared with other jobs):

* pick_place, N = 1000: success 0.76 (mode 0 high carry 0.71, mode 1 low
  carry 0.81), mode split 0.52 / 0.48, failures all time-outs (none off the
  table), episode length mean 73 (min 23, max 150) steps; 98 s with compile.
* pick_place_two, N = 1000: success 0.66 (A first 0.64, B first 0.68), mode
  split 0.52 / 0.48, failures all time-outs, episode length mean 171 (min
  69, max 300) steps; 300 s with compile.
* Compiling one MJX step takes 25-45 s here; a rollout at batch 1000 ran
  about 2k (one cube) and 1k (two cubes) env steps/s.
* pick_place env steps/s at batch 1 / 256 / 4096 on the 2-core CPU: MJX 616 /
  2,314 / 2,127; C MuJoCo (``mujoco.rollout``, 2 threads, same model) 12,127 /
  17,675 / 22,616 (batch 4096 and C with another benchmark running).
* pick_place_two env steps/s at batch 1 / 256 / 4096 on the 2-core CPU: MJX
  635 / 1,323 / 1,207; C MuJoCo (``mujoco.rollout``, 2 threads, same model)
  6,987 / 15,910 / 15,240 (batch 1/256 MJX with another benchmark running).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env

from envs.base import XmlTask, no_mode, settle_mode

CUBE_HALF = 0.02          # m, half the cube edge
CUBE_MASS = 0.05          # kg
TABLE_HALF = 0.3          # m, cubes beyond |x| or |y| > TABLE_HALF have fallen off
REGION_HALF = 0.16        # m, cubes and targets start in [-REGION_HALF, REGION_HALF]^2
MIN_SEPARATION = 0.1      # m, between any two of the initial cubes and targets (xy)
MAX_YAW = 0.5236          # rad, initial cube yaw in [-MAX_YAW, MAX_YAW]
PLACE_TOL = 0.025         # m, xy distance to the target that counts as placed
REST_HEIGHT = 0.025       # m, a cube centre below this rests on the table
V_MAX = 0.4               # m/s, hand speed at |action| = 1
FINGER_RADIUS = 0.008     # m
MAX_GAP = 0.09            # m, finger gap when fully open
HAND_Z_MIN = 0.018        # m, lower joint limit of the hand (fingertips just above the table)
HAND_START = (0.0, 0.0, 0.14)
EXPERT_SUCCESS = {"pick_place": 0.76, "pick_place_two": 0.66}  # measured, see the module docstring
# Measured env steps/s (benchmarks/env_speed.py), copied into dataset cards.
THROUGHPUT = {
    'pick_place': {'mjx': {1: 616, 256: 2314, 4096: 2127}, 'c': {1: 12127, 256: 17675, 4096: 22616}, 'command': 'python benchmarks/env_speed.py --env=<task> --batch=1,256,4096 (2-core CPU, 2026-11-21)', 'note': 'batch 4096 and C figures measured with another benchmark running'},
    'pick_place_two': {'mjx': {1: 635, 256: 1323, 4096: 1207}, 'c': {1: 6987, 256: 15910, 4096: 15240}, 'command': 'python benchmarks/env_speed.py --env=<task> --batch=1,256,4096 (2-core CPU, 2026-11-21)', 'note': 'batch 1/256 MJX figures measured with another benchmark running'},
}

_HAND_KV = 40.0           # N s/m, hand joint damping = motor gear: a velocity servo, integrated implicitly
_SOLVER_ITERATIONS, _LS_ITERATIONS = 4, 6
_FALLBACK_LAYOUT = ((-0.12, -0.12), (0.12, 0.12), (0.12, -0.12), (-0.12, 0.12))
_CUBE_RGBA = (".85 .2 .2 1", ".2 .35 .85 1")
_TARGET_RGBA = (".2 .8 .2 .5", ".2 .8 .8 .5")


def _xml(num_cubes: int) -> str:
    """MJCF of the scene with ``num_cubes`` cubes and targets."""
    cubes, targets = [], []
    for i in range(num_cubes):
        cubes.append(f"""
    <body name="cube{i}" pos="{0.1 * i} 0.2 {CUBE_HALF}">
      <freejoint name="cube{i}"/>
      <geom name="cube{i}" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" mass="{CUBE_MASS}"
            contype="4" conaffinity="7" rgba="{_CUBE_RGBA[i]}"/>
    </body>""")
        targets.append(f"""
    <body name="target{i}" mocap="true" pos="{0.1 * i} -0.2 0.0005">
      <geom name="target{i}" type="cylinder" size="{PLACE_TOL} 0.0005" rgba="{_TARGET_RGBA[i]}"/>
    </body>""")
    q = MAX_GAP / 2
    r = FINGER_RADIUS
    return f"""
<mujoco model="pick_place_{num_cubes}">
  <option timestep="0.005" integrator="Euler" cone="pyramidal" solver="Newton" jacobian="sparse"
          iterations="{_SOLVER_ITERATIONS}" ls_iterations="{_LS_ITERATIONS}"/>
  <visual><global offwidth="640" offheight="480"/></visual>
  <default>
    <geom contype="0" conaffinity="0" friction="1 0.005 0.0001" solref="0.01 1"/>
  </default>
  <worldbody>
    <light pos="0 -0.3 1.2" dir="0 0.3 -1" diffuse=".8 .8 .8"/>
    <camera name="top" pos="0 -0.42 0.4" xyaxes="1 0 0 0 0.66 0.75"/>
    <geom name="table" type="plane" size="{TABLE_HALF} {TABLE_HALF} 0.01" rgba=".82 .78 .7 1"
          contype="1" conaffinity="0"/>
    <body name="hand" pos="0 0 0" gravcomp="1">
      <joint name="hand_x" type="slide" damping="{_HAND_KV}" axis="1 0 0" limited="true" range="-0.28 0.28"/>
      <joint name="hand_y" type="slide" damping="{_HAND_KV}" axis="0 1 0" limited="true" range="-0.28 0.28"/>
      <joint name="hand_z" type="slide" damping="{_HAND_KV}" axis="0 0 1" limited="true" range="{HAND_Z_MIN} 0.3"/>
      <geom name="palm" type="box" pos="0 0 0.05" size="0.065 0.015 0.008" mass="0.3" rgba=".3 .3 .3 1"/>
      <body name="finger_l" pos="{-r} 0 0" gravcomp="1">
        <joint name="finger_l" type="slide" axis="-1 0 0" limited="true" range="0 {q}" damping="40"/>
        <geom name="finger_l" type="capsule" fromto="0 0 -0.01 0 0 0.045" size="{r}" mass="0.03"
              contype="2" conaffinity="0" rgba=".5 .5 .5 1"/>
      </body>
      <body name="finger_r" pos="{r} 0 0" gravcomp="1">
        <joint name="finger_r" type="slide" axis="1 0 0" limited="true" range="0 {q}" damping="40"/>
        <geom name="finger_r" type="capsule" fromto="0 0 -0.01 0 0 0.045" size="{r}" mass="0.03"
              contype="2" conaffinity="0" rgba=".5 .5 .5 1"/>
      </body>
    </body>{"".join(cubes)}{"".join(targets)}
  </worldbody>
  <actuator>
    <motor name="hand_x" joint="hand_x" gear="{_HAND_KV}" ctrllimited="true" ctrlrange="{-V_MAX} {V_MAX}"
              forcelimited="true" forcerange="-20 20"/>
    <motor name="hand_y" joint="hand_y" gear="{_HAND_KV}" ctrllimited="true" ctrlrange="{-V_MAX} {V_MAX}"
              forcelimited="true" forcerange="-20 20"/>
    <motor name="hand_z" joint="hand_z" gear="{_HAND_KV}" ctrllimited="true" ctrlrange="{-V_MAX} {V_MAX}"
              forcelimited="true" forcerange="-20 20"/>
    <position name="finger_l" joint="finger_l" kp="300" ctrllimited="true" ctrlrange="0 {q}"
              forcelimited="true" forcerange="-10 10"/>
    <position name="finger_r" joint="finger_r" kp="300" ctrllimited="true" ctrlrange="0 {q}"
              forcelimited="true" forcerange="-10 10"/>
  </actuator>
</mujoco>
"""


def default_config(num_cubes: int = 1) -> config_dict.ConfigDict:
    """Task constants (seconds, control steps). The time limit lives in the env wrapper."""
    return config_dict.create(ctrl_dt=0.05, sim_dt=0.005, episode_length=150 if num_cubes == 1 else 300)


def obs_size(num_cubes: int) -> int:
    """Observation size for ``num_cubes`` cubes: ``7 + 15 * num_cubes``."""
    return 7 + 15 * num_cubes


def split_obs(obs: jax.Array, num_cubes: int) -> dict:
    """Named views of ``obs [..., 7 + 15 n]`` (see module docstring).

    Returns a dict: ``hand [..., 3]``, ``hand_vel [..., 3]``, ``gap [...]``,
    ``cube_pos [..., n, 3]``, ``cube_quat [..., n, 4]``, ``cube_vel [..., n, 3]``,
    ``cube_angvel [..., n, 3]``, ``target [..., n, 2]``.
    """
    n = num_cubes
    cubes = obs[..., 7:7 + 13 * n].reshape(obs.shape[:-1] + (n, 13))
    return {"hand": obs[..., 0:3], "hand_vel": obs[..., 3:6], "gap": obs[..., 6],
            "cube_pos": cubes[..., 0:3], "cube_quat": cubes[..., 3:7], "cube_vel": cubes[..., 7:10],
            "cube_angvel": cubes[..., 10:13],
            "target": obs[..., 7 + 13 * n:7 + 15 * n].reshape(obs.shape[:-1] + (n, 2))}


def placed(cube_pos: jax.Array, target: jax.Array) -> jax.Array:
    """Whether cubes at ``cube_pos [..., 3]`` rest on the table within ``PLACE_TOL`` of ``target [..., 2]``."""
    near = jnp.linalg.norm(cube_pos[..., :2] - target, axis=-1) < PLACE_TOL
    return near & (cube_pos[..., 2] < REST_HEIGHT)


def off_table(cube_pos: jax.Array) -> jax.Array:
    """Whether cubes at ``cube_pos [..., 3]`` (m) have left the table. Returns bool ``[...]``."""
    return (jnp.max(jnp.abs(cube_pos[..., :2]), axis=-1) > TABLE_HALF) | (cube_pos[..., 2] < -0.05)


def _sample_layout(key: jax.Array, num_points: int, candidates: int = 64) -> jax.Array:
    """``num_points`` xy points in the start square, pairwise >= ``MIN_SEPARATION`` apart.

    Draws ``candidates`` layouts and keeps the first valid one (rejection
    sampling with a fixed budget; for 4 points about 15% of draws are valid,
    so all 64 fail with probability ~1e-5, and then a fixed layout is used).
    Returns ``[num_points, 2]`` (m).
    """
    pts = jax.random.uniform(key, (candidates, num_points, 2), minval=-REGION_HALF, maxval=REGION_HALF)
    dist = jnp.linalg.norm(pts[:, :, None] - pts[:, None, :], axis=-1)
    dist = dist + jnp.eye(num_points) * 1e3
    valid = jnp.min(dist, axis=(1, 2)) >= MIN_SEPARATION
    fallback = jnp.asarray(_FALLBACK_LAYOUT[:num_points])
    return jnp.where(jnp.any(valid), pts[jnp.argmax(valid)], fallback)


class _PickPlaceBase(XmlTask):
    """Shared model, reset and step of the pick-and-place tasks (``NUM_CUBES`` cubes)."""

    NUM_CUBES = 1

    def __init__(self, config: config_dict.ConfigDict | None = None, config_overrides=None):
        super().__init__(_xml(self.NUM_CUBES), f"pick_place_{self.NUM_CUBES}", 4, config or default_config(self.NUM_CUBES), config_overrides)
        self._cube_qpos = [self._mj_model.jnt_qposadr[self._mj_model.joint(f"cube{i}").id]
                           for i in range(self.NUM_CUBES)]
        self._cube_qvel = [self._mj_model.jnt_dofadr[self._mj_model.joint(f"cube{i}").id]
                           for i in range(self.NUM_CUBES)]

    def _cubes(self, data: mjx.Data) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Cube positions ``[n, 3]``, quaternions ``[n, 4]``, velocities and angular velocities ``[n, 3]``."""
        qpos = jnp.stack([data.qpos[a:a + 7] for a in self._cube_qpos])
        qvel = jnp.stack([data.qvel[a:a + 6] for a in self._cube_qvel])
        return qpos[:, :3], qpos[:, 3:7], qvel[:, :3], qvel[:, 3:6]

    def _obs(self, data: mjx.Data, targets: jax.Array) -> jax.Array:
        pos, quat, vel, angvel = self._cubes(data)
        quat = quat * jnp.where(quat[:, :1] < 0, -1.0, 1.0)
        cubes = jnp.concatenate([pos, quat, vel, angvel], axis=1).reshape(-1)
        gap = data.qpos[3] + data.qpos[4]
        return jnp.concatenate([data.qpos[:3], data.qvel[:3], gap[None], cubes,
                                targets.reshape(-1)]).astype(jnp.float32)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        """Samples cube and target positions, cube yaws and the hand start. Returns a State (obs ``[7 + 15 n]``)."""
        n = self.NUM_CUBES
        k_layout, k_yaw, k_hand = jax.random.split(rng, 3)
        layout = _sample_layout(k_layout, 2 * n)
        cubes_xy, targets = layout[:n], layout[n:]
        yaw = jax.random.uniform(k_yaw, (n,), minval=-MAX_YAW, maxval=MAX_YAW)
        hand = jnp.asarray(HAND_START) + jax.random.uniform(k_hand, (3,), minval=-0.03, maxval=0.03)
        qpos = jnp.zeros(self._mj_model.nq).at[:3].set(hand).at[3:5].set(MAX_GAP / 2)
        for i, a in enumerate(self._cube_qpos):
            cube = jnp.concatenate([cubes_xy[i], jnp.full((1,), CUBE_HALF),
                                    jnp.stack([jnp.cos(yaw[i] / 2), 0.0, 0.0, jnp.sin(yaw[i] / 2)])])
            qpos = qpos.at[a:a + 7].set(cube)
        ctrl = jnp.zeros(self._mj_model.nu).at[3:5].set(MAX_GAP / 2)
        mocap_pos = jnp.concatenate([targets, jnp.full((n, 1), 0.0005)], axis=1)
        data = mjx_env.make_data(self._mj_model, qpos=qpos, qvel=jnp.zeros(self._mj_model.nv), ctrl=ctrl,
                                 mocap_pos=mocap_pos, impl="jax")
        data = mjx.kinematics(self._mjx_model, data)  # poses for rendering; step() does the rest
        zero = jnp.zeros((), jnp.float32)
        info = {"targets": targets, "terminated": jnp.zeros((), bool), "success": jnp.zeros((), bool),
                "mode": no_mode()}
        metrics = {"success": zero, "off_table": zero, "placed": zero,
                   "target_distance": jnp.mean(jnp.linalg.norm(cubes_xy - targets, axis=-1))}
        return mjx_env.State(data, self._obs(data, targets), zero, zero, metrics, info)

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        """Applies ``action [4]`` (clipped to ``[-1, 1]``) for one control step (0.05 s)."""
        action = jnp.clip(action, -1.0, 1.0)
        finger = 0.25 * MAX_GAP * (1.0 - action[3])  # target of each finger joint (m)
        ctrl = jnp.concatenate([action[:3] * V_MAX, jnp.stack([finger, finger])])
        data = mjx_env.step(self._mjx_model, state.data, ctrl, self.n_substeps)
        targets = state.info["targets"]
        pos = self._cubes(data)[0]
        is_placed = placed(pos, targets)
        success = jnp.all(is_placed)
        fell = jnp.any(off_table(pos)) & ~success
        terminated = success | fell
        info = {**state.info, "terminated": terminated, "success": success,
                "mode": self._mode(state.info["mode"], pos, success)}
        metrics = {"success": success.astype(jnp.float32), "off_table": fell.astype(jnp.float32),
                   "placed": jnp.mean(is_placed.astype(jnp.float32)),
                   "target_distance": jnp.mean(jnp.linalg.norm(pos[:, :2] - targets, axis=-1))}
        return state.replace(data=data, obs=self._obs(data, targets), reward=success.astype(jnp.float32),
                             done=terminated.astype(jnp.float32), metrics=metrics, info=info)


class PickPlace(_PickPlaceBase):
    """Pick one cube and place it on its target (see module docstring).

    MuJoCo Playground ``MjxEnv`` interface on one environment (vmap for a
    batch): ``reset(rng) -> State`` (obs ``[22]``), ``step(state, action [4])``.
    ``state.info`` holds ``terminated``, ``success`` (bool), ``targets``
    ``[1, 2]`` and ``mode`` (0: the cube was carried high, 1: low);
    ``state.done`` equals ``terminated`` (float 0/1).
    """

    NUM_CUBES = 1
    MODES = ("high", "low")
    HIGH_CARRY_Z = 0.10  # m: a cube centre above this was carried high (the expert's carries: 14 and 6 cm)

    def _mode(self, mode: jax.Array, pos: jax.Array, success: jax.Array) -> jax.Array:
        """0 (high) once the cube's centre rises above :attr:`HIGH_CARRY_Z`; 1 (low) if placed without."""
        high = pos[0, 2] > self.HIGH_CARRY_Z
        return settle_mode(mode, high | success, jnp.where(high, 0, 1))


class PickPlaceTwo(_PickPlaceBase):
    """Place two cubes, each on its own target, in either order (see module docstring).

    Same interface as :class:`PickPlace`, with obs ``[37]`` and ``targets [2, 2]``;
    ``info['mode']`` is the cube lifted first (0: A, 1: B).
    """

    NUM_CUBES = 2
    MODES = ("a_first", "b_first")
    LIFTED_Z = CUBE_HALF + 0.02  # m: a cube centre above this is off the table (lifted)

    def _mode(self, mode: jax.Array, pos: jax.Array, success: jax.Array) -> jax.Array:
        """The cube lifted first: 0 for A (red), 1 for B (blue); if both rise in one step, the higher."""
        del success
        z = pos[:, 2]
        return settle_mode(mode, jnp.any(z > self.LIFTED_Z), jnp.argmax(z))


class _PickPlaceExpertBase:
    """Scripted pick-and-place expert shared by both tasks (see module docstring).

    Per episode (:meth:`init`) it draws a ``mode`` (half each), whether it is
    sloppy (probability ``sloppy_prob``) and a grasp height offset (0 to
    ``sloppy_grasp_dz`` m when sloppy, else within 2 mm). :meth:`act` picks the
    current cube (:meth:`_current`) and runs a state machine on the observation
    (hover, descend, close, lift, carry, lower, release), steering the hand by a
    proportional velocity law (gain ``kp`` 1/s) and adding OU noise
    (correlation ``noise_corr`` per step, stationary std ``noise_std`` or
    ``sloppy_noise_std``, in action units) to all four action channels.

    All functions act on one environment; vmap them for a batch.
    """

    NUM_CUBES = 1
    HOVER_Z = 0.08  # m, hand height when moving to a cube

    def __init__(self, noise_std=0.1, sloppy_noise_std=0.35, sloppy_prob=0.4, sloppy_grasp_dz=0.016,
                 noise_corr=0.8, kp=8.0):
        self.noise_std, self.sloppy_noise_std, self.sloppy_prob = noise_std, sloppy_noise_std, sloppy_prob
        self.sloppy_grasp_dz, self.noise_corr, self.kp = sloppy_grasp_dz, noise_corr, kp

    def init(self, key: jax.Array) -> dict:
        """Draws the episode's plan: ``mode`` (int32), ``sloppy`` (bool), ``grasp_dz`` (m), noise state."""
        k_mode, k_sloppy, k_dz, k_dz2 = jax.random.split(key, 4)
        sloppy = jax.random.bernoulli(k_sloppy, self.sloppy_prob)
        dz = jnp.where(sloppy, jax.random.uniform(k_dz, (), maxval=self.sloppy_grasp_dz),
                       jax.random.uniform(k_dz2, (), minval=-0.002, maxval=0.002))
        return {"mode": jax.random.bernoulli(k_mode).astype(jnp.int32), "sloppy": sloppy,
                "grasp_dz": dz, "noise": jnp.zeros(4)}

    def _current(self, plan: dict, parts: dict) -> jax.Array:
        """Index (int32 scalar) of the cube to work on now."""
        del plan, parts
        return jnp.zeros((), jnp.int32)

    def _carry_z(self, plan: dict) -> jax.Array:
        """Hand height (m) while carrying a cube."""
        del plan
        return jnp.asarray(0.11)

    def act(self, plan: dict, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """Action ``[4]`` in ``[-1, 1]`` for ``obs [7 + 15 n]``; returns ``(action, new_plan)``."""
        parts = split_obs(obs, self.NUM_CUBES)
        cur = self._current(plan, parts)
        hand, gap = parts["hand"], parts["gap"]
        cube, target = parts["cube_pos"][cur], parts["target"][cur]
        rel = cube - hand
        carry_z, hover_z = self._carry_z(plan), self.HOVER_Z
        grasp_z = jnp.maximum(CUBE_HALF + plan["grasp_dz"], HAND_Z_MIN)
        width = 2 * CUBE_HALF

        between = (jnp.abs(rel[0]) < 0.025) & (jnp.abs(rel[1]) < 0.02) & (jnp.abs(rel[2]) < 0.025)
        holding = between & (gap < width + 0.004) & (gap > width - 0.012)
        closed_empty = gap < width - 0.012
        open_full = gap > MAX_GAP - 0.006
        low = hand[2] < hover_z - 0.02

        # -- not holding: go above the cube, descend with the gripper open, close.
        to_cube = cube[:2] - hand[:2]
        d_cube = jnp.linalg.norm(to_cube)
        aligned = d_cube < jnp.where(low, 0.012, 0.008)
        at_height = jnp.abs(hand[2] - grasp_z) < 0.006
        closing = (between & (gap >= width + 0.004) & ~open_full & (jnp.abs(hand[2] - grasp_z) < 0.012)
                   & (d_cube < 0.015))
        grab = closing | (aligned & at_height & open_full)
        z_a = jnp.where(aligned, grasp_z, jnp.where(d_cube < 0.02, hand[2], hover_z))
        xy_a = jnp.where(~low | (d_cube < 0.02), cube[:2], hand[:2])
        goal_a = jnp.concatenate([xy_a, z_a[None]])
        goal_a = jnp.where(grab, jnp.concatenate([cube[:2], grasp_z[None]]), goal_a)
        # a failed grasp (closed on nothing): back off upwards with the gripper closed, then open
        backoff = closed_empty & (hand[2] < hover_z - 0.01)
        goal_a = jnp.where(backoff, jnp.concatenate([hand[:2], jnp.full((1,), hover_z)]), goal_a)
        # opening: hold still when low, keep moving over the cube when high
        opening = ~open_full & ~grab & ~backoff
        goal_a = jnp.where(opening & low, hand, goal_a)
        grip_a = jnp.where(grab | backoff, 1.0, -1.0)

        # -- holding: lift to the carry height, move over the target, lower, release.
        to_target = target - cube[:2]
        d_target = jnp.linalg.norm(to_target)
        lowering = cube[2] < carry_z - 0.02
        near = d_target < jnp.where(lowering, 0.015, 0.008)
        z_h = jnp.where(near, hand[2] - (cube[2] - CUBE_HALF) - 0.004, carry_z)
        xy_h = jnp.where((hand[2] > carry_z - 0.02) | (d_target < 0.02), hand[:2] + to_target, hand[:2])
        goal_h = jnp.concatenate([xy_h, z_h[None]])
        release = near & (cube[2] < CUBE_HALF + 0.004)
        grip_h = jnp.where(release, -1.0, 1.0)

        goal = jnp.where(holding, goal_h, goal_a)
        grip = jnp.where(holding, grip_h, grip_a)
        move = jnp.clip(self.kp * (goal - hand) / V_MAX, -1.0, 1.0)
        std = jnp.where(plan["sloppy"], self.sloppy_noise_std, self.noise_std)
        c = self.noise_corr
        noise = c * plan["noise"] + jnp.sqrt(1 - c**2) * std * jax.random.normal(key, (4,))
        action = jnp.clip(jnp.concatenate([move, grip[None]]) + noise, -1.0, 1.0)
        return action, {**plan, "noise": noise}


class PickPlaceExpert(_PickPlaceExpertBase):
    """Expert for :class:`PickPlace`: ``mode`` 0 carries the cube high (14 cm), 1 low (6 cm)."""

    NUM_CUBES = 1
    CARRY_Z = (0.14, 0.06)

    def _carry_z(self, plan: dict) -> jax.Array:
        return jnp.where(plan["mode"] == 0, self.CARRY_Z[0], self.CARRY_Z[1])


class PickPlaceTwoExpert(_PickPlaceExpertBase):
    """Expert for :class:`PickPlaceTwo`: ``mode`` 0 moves cube A first, 1 cube B first.

    The current cube is the first one in the episode's order that is not
    placed (as seen in the observation), so a cube knocked off its target is
    picked again.
    """

    NUM_CUBES = 2

    def _current(self, plan: dict, parts: dict) -> jax.Array:
        done = placed(parts["cube_pos"], parts["target"])
        first = plan["mode"]
        return jnp.where(done[first], 1 - first, first).astype(jnp.int32)

"""PointMaze: a long-horizon, sparse-reward maze for a point mass (chunking matters here).

A disc (radius 0.1 m, mass 1 kg) slides on the floor of a grid maze of 1 m
cells (11 x 9 cells, walls are whole cells), driven by two motors (x and y
force, action in ``[-1, 1]^2``, gear 3 N, viscous damping 2 N s/m: top speed
1.5 m/s). It starts in the middle of the left side (cell column 1, row 4,
jittered by up to 0.3 m) and must reach the goal (a disc of radius 0.3 m at
column 9, row 4, jittered by up to 0.2 m). A wall row separates start and
goal, so the way leads either through the upper or through the lower half,
each a serpentine corridor of 18 cells (the two halves are mirror images):
the two routes are equally long, which makes the demonstrations bimodal.

* Observation ``[6]``: ``(x, y, vx, vy, goal_x, goal_y)`` in m and m/s, in a
  frame centred on the maze.
* Reward: sparse, 1 on the step the goal is reached, else 0.
* ``terminated``: the goal is reached (success only; walls do not end the
  episode). The time limit (``truncated``, 400 control steps = 20 s by
  default) is applied by :class:`envs.wrappers.VecEnv`.
* Control step 0.05 s (5 physics steps of 0.01 s).

Walls are inelastic and handled geometrically in :meth:`PointMaze.step`
(the move along an axis that would enter a wall cell, inflated by the disc
radius, is undone and that velocity component zeroed), so MJX has no
contacts and no constraints at all: the task steps at MJX's contact-free speed.

Scripted expert (:class:`PointMazeExpert`): picks the upper (``mode`` 0) or
lower (``mode`` 1) route at random, half each, follows the corner waypoints
of its route with a PD law and Ornstein-Uhlenbeck action noise; 25% of its
episodes are "sloppy" (much larger noise, weaker gains), and many of those
run out of time.

Measured (``python launch/make_dataset.py --task=point_maze --num_episodes=1000 --seed=0``):
expert success 0.739 (0.733 upper route, 0.746 lower), mode split 0.516 / 0.484,
all failures are time-outs (0.261); episode length mean 319, min 279, max 400
(successful episodes take about 280-300 steps).
env steps/s at batch 1 / 256 / 4096 on the 2-core CPU: MJX 35,626 / 321,328 / 205,567;
C MuJoCo (``mujoco.rollout``, 2 threads, same model) 41,880 / 129,154 / 131,895.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env

from envs.base import XmlTask, no_mode, settle_mode

# 1 = wall. Rows top (0) to bottom (8), columns left (0) to right (10).
MAZE = (
    "###########",
    "#...#...#.#",
    "#.#.#.#.#.#",
    "#.#...#...#",
    "#.#######.#",
    "#.#...#...#",
    "#.#.#.#.#.#",
    "#...#...#.#",
    "###########",
)
CELL = 1.0
ROUTE_DECIDED_Y = 0.75   # m: |y| beyond which the disc has left the middle row for a route's half
DISC_RADIUS = 0.1
GOAL_RADIUS = 0.3
START_CELL, GOAL_CELL = (4, 1), (4, 9)   # (row, column)
START_JITTER, GOAL_JITTER = 0.3, 0.2

# Expert success measured with 1000 episodes, seed 0 (see module docstring).
EXPERT_SUCCESS = 0.739
# Measured env steps/s (benchmarks/env_speed.py), copied into dataset cards.
THROUGHPUT = {
    'point_maze': {'mjx': {1: 35626, 256: 321328, 4096: 205567}, 'c': {1: 41880, 256: 129154, 4096: 131895}, 'command': 'python benchmarks/env_speed.py --env=<task> --batch=1,256,4096 (2-core CPU, 2026-11-21)'},
}


def cell_center(row: int, col: int) -> np.ndarray:
    """Centre (m) of maze cell ``(row, col)`` in the maze frame (x right, y up, origin at the centre)."""
    rows, cols = len(MAZE), len(MAZE[0])
    return np.array([(col - (cols - 1) / 2) * CELL, ((rows - 1) / 2 - row) * CELL])


def _wall_centers() -> np.ndarray:
    return np.array([cell_center(r, c) for r, line in enumerate(MAZE) for c, ch in enumerate(line)
                     if ch == "#"], np.float32)


WALLS = _wall_centers()   # [M, 2] wall-cell centres (m)

# Corner waypoints of the two routes, as (row, column) cells; the goal itself comes last.
_UPPER = ((1, 1), (1, 3), (3, 3), (3, 5), (1, 5), (1, 7), (3, 7), (3, 9))
_LOWER = tuple((8 - r, c) for r, c in _UPPER)   # mirror image through the middle row
ROUTES = np.array([[cell_center(*rc) for rc in route] for route in (_UPPER, _LOWER)], np.float32)


def in_wall(pos: jax.Array) -> jax.Array:
    """Whether a disc centred at ``pos [..., 2]`` (m) overlaps a wall cell. Returns bool ``[...]``."""
    d = jnp.abs(pos[..., None, :] - jnp.asarray(WALLS))          # [..., M, 2]
    return jnp.any(jnp.all(d < CELL / 2 + DISC_RADIUS, axis=-1), axis=-1)


def _xml() -> str:
    walls = "\n".join(
        f'    <geom type="box" pos="{x:.3f} {y:.3f} 0.25" size="{CELL / 2} {CELL / 2} 0.25" rgba=".45 .45 .55 1"/>'
        for x, y in WALLS)
    rows, cols = len(MAZE), len(MAZE[0])
    return f"""
<mujoco model="point_maze">
  <option timestep="0.01" integrator="implicitfast"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <light pos="0 0 12" dir="0 0 -1" directional="true"/>
    <camera name="top" pos="0 0 13.5" xyaxes="1 0 0 0 1 0"/>
    <geom name="floor" type="plane" size="{cols / 2 + 0.5} {rows / 2 + 0.5} 0.1" rgba=".9 .9 .9 1"/>
{walls}
    <body name="disc" pos="0 0 {DISC_RADIUS}">
      <joint name="x" type="slide" axis="1 0 0" damping="2"/>
      <joint name="y" type="slide" axis="0 1 0" damping="2"/>
      <geom name="disc" type="sphere" size="{DISC_RADIUS}" mass="1" rgba=".2 .4 .8 1"/>
    </body>
    <body name="goal" mocap="true" pos="0 0 0.01">
      <geom name="goal" type="cylinder" size="{GOAL_RADIUS} 0.005" rgba=".3 .8 .3 .6"/>
    </body>
  </worldbody>
  <actuator>
    <motor name="fx" joint="x" gear="3" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="fy" joint="y" gear="3" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


def default_config() -> config_dict.ConfigDict:
    """Task constants (seconds). The time limit lives in the env wrapper."""
    return config_dict.create(ctrl_dt=0.05, sim_dt=0.01, episode_length=400)


class PointMaze(XmlTask):
    """The long-horizon maze task (see module docstring).

    MuJoCo Playground ``MjxEnv`` interface on one environment (vmap for a
    batch): ``reset(rng) -> State`` with obs ``[6]``, ``step(state, action [2])``.
    ``state.info`` holds ``terminated`` and ``success`` (bool scalars) and
    ``mode``, the route the disc took (0 upper, 1 lower half).
    """

    MODES = ("upper", "lower")

    def __init__(self, config: config_dict.ConfigDict | None = None, config_overrides=None):
        super().__init__(_xml(), "point_maze", 2, config or default_config(), config_overrides)

    def _obs(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
        return jnp.concatenate([data.qpos[:2], data.qvel[:2], goal]).astype(jnp.float32)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        """Start jittered in the start cell, goal jittered in the goal cell. Returns obs ``[6]``."""
        k_start, k_goal = jax.random.split(rng)
        start = jnp.asarray(cell_center(*START_CELL), jnp.float32) + jax.random.uniform(
            k_start, (2,), minval=-START_JITTER, maxval=START_JITTER)
        goal = jnp.asarray(cell_center(*GOAL_CELL), jnp.float32) + jax.random.uniform(
            k_goal, (2,), minval=-GOAL_JITTER, maxval=GOAL_JITTER)
        data = mjx_env.make_data(self._mj_model, qpos=start, qvel=jnp.zeros(2), ctrl=jnp.zeros(2),
                                 mocap_pos=jnp.zeros((1, 3)).at[0, :2].set(goal), impl="jax")
        data = mjx.forward(self._mjx_model, data)
        zero = jnp.zeros((), jnp.float32)
        info = {"goal": goal, "terminated": jnp.zeros((), bool), "success": jnp.zeros((), bool), "mode": no_mode()}
        metrics = {"success": zero, "goal_distance": jnp.linalg.norm(start - goal)}
        return mjx_env.State(data, self._obs(data, goal), zero, zero, metrics, info)

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        """Applies ``action [2]`` (clipped to ``[-1, 1]``) for one control step (0.05 s)."""
        action = jnp.clip(action, -1.0, 1.0)
        old = state.data.qpos[:2]
        data = mjx_env.step(self._mjx_model, state.data, action, self.n_substeps)
        new, vel = data.qpos[:2], data.qvel[:2]
        # inelastic walls: undo the move along an axis that enters a wall, and stop along it
        x_blocked = in_wall(jnp.stack([new[0], old[1]]))
        x = jnp.where(x_blocked, old[0], new[0])
        y_blocked = in_wall(jnp.stack([x, new[1]]))
        y = jnp.where(y_blocked, old[1], new[1])
        pos = jnp.stack([x, y])
        vel = jnp.stack([jnp.where(x_blocked, 0.0, vel[0]), jnp.where(y_blocked, 0.0, vel[1])])
        data = data.replace(qpos=pos.astype(data.qpos.dtype), qvel=vel.astype(data.qvel.dtype))
        goal = state.info["goal"]
        dist = jnp.linalg.norm(pos - goal)
        success = dist < GOAL_RADIUS
        # the mode: the half of the maze the disc first enters on leaving the middle row (y = 0):
        # the corridor rows next to it are centred at y = +-1 m, the start is within 0.3 m of y = 0
        mode = settle_mode(state.info["mode"], jnp.abs(y) > ROUTE_DECIDED_Y, jnp.where(y > 0.0, 0, 1))
        info = {**state.info, "terminated": success, "success": success, "mode": mode}
        metrics = {"success": success.astype(jnp.float32), "goal_distance": dist}
        return state.replace(data=data, obs=self._obs(data, goal), reward=success.astype(jnp.float32),
                             done=success.astype(jnp.float32), metrics=metrics, info=info)


class PointMazeExpert:
    """Scripted, noisy, two-route expert for :class:`PointMaze`.

    Per episode it draws the route (``mode`` 0 = upper half, 1 = lower half,
    half each) and whether it is sloppy (probability ``sloppy_prob``). It
    steers with a PD law (gains ``kp``, ``kd``; ``sloppy_kp`` when sloppy)
    towards the next corner waypoint of its route, moving on when within
    ``reach`` m of it, then to the goal; Ornstein-Uhlenbeck noise
    (correlation ``noise_corr``, stationary std ``noise_std`` or
    ``sloppy_noise_std``) is added to the action. Functions act on one
    environment; vmap them for a batch.
    """

    def __init__(self, noise_std=0.3, sloppy_noise_std=1.2, sloppy_prob=0.25, noise_corr=0.9,
                 kp=4.0, kd=1.0, sloppy_kp=1.5, reach=0.35):
        self.noise_std, self.sloppy_noise_std, self.sloppy_prob = noise_std, sloppy_noise_std, sloppy_prob
        self.noise_corr, self.kp, self.kd, self.sloppy_kp, self.reach = noise_corr, kp, kd, sloppy_kp, reach

    def init(self, key: jax.Array) -> dict:
        """Draws the episode's plan: ``mode`` (int32 route), ``sloppy`` (bool), waypoint index, noise state."""
        k_mode, k_sloppy = jax.random.split(key)
        return {"mode": jax.random.bernoulli(k_mode).astype(jnp.int32),
                "sloppy": jax.random.bernoulli(k_sloppy, self.sloppy_prob),
                "waypoint": jnp.zeros((), jnp.int32), "noise": jnp.zeros(2)}

    def act(self, plan: dict, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """Action ``[2]`` in ``[-1, 1]`` for ``obs [6]``; returns ``(action, new_plan)``."""
        pos, vel, goal = obs[:2], obs[2:4], obs[4:6]
        route = jnp.asarray(ROUTES)[plan["mode"]]                 # [K, 2]
        num = route.shape[0]
        i = plan["waypoint"]
        target = jnp.where(i < num, route[jnp.minimum(i, num - 1)], goal)
        reached = (i < num) & (jnp.linalg.norm(target - pos) < self.reach)
        i = i + reached.astype(jnp.int32)
        target = jnp.where(i < num, route[jnp.minimum(i, num - 1)], goal)
        sloppy = plan["sloppy"]
        std = jnp.where(sloppy, self.sloppy_noise_std, self.noise_std)
        kp = jnp.where(sloppy, self.sloppy_kp, self.kp)
        c = self.noise_corr
        noise = c * plan["noise"] + jnp.sqrt(1 - c**2) * std * jax.random.normal(key, (2,))
        action = jnp.clip(kp * (target - pos) - self.kd * vel + noise, -1.0, 1.0)
        return action, {**plan, "waypoint": i, "noise": noise}

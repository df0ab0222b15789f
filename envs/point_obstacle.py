"""PointObstacle: a 2D point mass must reach a goal with a wall in the way.

The default task of the project. A disc (radius 0.05 m, mass 1 kg) slides on
a table in the square arena ``[-1, 1]^2`` (metres), driven by two motors
(x and y force, action in ``[-1, 1]^2``, gear 2 N, viscous damping 2 N s/m,
so the top speed is about 1 m/s). It starts on the left
(``x in [-0.85, -0.7]``, ``y in [-0.25, 0.25]``) and must reach a goal disc
(radius 0.1 m) sampled on the right (``x in [0.7, 0.85]``,
``y in [-0.25, 0.25]``). A wall (half-size 0.15 x 0.45 m) stands at the
centre, so there are two good ways around it: above or below.

* Observation ``[6]``: ``(x, y, vx, vy, goal_x, goal_y)`` in m and m/s.
* Reward: sparse, 1 on the step the goal is reached, else 0.
* ``terminated``: the goal is reached (success) or the disc touches the wall
  (failure). Both end the episode with no bootstrap. The time limit
  (``truncated``, 100 control steps = 5 s by default) is applied by
  :class:`envs.wrappers.VecEnv`, never here.
* Control step 0.05 s (5 physics steps of 0.01 s).

The wall is a visual geom only: touching it is detected geometrically in
:meth:`PointObstacle.step`, so MJX runs no collision detection at all and the
task steps at MJX's contact-free speed. Arena walls are slide-joint limits.

The scripted expert (:class:`PointObstacleExpert`) picks a side at random
(half each), tracks two waypoints past the wall and then the goal with a PD
law, and adds temporally correlated (Ornstein-Uhlenbeck) action noise. A
share of its episodes are "sloppy" (much larger noise, and a change of mind
about the side half way), which produces realistic failures: wall hits and
time-outs. Measured success and mode split are in the dataset card.

Env steps/s at batch 1 / 256 / 4096 on the 2-core CPU: MJX 12,962 / 32,090 /
13,093; C MuJoCo (``mujoco.rollout``, 2 threads, same model) 58,279 /
187,290 / 163,957. The slide-joint limits of the arena run MJX's constraint
solver every step, which is why this contact-free task is slow in MJX.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env

from envs.base import XmlTask, no_mode, settle_mode

# Measured env steps/s (benchmarks/env_speed.py), copied into dataset cards.
THROUGHPUT = {
    'point_obstacle': {'mjx': {1: 12962, 256: 32090, 4096: 13093}, 'c': {1: 58279, 256: 187290, 4096: 163957}, 'command': 'python benchmarks/env_speed.py --env=<task> --batch=1,256,4096 (2-core CPU, 2026-11-21)'},
}

WALL_HALF = (0.15, 0.45)
DISC_RADIUS = 0.05
GOAL_RADIUS = 0.1
START_LOW, START_HIGH = (-0.85, -0.25), (-0.7, 0.25)
GOAL_LOW, GOAL_HIGH = (0.7, -0.25), (0.85, 0.25)

_XML = f"""
<mujoco model="point_obstacle">
  <option timestep="0.01" integrator="implicitfast"/>
  <default>
    <geom contype="0" conaffinity="0"/>
  </default>
  <worldbody>
    <light pos="0 0 3" dir="0 0 -1"/>
    <camera name="top" pos="0 0 2.6" xyaxes="1 0 0 0 1 0"/>
    <geom name="table" type="plane" size="1.1 1.1 0.1" rgba=".9 .9 .9 1"/>
    <geom name="wall" type="box" pos="0 0 0.05" size="{WALL_HALF[0]} {WALL_HALF[1]} 0.05"
          rgba=".6 .3 .3 1"/>
    <body name="disc" pos="0 0 {DISC_RADIUS}">
      <joint name="x" type="slide" axis="1 0 0" limited="true" range="-1 1" damping="2"/>
      <joint name="y" type="slide" axis="0 1 0" limited="true" range="-1 1" damping="2"/>
      <geom name="disc" type="cylinder" size="{DISC_RADIUS} 0.02" mass="1" rgba=".2 .4 .8 1"/>
    </body>
    <body name="goal" mocap="true" pos="0.8 0 0.001">
      <geom name="goal" type="cylinder" size="{GOAL_RADIUS} 0.001" rgba=".3 .8 .3 .6"/>
    </body>
  </worldbody>
  <actuator>
    <motor name="fx" joint="x" gear="2" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="fy" joint="y" gear="2" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


def default_config() -> config_dict.ConfigDict:
    """Task constants (seconds). The time limit lives in the env wrapper."""
    return config_dict.create(ctrl_dt=0.05, sim_dt=0.01, episode_length=100)


def hits_wall(pos: jax.Array) -> jax.Array:
    """Whether a disc centred at ``pos [..., 2]`` (m) overlaps the wall. Returns bool ``[...]``."""
    return (jnp.abs(pos[..., 0]) < WALL_HALF[0] + DISC_RADIUS) & (
        jnp.abs(pos[..., 1]) < WALL_HALF[1] + DISC_RADIUS
    )


class PointObstacle(XmlTask):
    """The default reach-around-a-wall task (see module docstring).

    Follows MuJoCo Playground's ``MjxEnv`` interface: ``reset(rng) -> State``,
    ``step(state, action [2]) -> State`` on one environment (vmap for a
    batch). ``state.info`` holds ``terminated`` (bool) and ``success`` (bool);
    ``state.done`` equals ``terminated`` (float 0/1, as in Playground).
    ``info['mode']`` is the side the disc passed the wall on (0 above, 1 below).
    """

    MODES = ("above", "below")

    def __init__(self, config: config_dict.ConfigDict | None = None, config_overrides=None):
        super().__init__(_XML, "point_obstacle", 2, config or default_config(), config_overrides)
        self._goal_mocap = 0

    def _obs(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
        return jnp.concatenate([data.qpos[:2], data.qvel[:2], goal]).astype(jnp.float32)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        """Samples start and goal uniformly in their boxes. Returns a State with obs ``[6]``."""
        k_start, k_goal = jax.random.split(rng)
        start = jax.random.uniform(k_start, (2,), minval=jnp.array(START_LOW), maxval=jnp.array(START_HIGH))
        goal = jax.random.uniform(k_goal, (2,), minval=jnp.array(GOAL_LOW), maxval=jnp.array(GOAL_HIGH))
        mocap_pos = jnp.zeros((1, 3)).at[0, :2].set(goal)
        data = mjx_env.make_data(self._mj_model, qpos=start, qvel=jnp.zeros(2), ctrl=jnp.zeros(2),
                                 mocap_pos=mocap_pos, impl="jax")
        data = mjx.forward(self._mjx_model, data)
        zero = jnp.zeros((), jnp.float32)
        info = {"goal": goal, "terminated": jnp.zeros((), bool), "success": jnp.zeros((), bool), "mode": no_mode()}
        metrics = {"success": zero, "hit_wall": zero, "goal_distance": jnp.linalg.norm(start - goal)}
        return mjx_env.State(data, self._obs(data, goal), zero, zero, metrics, info)

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        """Applies ``action [2]`` (clipped to ``[-1, 1]``) for one control step (0.05 s)."""
        action = jnp.clip(action, -1.0, 1.0)
        data = mjx_env.step(self._mjx_model, state.data, action, self.n_substeps)
        pos, goal = data.qpos[:2], state.info["goal"]
        dist = jnp.linalg.norm(pos - goal)
        success = dist < GOAL_RADIUS
        crash = hits_wall(pos) & ~success
        terminated = success | crash
        reward = success.astype(jnp.float32)
        # the mode: the side of the wall the disc is on when it first reaches the wall's centre line
        # (there |y| > wall half-height, or it would have hit the wall)
        mode = settle_mode(state.info["mode"], (pos[0] >= 0.0) & ~crash, jnp.where(pos[1] > 0.0, 0, 1))
        info = {**state.info, "terminated": terminated, "success": success, "mode": mode}
        metrics = {"success": success.astype(jnp.float32), "hit_wall": crash.astype(jnp.float32),
                   "goal_distance": dist}
        return state.replace(data=data, obs=self._obs(data, goal), reward=reward,
                             done=terminated.astype(jnp.float32), metrics=metrics, info=info)


class PointObstacleExpert:
    """Scripted, noisy, two-mode expert for :class:`PointObstacle`.

    Per episode it draws a side (``mode`` 0 = above, 1 = below, half each) and
    whether it is sloppy (probability ``sloppy_prob``). It steers by a PD law
    (gains ``kp``, ``kd``) towards ``(-0.25, +-0.68)``, then ``(0.25, +-0.68)``,
    then the goal, and adds OU noise (correlation ``noise_corr`` per step,
    stationary std ``noise_std``, or ``sloppy_noise_std`` when sloppy). A sloppy
    episode also switches side once, at a random step in ``[10, 30)``.

    All functions act on one environment; vmap them for a batch.
    """

    def __init__(self, noise_std=0.25, sloppy_noise_std=0.8, sloppy_prob=0.2, noise_corr=0.8,
                 kp=6.0, kd=1.5):
        self.noise_std, self.sloppy_noise_std = noise_std, sloppy_noise_std
        self.sloppy_prob, self.noise_corr, self.kp, self.kd = sloppy_prob, noise_corr, kp, kd

    def init(self, key: jax.Array) -> dict:
        """Draws the episode's plan: ``mode`` (int32), ``sloppy`` (bool), ``switch_step``, noise state."""
        k_mode, k_sloppy, k_switch = jax.random.split(key, 3)
        return {
            "mode": jax.random.bernoulli(k_mode).astype(jnp.int32),
            "sloppy": jax.random.bernoulli(k_sloppy, self.sloppy_prob),
            "switch_step": jax.random.randint(k_switch, (), 10, 30),
            "noise": jnp.zeros(2),
            "t": jnp.zeros((), jnp.int32),
        }

    def act(self, plan: dict, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """Action ``[2]`` in ``[-1, 1]`` for ``obs [6]``; returns ``(action, new_plan)``."""
        pos, vel, goal = obs[:2], obs[2:4], obs[4:6]
        switched = plan["sloppy"] & (plan["t"] >= plan["switch_step"])
        side = jnp.where((plan["mode"] == 0) ^ switched, 1.0, -1.0)
        y_pass = side * (WALL_HALF[1] + 0.23)
        target = jnp.where(pos[0] < -0.25 - 0.05, jnp.array([-0.25, y_pass]),
                           jnp.where(pos[0] < 0.25, jnp.array([0.25, y_pass]), goal))
        std = jnp.where(plan["sloppy"], self.sloppy_noise_std, self.noise_std)
        c = self.noise_corr
        noise = c * plan["noise"] + jnp.sqrt(1 - c**2) * std * jax.random.normal(key, (2,))
        action = jnp.clip(self.kp * (target - pos) - self.kd * vel + noise, -1.0, 1.0)
        return action, {**plan, "noise": noise, "t": plan["t"] + 1}

"""Q-chunking with best-of-N sampling (Li, Zhou, Levine 2025, arXiv:2507.07969).

* Critic (:mod:`agents.critic`): an ensemble ``Q(s_t, a_{t:t+h})`` on the
  executed chunk, trained with the chunked TD target (Eq. 5) whose next chunk
  is the best of ``target_num_samples`` chunks drawn from the behaviour
  (flow/diffusion BC) policy at ``s_{t+h}`` (Eq. 6, the "expected max" backup).
* Actor: the chunked BC policy, still trained with its BC loss on all data
  (offline demonstrations and online experience).
* Acting and evaluation: best-of-N over ``num_samples`` chunks from the actor,
  by ``argmax`` (the paper) or ``softmax(Q / temperature)`` (``selection``).
"""

from __future__ import annotations

import flax
import jax
import ml_collections

from agents import bc
from agents import critic as critic_lib
from agents import select as select_lib
from agents.actor import Actor
from agents.common import StaticConfig
from agents.critic import Critic
from agents.select import check_config, sample_and_choose


class QCAgent(flax.struct.PyTreeNode):
    """Immutable QC agent: ``update`` and ``sample_actions`` are pure and jitted."""

    rng: jax.Array
    actor: Actor
    critic: Critic
    config: StaticConfig = flax.struct.field(pytree_node=False)

    METRICS = ("critic_loss", "q_mean", "bc_loss")  # what a progress line shows

    @staticmethod
    def check(config: ml_collections.ConfigDict) -> None:
        """Raises ``ValueError`` naming the first invalid agent field (run before any training)."""
        check_config(config)
        critic_lib.check_config(config)

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict,
               actor: Actor | None = None) -> "QCAgent":
        """Builds the agent; ``actor`` (e.g. from BC pretraining) replaces a fresh one.

        Raises:
          ValueError: see :meth:`check`.
        """
        cls.check(config)
        rng, actor, critic, _ = critic_lib.actor_and_critic(seed, obs_dim, action_dim, config, actor)
        return cls(rng=rng, actor=actor, critic=critic, config=StaticConfig(config))

    def target_rule(self, next_obs: jax.Array, key: jax.Array) -> jax.Array:
        """``target_num_samples`` chunks of the BC actor (EMA weights) at ``next_obs``: ``[B, N, H, A]``."""
        return self.actor.sample(next_obs, key, self.config.target_num_samples)

    @jax.jit
    def update(self, batch: dict) -> tuple["QCAgent", dict]:
        """One critic step (best-of-N target), one actor BC step, a Polyak target update.

        ``batch`` (see :func:`replay.chunks.training_batch`): ``obs [B, O]``,
        ``actions [B, H, A]``, ``critic_actions [B, h, A]``, ``reward_sum [B]``,
        ``discount [B]``, ``next_obs [B, O]``, ``valid [B]``. Returns the new
        agent and scalar metrics.
        """
        rng, k_target, k_bc = jax.random.split(self.rng, 3)
        critic, info = self.critic.update(batch, self.target_rule, k_target)
        bc_loss, actor_grads = jax.value_and_grad(self.actor.bc_loss)(
            self.actor.state.params, batch["obs"], batch["actions"], batch["valid"], k_bc)
        agent = self.replace(rng=rng, actor=self.actor.apply_gradients(actor_grads), critic=critic)
        return agent, {**info, "bc_loss": bc_loss}

    @jax.jit
    def sample_actions(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Best-of-N chunks: ``obs [B, O] -> [B, H, A]`` in ``[-1, 1]`` (N = ``num_samples``)."""
        return sample_and_choose(lambda k: self.actor.sample(obs, k, self.config.num_samples), self.critic.value,
                                 obs, self.config, key)


def get_config() -> ml_collections.ConfigDict:
    """QC hyperparameters: the BC actor's (agents/bc.py) plus the critic's.

    The defaults are sized for a 2-core CPU; ``configs/qc.py:paper`` restores
    the paper's (4x512 critic, N=32 everywhere).
    """
    c = critic_lib.get_config(bc.get_config())
    c = select_lib.get_config(c)
    c.num_samples = 32                 # N: best-of-N candidates when acting / evaluating
    c.target_num_samples = 4           # N used in the TD target's best-of-N backup
    return c


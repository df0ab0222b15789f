"""QC-FQL: Q-chunking with a one-step flow policy (Li, Zhou, Levine 2025, arXiv:2507.07969, Sec. 5.2).

Flow Q-learning (Park, Li, Levine 2025, arXiv:2502.02538, Eq. 8) on action chunks:

* the BC flow policy keeps its flow-matching loss;
* a one-step policy ``mu(s, z)`` (``z ~ N(0, I)`` a noise chunk) is trained with
  ``L_mu = -Q(s, clip(mu(s, z))) + alpha ||mu(s, z) - flow(s, z)||^2``,
  where ``flow(s, z)`` is the BC flow's deterministic Euler map of the same
  noise ``z`` (under ``stop_gradient`` unless ``distill_stop_gradient=False``;
  the paper's code takes no gradient into the flow, QC issue #9);
  ``normalize_q_loss`` divides the Q term by ``mean |Q|`` (FQL's option);
* the chunked critic (:mod:`agents.critic`) uses ``mu``'s chunk at ``s_{t+h}``
  as its target-action rule (one sample: no best-of-N), and acting is one call
  of ``mu``. That is why its update is an order of magnitude cheaper than QC's.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from agents import bc
from agents import critic as critic_lib
from agents.actor import Actor
from agents.common import StaticConfig, masked_mean
from agents.critic import Critic
from agents.select import check_config
from networks.denoiser import ChunkOneStepPolicy


class QCFQLAgent(flax.struct.PyTreeNode):
    """Immutable QC-FQL agent: BC flow ``actor``, one-step policy ``onestep``, ``critic``."""

    rng: jax.Array
    actor: Actor
    onestep: train_state.TrainState
    critic: Critic
    config: StaticConfig = flax.struct.field(pytree_node=False)

    METRICS = ("critic_loss", "q_mean", "bc_loss", "distill_loss")

    @staticmethod
    def check(config: ml_collections.ConfigDict) -> None:
        """Raises ``ValueError`` naming the first invalid agent field (run before any training)."""
        check_config(config)
        critic_lib.check_config(config)
        if config.alpha < 0:
            raise ValueError(f"agent.alpha must be >= 0, got {config.alpha}")

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict,
               actor: Actor | None = None) -> "QCFQLAgent":
        """Builds the agent; ``actor`` (e.g. from BC pretraining) replaces a fresh one.

        Raises:
          ValueError: see :meth:`check`.
        """
        cls.check(config)
        rng, actor, critic, (k_mu,) = critic_lib.actor_and_critic(seed, obs_dim, action_dim, config, actor, 1)
        net = ChunkOneStepPolicy(hidden_dims=tuple(config.actor_hidden_dims), layer_norm=config.actor_layer_norm,
                                 activation=config.actor_activation)
        params = net.init(k_mu, jnp.zeros((1, obs_dim)), jnp.zeros((1, config.horizon, action_dim)))
        onestep = train_state.TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.actor_lr))
        return cls(rng=rng, actor=actor, onestep=onestep, critic=critic, config=StaticConfig(config))

    def policy(self, params, obs: jax.Array, z: jax.Array) -> jax.Array:
        """``clip(mu(obs [B, O], z [B, H, A]), -1, 1)``: ``[B, H, A]``."""
        return jnp.clip(self.onestep.apply_fn(params, obs, z), -1.0, 1.0)

    def _noise(self, key, batch: int) -> jax.Array:
        return jax.random.normal(key, (batch, self.actor.horizon, self.actor.action_dim))

    def target_rule(self, next_obs: jax.Array, key: jax.Array) -> jax.Array:
        """The one-step policy's chunk at ``next_obs``: ``[B, 1, H, A]``."""
        return self.policy(self.onestep.params, next_obs, self._noise(key, next_obs.shape[0]))[:, None]

    def actor_losses(self, flow_params, mu_params, batch: dict, key: jax.Array) -> tuple[jax.Array, dict]:
        """``L_bc(flow) + alpha L_distill + L_Q`` (Park et al. 2025, Eq. 8) on ``batch`` (see :meth:`update`)."""
        k_bc, k_z = jax.random.split(key)
        obs, valid = batch["obs"], batch["valid"]
        bc_loss = self.actor.bc_loss(flow_params, obs, batch["actions"], valid, k_bc)
        z = self._noise(k_z, obs.shape[0])
        flow_target = self.actor.generative.sample_from(self.actor.state.apply_fn, flow_params, obs, z)
        if self.config.distill_stop_gradient:
            flow_target = jax.lax.stop_gradient(flow_target)
        mu = self.onestep.apply_fn(mu_params, obs, z)
        distill = masked_mean(jnp.mean((mu - flow_target) ** 2, axis=(1, 2)), valid)
        q = self.critic.values(obs, jnp.clip(mu, -1.0, 1.0)).mean(axis=0)  # [B], ensemble mean as in FQL
        q_loss = -masked_mean(q, valid)
        if self.config.normalize_q_loss:
            q_loss = q_loss / jax.lax.stop_gradient(jnp.maximum(masked_mean(jnp.abs(q), valid), 1e-6))
        loss = bc_loss + self.config.alpha * distill + q_loss
        return loss, {"bc_loss": bc_loss, "distill_loss": distill, "q_loss": q_loss}

    @jax.jit
    def update(self, batch: dict) -> tuple["QCFQLAgent", dict]:
        """One critic step (target from ``mu``), one step of the flow and of ``mu``, a Polyak update.

        ``batch`` (see :func:`replay.chunks.training_batch`): ``obs [B, O]``,
        ``actions [B, H, A]``, ``critic_actions [B, h, A]``, ``reward_sum [B]``,
        ``discount [B]``, ``next_obs [B, O]``, ``valid [B]``.
        """
        rng, k_target, k_actor = jax.random.split(self.rng, 3)
        critic, info = self.critic.update(batch, self.target_rule, k_target)
        (_, actor_info), (flow_grads, mu_grads) = jax.value_and_grad(self.actor_losses, argnums=(0, 1), has_aux=True)(
            self.actor.state.params, self.onestep.params, batch, k_actor)
        agent = self.replace(rng=rng, actor=self.actor.apply_gradients(flow_grads),
                             onestep=self.onestep.apply_gradients(grads=mu_grads), critic=critic)
        return agent, {**info, **actor_info}

    @jax.jit
    def sample_actions(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """One call of the one-step policy: ``obs [B, O] -> [B, H, A]`` in ``[-1, 1]``."""
        return self.policy(self.onestep.params, obs, self._noise(key, obs.shape[0]))


def get_config() -> ml_collections.ConfigDict:
    """QC-FQL hyperparameters: the BC actor's, the critic's, and the one-step policy's."""
    c = critic_lib.get_config(bc.get_config())
    c.alpha = 100.0                    # distillation weight (QC-FQL paper: 100; FQL sweeps 0.03-10 with normalised Q)
    c.normalize_q_loss = False         # divide the Q term by mean |Q| (FQL's option; off in the QC code)
    c.distill_stop_gradient = True     # no gradient from the distillation into the BC flow (the paper's code)
    return c

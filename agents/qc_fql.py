"""QC-FQL: Q-chunking with a one-step flow policy (Li, Zhou, Levine 2025, arXiv:2507.07969, Sec. 5.2).

Flow Q-learning (Park, Li, Levine 2025, arXiv:2502.02538, Eq. 8) on action chunks:

* the BC flow policy keeps its flow-matching loss;
* a one-step policy ``mu(s, z)`` (``z ~ N(0, I)`` a noise chunk) is trained with
  ``L_mu = -Q(s, clip(mu(s, z))) + alpha ||mu(s, z) - flow(s, z)||^2``,
  where ``flow(s, z)`` is the BC flow's deterministic Euler map of the same
  noise ``z`` (under ``stop_gradient`` unless ``distill_stop_gradient=False``;
  the paper's code takes no gradient into the flow, QC issue #9);
  ``normalize_q_loss`` divides the Q term by ``mean |Q|`` (FQL's option);
* ``alpha`` defaults to 1, not the paper's 100: the paper's rewards are -1
  per step (Q of -10 to -100), ours one reward of 1 at success (Q in [0, 1]),
  where alpha 100 leaves the Q term about 1% of the loss (README, QC-FQL);
* the chunked critic (:mod:`agents.critic`) uses ``mu``'s chunk at ``s_{t+h}``
  as its target-action rule (one sample: no best-of-N), and acting is one call
  of ``mu``. That is why its update is an order of magnitude cheaper than QC's.

BC pretraining (``pretrain_distill``, on by default) also distils ``mu``
(:class:`DistilledBCAgent`: the same flow update as :class:`agents.bc.BCAgent`,
bit for bit, plus one step of ``alpha ||mu(s, z) - flow(s, z)||^2`` with the Q
term off), so ``mu`` starts the offline phase at the BC flow's level instead
of from scratch: the paper trains flow and ``mu`` together for 1M offline
updates, and 1-3k updates from scratch leave ``mu`` far below the flow (README).
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
from agents.bc import BCAgent
from agents.common import StaticConfig, masked_mean
from agents.critic import Critic
from agents.select import check_config
from networks.denoiser import ChunkOneStepPolicy


def make_onestep(key: jax.Array, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict
                 ) -> train_state.TrainState:
    """The one-step policy ``mu(s, z)`` (:class:`ChunkOneStepPolicy`, ``onestep_hidden_dims``, empty: the
    actor's ``actor_hidden_dims``) with its Adam state."""
    net = ChunkOneStepPolicy(hidden_dims=tuple(config.onestep_hidden_dims or config.actor_hidden_dims),
                             layer_norm=config.actor_layer_norm, activation=config.actor_activation)
    params = net.init(key, jnp.zeros((1, obs_dim)), jnp.zeros((1, config.horizon, action_dim)))
    return train_state.TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.actor_lr))


def noise_chunk(actor: Actor, key: jax.Array, batch: int) -> jax.Array:
    """``z ~ N(0, I)``, ``[batch, H, A]``: the one-step policy's input noise."""
    return jax.random.normal(key, (batch, actor.horizon, actor.action_dim))


def distill_term(actor: Actor, flow_params, onestep: train_state.TrainState, mu_params, obs: jax.Array,
                 valid: jax.Array, key: jax.Array, stop_gradient: bool = True) -> tuple[jax.Array, jax.Array]:
    """``(||mu(s, z) - flow(s, z)||^2`` masked mean, ``mu(s, z) [B, H, A]`` unclipped) for fresh noise ``z``.

    ``flow(s, z)``: the flow's deterministic Euler map of ``z`` with
    ``flow_params`` (FQL, Park et al. 2025, Eq. 8), under ``stop_gradient``
    unless ``stop_gradient=False``. ``obs [B, O]``, ``valid [B]``.
    """
    z = noise_chunk(actor, key, obs.shape[0])
    flow_target = actor.generative.sample_from(actor.state.apply_fn, flow_params, obs, z)
    if stop_gradient:
        flow_target = jax.lax.stop_gradient(flow_target)
    mu = onestep.apply_fn(mu_params, obs, z)
    return masked_mean(jnp.mean((mu - flow_target) ** 2, axis=(1, 2)), valid), mu


class DistilledBCAgent(flax.struct.PyTreeNode):
    """QC-FQL's BC pretraining: :class:`agents.bc.BCAgent`'s flow update plus the distillation of ``mu``.

    The flow's update (keys, loss, weights) is exactly ``BCAgent.update``'s,
    so the pretrained flow and its evaluation equal every other method's; the
    one-step policy takes one step of ``alpha * ||mu(s, z) - flow(s, z)||^2``
    (the QC-FQL actor loss with the Q term off) on the same batch, with a key
    of its own. Acting (the BC evaluation) uses the flow.
    """

    bc: BCAgent
    onestep: train_state.TrainState

    METRICS = ("bc_loss", "distill_loss")

    @property
    def actor(self) -> Actor:
        return self.bc.actor

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict
               ) -> "DistilledBCAgent":
        """The BC agent of ``seed`` and the one-step policy :meth:`QCFQLAgent.create` would build for it."""
        (k_mu,) = critic_lib.agent_keys(seed, 1)[2]  # the key QCFQLAgent.create gives mu
        return cls(bc=BCAgent.create(seed, obs_dim, action_dim, config),
                   onestep=make_onestep(k_mu, obs_dim, action_dim, config))

    def pretrained(self) -> dict:
        """What :meth:`QCFQLAgent.create` takes from pretraining: ``actor`` and ``onestep``."""
        return {"actor": self.bc.actor, "onestep": self.onestep}

    @jax.jit
    def update(self, batch: dict) -> tuple["DistilledBCAgent", dict]:
        """``BCAgent.update(batch)`` and one distillation step of ``mu`` (the flow's weights before the step)."""
        key = jax.random.fold_in(self.bc.rng, 1)  # BCAgent splits its rng itself; this key is apart from it

        def loss(mu_params):
            distill, _ = distill_term(self.bc.actor, self.bc.actor.state.params, self.onestep, mu_params,
                                      batch["obs"], batch["valid"], key)
            return self.bc.config.alpha * distill, distill

        (_, distill), grads = jax.value_and_grad(loss, has_aux=True)(self.onestep.params)
        bc_agent, info = self.bc.update(batch)
        return self.replace(bc=bc_agent, onestep=self.onestep.apply_gradients(grads=grads)), \
            {**info, "distill_loss": distill}

    def sample_actions(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """The BC flow's chunk (``BCAgent.sample_actions``): ``obs [B, O] -> [B, H, A]``."""
        return self.bc.sample_actions(obs, key)


class QCFQLAgent(flax.struct.PyTreeNode):
    """Immutable QC-FQL agent: BC flow ``actor``, one-step policy ``onestep``, ``critic``."""

    rng: jax.Array
    actor: Actor
    onestep: train_state.TrainState
    critic: Critic
    config: StaticConfig = flax.struct.field(pytree_node=False)

    METRICS = ("critic_loss", "q_mean", "bc_loss", "distill_loss")

    @staticmethod
    def pretrain_class(config: ml_collections.ConfigDict):
        """The BC-pretraining agent: :class:`DistilledBCAgent` (``pretrain_distill``) or :class:`agents.bc.BCAgent`."""
        return DistilledBCAgent if config.get("pretrain_distill", False) else BCAgent

    @staticmethod
    def check(config: ml_collections.ConfigDict) -> None:
        """Raises ``ValueError`` naming the first invalid agent field (run before any training)."""
        check_config(config)
        critic_lib.check_config(config)
        if config.alpha < 0:
            raise ValueError(f"agent.alpha must be >= 0, got {config.alpha}")
        if not all(isinstance(w, int) and w > 0 for w in tuple(config.onestep_hidden_dims)):
            raise ValueError(f"agent.onestep_hidden_dims must be positive widths (or empty: the actor's), "
                             f"got {tuple(config.onestep_hidden_dims)}")

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict,
               actor: Actor | None = None, onestep: train_state.TrainState | None = None) -> "QCFQLAgent":
        """Builds the agent; ``actor`` and ``onestep`` (from :class:`DistilledBCAgent` pretraining) replace fresh ones.

        Raises:
          ValueError: see :meth:`check`.
        """
        cls.check(config)
        rng, actor, critic, (k_mu,) = critic_lib.actor_and_critic(seed, obs_dim, action_dim, config, actor, 1)
        if onestep is None:
            onestep = make_onestep(k_mu, obs_dim, action_dim, config)
        return cls(rng=rng, actor=actor, onestep=onestep, critic=critic, config=StaticConfig(config))

    def policy(self, params, obs: jax.Array, z: jax.Array) -> jax.Array:
        """``clip(mu(obs [B, O], z [B, H, A]), -1, 1)``: ``[B, H, A]``."""
        return jnp.clip(self.onestep.apply_fn(params, obs, z), -1.0, 1.0)

    def _noise(self, key, batch: int) -> jax.Array:
        return noise_chunk(self.actor, key, batch)

    def target_rule(self, next_obs: jax.Array, key: jax.Array) -> jax.Array:
        """The one-step policy's chunk at ``next_obs``: ``[B, 1, H, A]``."""
        return self.policy(self.onestep.params, next_obs, self._noise(key, next_obs.shape[0]))[:, None]

    def actor_losses(self, flow_params, mu_params, batch: dict, key: jax.Array) -> tuple[jax.Array, dict]:
        """``L_bc(flow) + alpha L_distill + L_Q`` (Park et al. 2025, Eq. 8) on ``batch`` (see :meth:`update`)."""
        k_bc, k_z = jax.random.split(key)
        obs, valid = batch["obs"], batch["valid"]
        bc_loss = self.actor.bc_loss(flow_params, obs, batch["actions"], valid, k_bc)
        distill, mu = distill_term(self.actor, flow_params, self.onestep, mu_params, obs, valid, k_z,
                                   self.config.distill_stop_gradient)
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
    c.alpha = 1.0                      # distillation weight (paper: 100 with OGBench's -1-per-step rewards, Q ~ -10..-100;
                                       # here Q is in [0, 1], so 100 leaves mu a distilled BC policy: README)
    c.normalize_q_loss = False         # divide the Q term by mean |Q| (FQL's option; off in the QC code)
    c.distill_stop_gradient = True     # no gradient from the distillation into the BC flow (the paper's code)
    c.onestep_hidden_dims = (512, 512, 512, 512)  # mu's MLP widths (the paper's 4x512); () = actor_hidden_dims
    c.pretrain_distill = True          # BC pretraining also distils mu (DistilledBCAgent); False: mu starts offline
    return c

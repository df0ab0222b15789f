"""PPO with a Gaussian policy (the one-step baseline that DPPO is compared with).

Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347) with
GAE(lambda) advantages (Schulman et al. 2015, arXiv:1506.02438):

* policy ``pi(a | s)``: an MLP gives the mean ``mu(s) [A]``, a learned
  state-independent ``log_std [A]`` the spread; ``u ~ N(mu, std^2)`` and the
  env action is ``tanh(u)`` (``squash='tanh'``) or ``clip(u, -1, 1)``
  (``squash='clip'``). Likelihood ratios are taken on ``u``, where the tanh
  Jacobian cancels, so both variants share one loss;
* value ``V(s)``: a separate MLP;
* observations standardised by running statistics (mean/variance over every
  observation seen in training, Chan et al.'s parallel update), stored in the
  agent and thus in every checkpoint;
* loss ``-E[min(r A, clip(r, 1-eps, 1+eps) A)] + c_v E[(V - R)^2] / 2
  - c_e H[pi]`` (Eq. 7 and 9 of the PPO paper), advantages standardised per
  minibatch, ``R = A + V_old``; policy and value have their own Adam and
  their own global-norm gradient clip, so a large value error never shrinks
  the policy step;
* one :meth:`PPOAgent.update` call takes a whole rollout ``[T, N]``: updates
  the observation statistics, computes GAE once, then ``num_epochs`` passes
  of ``num_minibatches`` shuffled minibatches, all inside one ``jax.jit``.

GAE, the clipped surrogate and the minibatch scan are the on-policy core
shared with DPPO (:mod:`agents.onpolicy`); the rollout comes from the same
loop (:func:`launch.loops.make_onpolicy_iterations`) as a chunk of one
action (``horizon = action_steps = 1``). Episode ends: ``terminated`` steps
do not bootstrap, ``truncated`` ones (time limit) bootstrap with
``V(next_obs)`` of the episode's last observation; neither lets the
advantage recursion run into the next episode.
"""

from __future__ import annotations

import functools

import math

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from agents.common import StaticConfig
from agents.onpolicy import RunningNorm, clipped_surrogate, gae, minibatch_epochs, normalize
from networks import generative
from networks.mlp import MLP

_ACTIVATIONS = ("tanh", "silu", "relu")  # networks.mlp.ACTIVATIONS names PPO's config accepts
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class GaussianPolicy(nn.Module):
    """``obs [..., O] -> (mean [..., A], log_std [A])`` (log_std clipped to ``[-5, 2]``)."""

    hidden_dims: tuple[int, ...]
    action_dim: int
    activation: str = "tanh"
    init_std: float = 0.5

    @nn.compact
    def __call__(self, obs):
        mean = MLP(self.hidden_dims, self.action_dim, activation=self.activation, init_scheme="orthogonal",
                   out_scale=0.01)(obs)
        log_std = self.param("log_std", nn.initializers.constant(math.log(self.init_std)), (self.action_dim,))
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class ValueNet(nn.Module):
    """``obs [..., O] -> V(s) [...]``."""

    hidden_dims: tuple[int, ...]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        return MLP(self.hidden_dims, 1, activation=self.activation, init_scheme="orthogonal", out_scale=1.0)(obs)[..., 0]


def gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """``log N(u; mean, exp(log_std)^2)`` summed over the last axis: ``[..., A] -> [...]``
    (the elementwise density is :func:`networks.generative.gaussian_log_prob`, shared with DPPO)."""
    return jnp.sum(generative.gaussian_log_prob(u, mean, jnp.exp(log_std)), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy (nats) of a diagonal Gaussian with ``log_std [A]``: a scalar."""
    return jnp.sum(log_std + 0.5 * math.log(2 * math.pi * math.e))


def _optimizer(config) -> optax.GradientTransformation:
    def one():
        tx = optax.adam(config.lr, eps=1e-5)
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), tx) if config.max_grad_norm > 0 else tx

    return optax.multi_transform({"policy": one(), "value": one()},
                                 lambda params: {k: jax.tree.map(lambda _, k=k: k, v) for k, v in params.items()})


class PPOAgent(flax.struct.PyTreeNode):
    """Immutable PPO agent: ``update``, ``act`` and ``sample_actions`` are pure and jitted.

    Fields: ``rng``; ``state`` (params ``{'policy', 'value'}`` and both
    optimizers); ``obs_norm`` (:class:`RunningNorm`); static ``action_dim``
    and ``config``.
    Every method takes raw env observations and standardises them itself.
    """

    rng: jax.Array
    state: train_state.TrainState
    obs_norm: RunningNorm
    action_dim: int = flax.struct.field(pytree_node=False)
    config: StaticConfig = flax.struct.field(pytree_node=False)

    METRICS = ("value_loss", "approx_kl", "std")  # what a progress line shows
    ON_POLICY = True
    FROM_SCRATCH = True  # no BC actor: trained from a random policy, without demonstrations

    @staticmethod
    def check(config: ml_collections.ConfigDict) -> None:
        """Raises ValueError (``'agent.<field>: ...'``) for an invalid PPO field."""
        checks = [
            (config.squash in ("tanh", "clip"), "squash", "'tanh' or 'clip'", config.squash),
            (config.activation in _ACTIVATIONS, "activation", f"one of {sorted(_ACTIVATIONS)}", config.activation),
            (config.horizon == 1 and config.action_steps == 1, "horizon", "1 (one action per step, action_steps 1)",
             config.horizon),
            (config.rollout_length >= 1, "rollout_length", ">= 1", config.rollout_length),
            (config.num_epochs >= 1, "num_epochs", ">= 1", config.num_epochs),
            (config.num_minibatches >= 1, "num_minibatches", ">= 1", config.num_minibatches),
            (0.0 <= config.gae_lambda <= 1.0, "gae_lambda", "in [0, 1]", config.gae_lambda),
            (config.clip_eps > 0, "clip_eps", "> 0", config.clip_eps),
            (config.init_std > 0, "init_std", "> 0", config.init_std),
        ]
        for ok, field, expected, value in checks:
            if not ok:
                raise ValueError(f"agent.{field}: expected {expected}, got {value!r}")

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict,
               actor=None, num_envs: int = 1) -> PPOAgent:
        """Builds the agent for observations ``[O]`` and actions ``[A]`` in ``[-1, 1]`` (``actor``,
        ``num_envs``: unused, the pipeline's common signature).

        Raises:
          ValueError: an invalid field (see :meth:`check`), e.g. ``agent.squash``.
        """
        del actor, num_envs
        cls.check(config)
        rng, k_pi, k_v = jax.random.split(jax.random.PRNGKey(seed), 3)
        policy, value = _nets(config, action_dim)
        dummy = jnp.zeros((1, obs_dim))
        params = {"policy": policy.init(k_pi, dummy), "value": value.init(k_v, dummy)}
        state = train_state.TrainState.create(apply_fn=None, params=params, tx=_optimizer(config))
        return cls(rng=rng, state=state, obs_norm=RunningNorm.create(obs_dim), action_dim=int(action_dim),
                   config=StaticConfig(config))

    # --- acting -----------------------------------------------------------------------------

    def _dist(self, params, obs):
        policy, _ = _nets(self.config, self.action_dim)
        return policy.apply(params["policy"], self.obs_norm(obs))

    def _value(self, params, obs):
        _, value = _nets(self.config, 0)
        return value.apply(params["value"], self.obs_norm(obs))

    def squash(self, u: jax.Array) -> jax.Array:
        """Pre-squash sample ``u [..., A]`` -> env action in ``[-1, 1]``."""
        return jnp.tanh(u) if self.config.squash == "tanh" else jnp.clip(u, -1.0, 1.0)

    @jax.jit
    def act(self, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """Samples ``u ~ pi(. | obs [N, O])``: ``(chunk [N, 1, A] = squash(u) in [-1, 1], {'u': u [N, A]})``."""
        mean, log_std = self._dist(self.state.params, obs)
        u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return self.squash(u)[:, None], {"u": u}

    @jax.jit
    def sample_actions(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """The evaluation policy, a one-step chunk ``obs [B, O] -> [B, 1, A]``.

        The squashed mean with ``eval_deterministic`` (default), else a sample.
        """
        if self.config.eval_deterministic:
            return self.mean_actions(obs)
        return self.act(obs, key)[0]

    @jax.jit
    def mean_actions(self, obs: jax.Array) -> jax.Array:
        """Deterministic one-step chunk (squashed mean): ``obs [B, O] -> [B, 1, A]``."""
        return self.squash(self._dist(self.state.params, obs)[0])[:, None]

    @jax.jit
    def state_value(self, obs: jax.Array) -> jax.Array:
        """``V(obs)``: ``[..., O] -> [...]`` (in units of scaled reward)."""
        return self._value(self.state.params, obs)

    # --- learning ---------------------------------------------------------------------------

    def _loss(self, params, mb):
        c = self.config
        mean, log_std = self._dist(params, mb["obs"])
        logp = gaussian_log_prob(mb["u"], mean, log_std)
        adv = normalize(mb["adv"]) if c.normalize_advantages else mb["adv"]
        pg_loss, info = clipped_surrogate(logp, mb["logp"], adv, c.clip_eps)
        v = self._value(params, mb["obs"])
        v_loss = 0.5 * jnp.mean((v - mb["ret"]) ** 2)
        entropy = gaussian_entropy(log_std)
        loss = pg_loss + c.vf_coef * v_loss - c.ent_coef * entropy
        info.update(pg_loss=pg_loss, value_loss=v_loss, entropy=entropy, std=jnp.exp(log_std).mean())
        return loss, info

    @functools.partial(jax.jit, static_argnames="shard_batch")
    def update(self, rollout: dict, shard_batch=None) -> tuple[PPOAgent, dict]:
        """PPO update on one rollout of ``T`` steps in ``N`` envs.

        Args:
          rollout: :data:`agents.onpolicy.ROLLOUT_FIELDS` ``[T, N, ...]``
            (``reward``, ``discount = gamma (1 - terminated)``, ``done``,
            ``obs``, ``next_obs``: the observation each step led to, before any
            auto-reset) plus ``u [T, N, A]`` (pre-squash samples from :meth:`act`).
          shard_batch: ``None``, or the constraint splitting each minibatch
            across devices (:func:`agents.onpolicy.minibatch_epochs`).

        Returns:
          the new agent and scalar metrics (losses, entropy, KL, clip
          fraction, policy std, mean value) averaged over minibatches.

        Raises:
          ValueError: ``T * N`` not divisible by ``num_minibatches`` (at trace time).
        """
        c = self.config
        T, N = rollout["reward"].shape
        if (T * N) % c.num_minibatches:
            raise ValueError(f"agent.num_minibatches={c.num_minibatches} must divide rollout_length x num_envs "
                             f"= {T} x {N}")
        agent = self.replace(obs_norm=self.obs_norm.update(rollout["obs"])) if c.normalize_obs else self
        params = agent.state.params
        # old log-probs and values under the updated statistics: the first ratio is exactly 1
        mean, log_std = agent._dist(params, rollout["obs"])
        logp = gaussian_log_prob(rollout["u"], mean, log_std)
        value, next_value = agent._value(params, rollout["obs"]), agent._value(params, rollout["next_obs"])
        adv, ret = gae(rollout["reward"] * c.reward_scale, value, next_value, rollout["discount"],
                       rollout["done"], c.gae_lambda)
        flat = jax.tree.map(lambda x: x.reshape((T * N,) + x.shape[2:]),
                            {"obs": rollout["obs"], "u": rollout["u"], "logp": logp, "adv": adv, "ret": ret})

        def minibatch(state, mb):
            grads, info = jax.grad(agent.replace(state=state)._loss, has_aux=True)(state.params, mb)
            return state.apply_gradients(grads=grads), info

        rng, key = jax.random.split(agent.rng)
        state, info = minibatch_epochs(agent.state, flat, key, c.num_epochs, T * N // c.num_minibatches, minibatch,
                                       shard_batch=shard_batch)
        info["value_mean"] = value.mean()
        return agent.replace(rng=rng, state=state), info


def _nets(config, action_dim: int) -> tuple[GaussianPolicy, ValueNet]:
    return (GaussianPolicy(tuple(config.policy_hidden_dims), action_dim, config.activation, config.init_std),
            ValueNet(tuple(config.value_hidden_dims), config.activation))


def get_config() -> ml_collections.ConfigDict:
    """PPO hyperparameters (standard MuJoCo defaults; presets in ``configs/ppo.py`` tune a few)."""
    c = ml_collections.ConfigDict()
    c.horizon = 1                      # one action per policy call (the on-policy loop sees a chunk of 1)
    c.action_steps = 1
    c.eval_deterministic = True        # evaluate the squashed mean (False: sample the policy)
    c.rollout_length = 32              # T: env steps per env between updates
    c.num_epochs = 4                   # passes over each rollout
    c.num_minibatches = 8              # minibatches per pass (must divide T x num_envs)
    c.lr = 3e-4                        # Adam learning rate (policy and value)
    c.max_grad_norm = 0.5              # global-norm gradient clip per network (0 disables)
    c.discount = 0.99                  # gamma per env step
    c.gae_lambda = 0.95                # GAE lambda
    c.clip_eps = 0.2                   # PPO ratio clip epsilon
    c.vf_coef = 0.5                    # value-loss weight
    c.ent_coef = 0.0                   # entropy bonus weight
    c.reward_scale = 1.0               # rewards are multiplied by this for GAE/value targets
    c.normalize_obs = True             # running observation standardisation
    c.normalize_advantages = True      # standardise advantages per minibatch
    c.squash = "tanh"                  # 'tanh' (squashed Gaussian) or 'clip' (clipped Gaussian)
    c.init_std = 0.5                   # initial policy std (pre-squash)
    c.activation = "tanh"              # 'tanh', 'silu' or 'relu'
    c.policy_hidden_dims = (64, 64)    # policy MLP widths
    c.value_hidden_dims = (64, 64)     # value MLP widths
    return c

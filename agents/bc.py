"""Behaviour cloning of a chunked flow-matching or diffusion policy.

Diffusion Policy (Chi et al. 2023, arXiv:2303.04137): ``L = E ||eps_theta(x_t,
t, s) - eps||^2`` (DDPM) or the flow-matching loss ``E ||v_theta(x_t, t, s) -
(x1 - x0)||^2`` (Lipman et al. 2022), with an MLP denoiser over the flattened
chunk or DP's 1D temporal U-Net (``actor_network``), an observation history
of ``obs_history`` steps (``T_o``, flattened into the observation by
:class:`envs.wrappers.ObsHistory`), DP's learning-rate schedule and EMA
warm-up; ``generative='mse'`` is the deterministic regression baseline.
Every RL agent starts from this pretrained actor (``configs/bc.py`` runs BC alone).
"""

from __future__ import annotations

import functools

import flax
import jax
import ml_collections

from agents.actor import Actor
from agents.common import StaticConfig


class BCAgent(flax.struct.PyTreeNode):
    """Immutable BC agent: ``update`` and ``sample_actions`` are pure and jitted."""

    rng: jax.Array
    actor: Actor
    config: StaticConfig = flax.struct.field(pytree_node=False)

    METRICS = ("bc_loss",)  # what a progress line shows

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: ml_collections.ConfigDict) -> "BCAgent":
        """Builds the agent for ``obs [O]`` and chunks ``[H, A]`` (H = ``config.horizon``)."""
        rng, key = jax.random.split(jax.random.PRNGKey(seed))
        return cls(rng=rng, actor=Actor.create(key, obs_dim, action_dim, config),
                   config=StaticConfig(config))

    @jax.jit
    def update(self, batch: dict) -> tuple["BCAgent", dict]:
        """One gradient step on ``batch``: ``obs [B, O]``, ``actions [B, H, A]``, ``valid [B]``.

        Returns the new agent and ``{'bc_loss': scalar}``.
        """
        rng, key = jax.random.split(self.rng)
        loss_fn = functools.partial(self.actor.bc_loss, obs=batch["obs"], chunk=batch["actions"],
                                    weights=batch["valid"], key=key)
        loss, grads = jax.value_and_grad(loss_fn)(self.actor.state.params)
        return self.replace(rng=rng, actor=self.actor.apply_gradients(grads)), {"bc_loss": loss}

    @jax.jit
    def sample_actions(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        """One chunk per observation: ``obs [B, O] -> [B, H, A]`` in ``[-1, 1]``."""
        return self.actor.sample(obs, key)

    def pretrained(self) -> dict:
        """What an RL agent's ``create`` takes from BC pretraining: ``{'actor': actor}``."""
        return {"actor": self.actor}


def get_config() -> ml_collections.ConfigDict:
    """Actor hyperparameters shared by every agent (each RL agent extends this)."""
    c = ml_collections.ConfigDict()
    c.generative = "flow"              # 'flow' (Euler), 'ddpm' (DDPM training, DDIM sampling) or 'mse' (regression baseline)
    c.obs_history = 1                  # T_o: observations the policy (and critic) sees, the last T_o steps (Diffusion Policy: 2)
    c.horizon = 5                      # H: actions predicted per chunk
    c.action_steps = 5                 # h <= H: actions executed before replanning
    c.temporal_ensemble = False        # evaluation: ACT's temporal ensembling (query every step, average overlapping chunks)
    c.ensemble_decay = 0.01            # its m: weights exp(-m i), i = 0 the oldest prediction (ACT's 0.01)
    c.denoising_steps = 10             # K: Euler steps (flow) or DDIM steps (ddpm) when sampling
    c.train_denoising_steps = 100      # DDPM training steps (ddpm only)
    c.noise_schedule = "squaredcos_cap_v2"  # DDPM beta schedule: 'squaredcos_cap_v2' | 'linear' | 'vp' (Diffusion-QL, for small K)
    c.ddim_eta = 0.0                   # DDIM stochasticity (0: deterministic)
    c.actor_network = "mlp"            # denoiser: 'mlp' (over the flattened chunk) | 'unet' (1D temporal U-Net, FiLM)
    c.actor_hidden_dims = (256, 256)   # denoiser MLP widths (mlp)
    c.unet_down_dims = (32, 64, 128)   # U-Net channels per level (unet; Diffusion Policy: 256, 512, 1024)
    c.unet_kernel_size = 5             # U-Net temporal kernel width (unet)
    c.actor_layer_norm = False         # LayerNorm in the denoiser MLP
    c.actor_activation = "mish"        # denoiser nonlinearity: 'mish' (Diffusion Policy) | 'gelu' | 'relu' | 'silu'
    c.actor_lr = 3e-4                  # AdamW learning rate (peak, with a schedule)
    c.actor_lr_warmup_steps = 0        # linear warm-up updates (with actor_lr_decay_steps > 0)
    c.actor_lr_decay_steps = 0         # cosine decay to 0 over this many updates (0: constant actor_lr; -1: pretrain.steps)
    c.actor_weight_decay = 0.0         # AdamW weight decay
    c.grad_clip = 1.0                  # global-norm gradient clip (0 disables)
    c.ema_decay = 0.999                # EMA of actor weights used for sampling (its ceiling, with ema_power)
    c.ema_power = 0.0                  # > 0: Diffusion Policy's EMA warm-up 1 - (1 + n)^-power (0.75); 0: (1+n)/(10+n)
    c.batch_size = 256                 # chunks per gradient step
    c.discount = 0.99                  # gamma per env step (a chunk of h steps discounts gamma^h)
    return c

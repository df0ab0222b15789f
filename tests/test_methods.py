"""The off-policy methods on the shared pieces: target-action rules, selection, DQL's chain gradient,
guidance, QC-FQL's distillation, one compile per agent."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

from agents import dql, guided, qc, qc_fql
from agents.select import select
from networks.generative import DDPM, FlowMatching, FLOW_TIME_SCALE

OBS, ACT, H = 6, 2, 5


def _config(module, **overrides):
    c = module.get_config()
    c.horizon, c.action_steps, c.batch_size = H, H, 64
    c.actor_hidden_dims, c.critic_hidden_dims, c.denoising_steps = (64, 64), (64, 64), 4
    c.num_samples, c.target_num_samples = 4, 3
    if "onestep_hidden_dims" in c:
        c.onestep_hidden_dims = (64, 64)
    for k, v in overrides.items():
        c[k] = v
    return c


@pytest.fixture(scope="module")
def batch():
    ks = jax.random.split(jax.random.PRNGKey(0), 5)
    n = 64
    obs = jax.random.normal(ks[0], (n, OBS))
    actions = jnp.tanh(obs @ jax.random.normal(ks[1], (OBS, H * ACT))).reshape(n, H, ACT)
    return {"obs": obs, "actions": actions, "critic_actions": actions,
            "reward_sum": jax.random.uniform(ks[2], (n,)),
            "discount": jnp.full((n,), 0.99**H) * (jax.random.uniform(ks[3], (n,)) > 0.2),
            "next_obs": jax.random.normal(ks[4], (n, OBS)), "valid": jnp.ones((n,)),
            "terminated": jnp.zeros((n,), bool)}


def _perturbed(tree, key, scale=0.3):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _with_distinct_weights(agent):
    """Target critic and EMA actor differ from the online weights, so a rule that uses the wrong ones shows."""
    critic = agent.critic.replace(target_params=_perturbed(agent.critic.state.params, jax.random.PRNGKey(1)))
    actor = agent.actor.replace(ema_params=_perturbed(agent.actor.state.params, jax.random.PRNGKey(2)))
    return agent.replace(critic=critic, actor=actor)


def _flow_chain(apply_fn, params, obs, x, steps, guide=None):
    """Euler integration written out step by step (the test's own sampler)."""
    dt = 1.0 / steps
    for k in range(steps):
        t = jnp.full((x.shape[0],), k * dt)
        v = apply_fn(params, x, t * FLOW_TIME_SCALE, obs)
        if guide is not None:
            v = v + guide(x, jnp.clip(x + (1 - t)[:, None, None] * v, -1, 1), k)
        x = x + dt * v
    return jnp.clip(x, -1, 1)


def _expected_target(agent, batch, candidates, agg):
    """``r + discount * max_n agg_e Q_target(s', a'_n)`` by hand, and the critic loss with it."""
    c = agent.critic
    b, n = candidates.shape[:2]
    rows = jnp.repeat(batch["next_obs"], n, 0)
    q = c.state.apply_fn(c.target_params, rows, candidates.reshape(b * n, H, ACT)[:, :c.action_steps])
    q = (q.min(0) if agg == "min" else q.mean(0)).reshape(b, n)
    target = batch["reward_sum"] + batch["discount"] * q.max(1)
    q_online = c.state.apply_fn(c.state.params, batch["obs"], batch["critic_actions"])
    return target, float(jnp.mean((q_online - target[None]) ** 2) * q_online.shape[0])


def _hand_candidates(name, agent, next_obs, key):
    """Each method's target-action rule, computed here from its definition."""
    actor = agent.actor
    if name == "qc":  # best-of-N candidates from the BC actor's EMA weights
        n = agent.config.target_num_samples
        noise = jax.random.normal(key, (next_obs.shape[0] * n, H, ACT))
        x = _flow_chain(actor.state.apply_fn, actor.ema_params, jnp.repeat(next_obs, n, 0), noise, 4)
        return x.reshape(-1, n, H, ACT)
    if name in ("dql", "dql_maxq"):  # the EMA (target) actor: one sample, or N for the max-Q backup
        n = agent.config.target_num_samples if agent.config.max_q_backup else 1
        noise = jax.random.normal(key, (next_obs.shape[0] * n, H, ACT))
        x = _flow_chain(actor.state.apply_fn, actor.ema_params, jnp.repeat(next_obs, n, 0), noise, 4)
        return x.reshape(-1, n, H, ACT)
    if name == "qc_fql":  # the one-step policy's chunk
        z = jax.random.normal(key, (next_obs.shape[0], H, ACT))
        return jnp.clip(agent.onestep.apply_fn(agent.onestep.params, next_obs, z), -1, 1)[:, None]
    if name == "guided":  # the guided sampler, gradient of the online critic at the clean estimate
        n = agent.config.target_num_samples
        rows = jnp.repeat(next_obs, n, 0)
        grad_q = jax.grad(lambda a: agent.critic.value(rows, a).sum())
        w = agent.config.guidance_scale
        noise = jax.random.normal(key, (rows.shape[0], H, ACT))
        x = _flow_chain(actor.state.apply_fn, actor.ema_params, rows, noise, 4,
                        guide=lambda x, x_hat, k: w * grad_q(x_hat))
        return x.reshape(-1, n, H, ACT)
    raise AssertionError(name)


AGENTS = {"qc": (qc.QCAgent, qc, {}), "dql": (dql.DQLAgent, dql, {}),
          "dql_maxq": (dql.DQLAgent, dql, {"max_q_backup": True}), "qc_fql": (qc_fql.QCFQLAgent, qc_fql, {}),
          "guided": (guided.GuidedAgent, guided, {"guidance_scale": 2.0})}


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_td_target_with_each_target_action_rule_by_hand(name, batch):
    cls, module, overrides = AGENTS[name]
    agent = _with_distinct_weights(cls.create(0, OBS, ACT, _config(module, **overrides)))
    key = jax.random.PRNGKey(9)
    _, info = agent.critic.update(batch, agent.target_rule, key)
    candidates = jax.jit(_hand_candidates, static_argnums=0)(name, agent, batch["next_obs"], key)
    target, loss = _expected_target(agent, batch, candidates, agent.config.q_agg)
    np.testing.assert_allclose(float(info["target_mean"]), float(target.mean()), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(info["critic_loss"]), loss, rtol=1e-4)


def test_softmax_selection_is_argmax_when_cold_and_uniform_when_hot():
    chunks = jax.random.normal(jax.random.PRNGKey(0), (3, 5, H, ACT))
    q = jnp.array([[0.1, 0.5, 0.2, 0.49, 0.0], [3.0, 1.0, 2.0, 2.9, 0.0], [-1.0, -2.0, -0.5, -0.6, -3.0]])
    best, best_q = select(chunks, q, "argmax")
    for i, key in enumerate(jax.random.split(jax.random.PRNGKey(1), 20)):
        cold, cold_q = select(chunks, q, "softmax", 1e-6, key)
        np.testing.assert_array_equal(cold, best)
        np.testing.assert_array_equal(cold_q, best_q)
    index_chunks = jnp.arange(5.0)[None, :, None, None]  # candidate i is the chunk [[i]]
    picks = np.asarray(jax.vmap(lambda k: select(index_chunks.repeat(3, 0), q, "softmax", 1e6, k)[0])(
        jax.random.split(jax.random.PRNGKey(2), 2000))).reshape(-1)
    freq = np.bincount(picks.astype(int), minlength=5) / picks.size
    np.testing.assert_allclose(freq, 0.2, atol=0.025)  # uniform over the 5 candidates
    warm = np.asarray(jax.vmap(lambda k: select(index_chunks, q[1:2], "softmax", 1.0, k)[0])(
        jax.random.split(jax.random.PRNGKey(3), 2000))).reshape(-1)
    expected = np.asarray(jax.nn.softmax(q[1]))
    np.testing.assert_allclose(np.bincount(warm.astype(int), minlength=5) / warm.size, expected, atol=0.03)
    with pytest.raises(ValueError, match="selection"):
        select(chunks, q, "median")


def _fixed_critic(agent, goal):
    """A critic that prefers chunks near ``goal [H, A]`` and never trains: ``Q = -||a_{:h} - goal||^2``."""
    def apply_fn(params, obs, chunk):
        return -jnp.sum((chunk - params["goal"][:chunk.shape[1]]) ** 2, axis=(1, 2))[None]

    state = train_state.TrainState.create(apply_fn=apply_fn, params={"goal": goal}, tx=optax.set_to_zero())
    return agent.critic.replace(state=state, target_params={"goal": goal})


GOAL = jnp.full((H, ACT), 0.8)


def _q_of_live_samples(agent, obs):
    x = agent.actor.sample(obs, jax.random.PRNGKey(5), params=agent.actor.state.params)
    return float(-jnp.sum((x - GOAL) ** 2, axis=(1, 2)).mean())


@pytest.mark.parametrize("q_action", ["chain", "one_step"])
def test_dql_q_gradient_moves_samples_toward_what_the_critic_prefers(q_action, batch):
    """With ``eta > 0`` the actor's samples move toward the critic's preferred chunk; with ``eta = 0``
    (BC only) they do not. A ``stop_gradient`` in the chain (or in EDP's one-step estimate) fails this."""
    results = {}
    for eta in (0.0, 5.0):
        agent = dql.DQLAgent.create(0, OBS, ACT, _config(dql, eta=eta, q_action=q_action))
        agent = agent.replace(critic=_fixed_critic(agent, GOAL))
        before = _q_of_live_samples(agent, batch["obs"])
        for _ in range(40):
            agent, _ = agent.update(batch)
        results[eta] = _q_of_live_samples(agent, batch["obs"]) - before
    assert results[5.0] > results[0.0] + 1.0, results


@pytest.mark.parametrize("sampler,guide_at", [(FlowMatching(denoising_steps=6), "clean"),
                                              (DDPM(train_steps=60, denoising_steps=6), "clean"),
                                              (FlowMatching(denoising_steps=6), "noisy")],
                         ids=["flow", "ddpm", "flow-noisy"])
def test_guidance_raises_q_grows_with_w_and_is_exact_at_zero(sampler, guide_at):
    agent = guided.GuidedAgent.create(0, OBS, ACT, _config(guided, num_samples=1, guide_at=guide_at))
    agent = agent.replace(critic=_fixed_critic(agent, GOAL))
    obs = jax.random.normal(jax.random.PRNGKey(3), (128, OBS))
    actor = agent.actor.replace(generative=sampler)
    agent = agent.replace(actor=actor)
    key = jax.random.PRNGKey(4)

    def samples(w):
        return agent.guided_samples(obs, key, 1, scale=w)[:, 0]

    def q(x):
        return float(-jnp.sum((x - GOAL) ** 2, axis=(1, 2)).mean())

    plain = actor.sample(obs, key, 1)[:, 0]
    np.testing.assert_array_equal(samples(0.0), plain)  # w = 0: the unguided sampler, bit for bit
    zero_hook = actor.sample(obs, key, 1, guide=lambda x, x_hat, k: jnp.zeros_like(x))[:, 0]
    np.testing.assert_array_equal(zero_hook, plain)     # a zero guide changes nothing either
    q0, q1, q2 = q(plain), q(samples(0.2)), q(samples(1.0))
    assert q0 < q1 < q2, (q0, q1, q2)
    dist = [float(jnp.abs(samples(w) - plain).mean()) for w in (0.2, 1.0)]
    assert dist[0] < dist[1], dist


def test_qc_fql_distillation_pulls_mu_to_the_flow_map(batch):
    """With the Q term off, ``alpha ||mu(s, z) - flow(s, z)||^2`` drives mu onto the flow's map of the
    same noise; with ``alpha = 0`` as well, mu gets no signal and the gap stays."""
    obs = batch["obs"]
    z = jax.random.normal(jax.random.PRNGKey(6), (obs.shape[0], H, ACT))

    def gap(agent):
        flow = agent.actor.generative.sample_from(agent.actor.state.apply_fn, agent.actor.state.params, obs, z)
        return float(jnp.mean((agent.onestep.apply_fn(agent.onestep.params, obs, z) - flow) ** 2))

    gaps = {}
    for alpha in (0.0, 1.0):
        agent = qc_fql.QCFQLAgent.create(0, OBS, ACT, _config(qc_fql, alpha=alpha))
        flat = _fixed_critic(agent, GOAL)
        flat = flat.replace(state=flat.state.replace(apply_fn=lambda p, o, c: jnp.zeros((1, c.shape[0]))))  # Q = 0
        agent = agent.replace(critic=flat)
        before = gap(agent)
        for _ in range(150):
            agent, info = agent.update(batch)
        gaps[alpha] = gap(agent) / before
    assert gaps[1.0] < 0.35 and gaps[0.0] > 0.7, gaps
    # the distillation target carries no gradient into the BC flow: with the BC loss off,
    # the flow's weights stay where they were
    frozen = qc_fql.QCFQLAgent.create(0, OBS, ACT, _config(qc_fql, alpha=1.0)).replace(critic=flat)
    grads = jax.grad(lambda fp: frozen.actor_losses(fp, frozen.onestep.params, {**batch, "actions": batch["actions"]},
                                                    jax.random.PRNGKey(0))[1]["distill_loss"])(
        frozen.actor.state.params)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_qc_fql_pretraining_distils_mu_and_leaves_the_bc_flow_as_bc_trains_it(batch):
    """``DistilledBCAgent`` (QC-FQL's BC pretraining): the flow ends bit for bit where plain BC puts it (every
    method starts from the same BC actor), ``mu`` moves onto the flow's map, and ``QCFQLAgent.create`` takes
    that ``mu`` over instead of a fresh one."""
    from agents.bc import BCAgent
    from launch.experiment import pretrain_class

    c = _config(qc_fql)
    assert pretrain_class(qc_fql.QCFQLAgent, c) is qc_fql.DistilledBCAgent
    assert pretrain_class(qc_fql.QCFQLAgent, _config(qc_fql, pretrain_distill=False)) is BCAgent
    assert pretrain_class(qc.QCAgent, _config(qc)) is BCAgent
    plain, distilled = BCAgent.create(0, OBS, ACT, c), qc_fql.DistilledBCAgent.create(0, OBS, ACT, c)
    fresh = qc_fql.QCFQLAgent.create(0, OBS, ACT, c)
    chex.assert_trees_all_equal(distilled.onestep.params, fresh.onestep.params)  # the same mu as without pretraining
    obs = batch["obs"]
    z = jax.random.normal(jax.random.PRNGKey(6), (obs.shape[0], H, ACT))

    def gap(agent):
        flow = agent.actor.generative.sample_from(agent.actor.state.apply_fn, agent.actor.state.params, obs, z)
        return float(jnp.mean((agent.onestep.apply_fn(agent.onestep.params, obs, z) - flow) ** 2))

    before = gap(distilled)
    for _ in range(150):
        plain, info_plain = plain.update(batch)
        distilled, info = distilled.update(batch)
    arrays = lambda a: (a.actor.state.params, a.actor.ema_params, a.actor.state.opt_state)  # noqa: E731
    chex.assert_trees_all_equal(arrays(distilled), arrays(plain))
    assert float(info["bc_loss"]) == float(info_plain["bc_loss"]) and float(info["distill_loss"]) > 0
    assert gap(distilled) < 0.35 * before, (gap(distilled), before)
    agent = qc_fql.QCFQLAgent.create(0, OBS, ACT, c, **distilled.pretrained())
    chex.assert_trees_all_equal(agent.onestep.params, distilled.onestep.params)
    chex.assert_trees_all_equal(agent.actor.state.params, plain.actor.state.params)
    assert gap(agent) == gap(distilled)


@pytest.mark.parametrize("name", ["qc_fql", "dql", "guided"])
def test_each_agent_traces_update_and_sample_actions_once(name, batch):
    cls, module, overrides = AGENTS[name]
    agent = jax.device_put(cls.create(0, OBS, ACT, _config(module, **overrides)), jax.devices()[0])
    chex.clear_trace_counter()
    update = jax.jit(chex.assert_max_traces(cls.update.__wrapped__, n=1))
    act = jax.jit(chex.assert_max_traces(cls.sample_actions.__wrapped__, n=1))
    for i in range(3):
        agent, info = update(agent, batch)
        chunk = act(agent, batch["obs"][:5], jax.random.PRNGKey(i))
    assert chunk.shape == (5, H, ACT) and float(jnp.abs(chunk).max()) <= 1.0
    assert all(np.isfinite(float(v)) for v in info.values())


@pytest.mark.parametrize("name,field,value", [("dql", "q_action", "both"), ("dql", "eta", -1.0),
                                              ("qc_fql", "alpha", -1.0), ("qc_fql", "onestep_hidden_dims", (64, 0)),
                                              ("guided", "guidance_schedule", "cubic"),
                                              ("guided", "guide_at", "x"), ("qc", "selection", "median"),
                                              ("qc", "q_agg", "max")])
def test_agents_reject_bad_fields_by_name(name, field, value):
    cls, module, _ = AGENTS[name]
    c = _config(module)
    c[field] = value
    with pytest.raises(ValueError, match=f"agent.{field}"):
        cls.create(0, OBS, ACT, c)

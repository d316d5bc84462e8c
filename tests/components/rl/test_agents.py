"""Agents built from options: the variant, loss, optimizer and networks the options name."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tf_agents.agents.dqn import dqn_agent
from tf_agents.environments import tf_py_environment
from tf_agents.utils import common

from edgeline.common.environments import load_gym
from edgeline.components.rl import agents
from edgeline.components.rl.options import DqnOptions, ReinforceOptions


def _cartpole_specs():
    environment = tf_py_environment.TFPyEnvironment(load_gym("CartPole-v1", seed=0))
    return environment.time_step_spec(), environment.action_spec()


def _dqn(options: DqnOptions):
    time_step_spec, action_spec = _cartpole_specs()
    return agents.build_dqn_agent(
        options,
        time_step_spec,
        action_spec,
        env_steps=tf.Variable(0, dtype=tf.int64),
        train_step_counter=tf.Variable(0, dtype=tf.int64),
    )


def test_dqn_options_choose_the_agent_variant_loss_and_optimizer():
    plain = _dqn(DqnOptions(q_network="dqn_mlp_100_50"))
    assert type(plain) is dqn_agent.DqnAgent
    assert plain._td_errors_loss_fn is common.element_wise_huber_loss  # noqa: SLF001
    assert isinstance(plain._optimizer, keras.optimizers.Adam)  # noqa: SLF001

    double = _dqn(
        DqnOptions(
            double_dqn=True,
            n_step_update=3,
            loss="squared",
            optimizer="rmsprop",
            rmsprop_decay=0.95,
            optimizer_epsilon=0.01,
            target_update_period=7,
            target_update_tau=0.5,
        )
    )
    assert isinstance(double, dqn_agent.DdqnAgent)
    assert double._n_step_update == 3  # noqa: SLF001
    assert double._td_errors_loss_fn is common.element_wise_squared_loss  # noqa: SLF001
    optimizer = double._optimizer  # noqa: SLF001
    assert isinstance(optimizer, keras.optimizers.RMSprop)
    assert optimizer.rho == 0.95 and optimizer.epsilon == 0.01 and optimizer.centered
    # A soft target update with tau 0.5 moves the target halfway to the online network.
    online = double._q_network.variables[0]  # noqa: SLF001
    target = double._target_q_network.variables[0]  # noqa: SLF001
    before = target.numpy()
    online.assign_add(tf.ones_like(online))
    for _ in range(7):  # once every target_update_period = 7 train steps
        double._update_target()  # noqa: SLF001
    np.testing.assert_allclose(target.numpy(), before + 0.5, rtol=1e-5, atol=1e-6)  # float32 rounding near 0
    # The Q-network comes from the model registry, sized for CartPole's 2 actions.
    q_network = double._q_network  # noqa: SLF001
    assert q_network.name == "QNetwork_dqn_mlp_100_50"
    assert q_network.layers[-1].units == 2


def test_reinforce_options_choose_the_baseline_and_normalization():
    time_step_spec, action_spec = _cartpole_specs()

    def build(options):
        return agents.build_reinforce_agent(
            options,
            time_step_spec,
            action_spec,
            seed=0,
            train_step_counter=tf.Variable(0, dtype=tf.int64),
        )

    plain = build(ReinforceOptions(actor_layers=(32,), normalize_returns=False))
    assert plain._value_network is None and not plain._normalize_returns  # noqa: SLF001
    with_baseline = build(ReinforceOptions(value_baseline=True, value_layers=(16, 8)))
    assert with_baseline._value_network is not None  # noqa: SLF001
    assert with_baseline._normalize_returns  # noqa: SLF001
    # The actor's logits cover the two actions.
    observation = tf.zeros((1, 4))
    actor = with_baseline._actor_network  # noqa: SLF001
    distribution, _ = actor(observation, step_type=None, network_state=())
    assert distribution.logits_parameter().shape == (1, 2)

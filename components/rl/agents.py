"""The agents: tf-agents' ``DqnAgent``/``DdqnAgent`` and ``ReinforceAgent``, built from options.

DQN: Mnih et al., "Playing Atari with Deep Reinforcement Learning" (2013) and "Human-level
control through deep reinforcement learning" (Nature, 2015); double DQN: van Hasselt et al.
(AAAI 2016), which tf-agents implements as ``DdqnAgent`` by overriding only the next-state
action selection. REINFORCE: Williams, "Simple statistical gradient-following algorithms for
connectionist reinforcement learning" (Machine Learning 8, 1992).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tf_keras as keras
from tf_agents.agents.dqn import dqn_agent
from tf_agents.agents.reinforce import reinforce_agent
from tf_agents.networks import actor_distribution_network, value_network
from tf_agents.utils import common

from edgeline.components.rl.options import DqnOptions, ReinforceOptions
from edgeline.pipeline.errors import ConfigError


def linear_epsilon(
    env_steps: tf.Variable, *, start: float, end: float, decay_steps: int, warmup_steps: int
) -> Callable[[], tf.Tensor]:
    """Epsilon annealed linearly from ``start`` to ``end`` over ``decay_steps`` environment
    steps after the warm-up (Mnih et al., 2015: 1.0 to 0.1 over the first million frames).

    Returns a callable, which tf-agents' epsilon-greedy policy evaluates at every action, so
    the schedule follows the live step counter inside the compiled collect loop.
    """

    def epsilon() -> tf.Tensor:
        steps_after_warmup = tf.cast(env_steps, tf.float32) - float(warmup_steps)
        fraction = tf.clip_by_value(steps_after_warmup / float(decay_steps), 0.0, 1.0)
        return start + fraction * (end - start)

    return epsilon


def _dqn_optimizer(options: DqnOptions):
    if options.optimizer == "adam":
        return keras.optimizers.Adam(
            learning_rate=options.learning_rate, epsilon=options.optimizer_epsilon
        )
    # Centered RMSprop (Graves, 2013), the variant the Nature DQN used.
    return keras.optimizers.RMSprop(
        learning_rate=options.learning_rate,
        rho=options.rmsprop_decay,
        momentum=options.rmsprop_momentum,
        epsilon=options.optimizer_epsilon,
        centered=True,
    )


def build_q_network(preset: str, time_step_spec, action_spec):
    """The Q-network ``preset`` from the model registry (task ``q_network``), sized for the
    environment's observations and actions."""
    from edgeline import models

    try:
        spec = models.get(preset)
    except models.UnknownModelError:
        spec = None
    if spec is None or spec.task != "q_network":
        raise ConfigError(
            f"dqn.q_network: {preset!r} is not a Q-network preset; the model registry has: "
            f"{', '.join(models.names(task='q_network'))}"
        )
    num_actions = int(action_spec.maximum - action_spec.minimum + 1)
    observation_shape = tuple(time_step_spec.observation.shape)
    try:
        return models.build(preset, num_classes=num_actions, input_shape=observation_shape)
    except ValueError as err:
        raise ConfigError(f"dqn.q_network: {err}") from None


def build_dqn_agent(
    options: DqnOptions,
    time_step_spec,
    action_spec,
    *,
    env_steps: tf.Variable,
    train_step_counter: tf.Variable,
) -> dqn_agent.DqnAgent:
    q_network = build_q_network(options.q_network, time_step_spec, action_spec)
    agent_class = dqn_agent.DdqnAgent if options.double_dqn else dqn_agent.DqnAgent
    loss_fn = (
        common.element_wise_huber_loss
        if options.loss == "huber"
        else common.element_wise_squared_loss
    )
    return _initialized(
        agent_class,
        time_step_spec,
        action_spec,
        options=options,
        train_step_counter=train_step_counter,
        q_network=q_network,
        optimizer=_dqn_optimizer(options),
        epsilon_greedy=linear_epsilon(
            env_steps,
            start=options.epsilon_start,
            end=options.epsilon_end,
            decay_steps=options.epsilon_decay_steps,
            warmup_steps=options.initial_collect_steps,
        ),
        n_step_update=options.n_step_update,
        target_update_tau=options.target_update_tau,
        target_update_period=options.target_update_period,
        td_errors_loss_fn=loss_fn,
    )


def build_reinforce_agent(
    options: ReinforceOptions,
    time_step_spec,
    action_spec,
    *,
    seed: int,
    train_step_counter: tf.Variable,
) -> reinforce_agent.ReinforceAgent:
    actor_network = actor_distribution_network.ActorDistributionNetwork(
        time_step_spec.observation,
        action_spec,
        fc_layer_params=tuple(options.actor_layers),
        seed=seed,
    )
    baseline = None
    if options.value_baseline:
        # A learned state value as the baseline: the advantage G_t - V(s_t) has lower
        # variance than the return alone (Williams, 1992, section 4; Sutton & Barto, 13.4).
        baseline = value_network.ValueNetwork(
            time_step_spec.observation, fc_layer_params=tuple(options.value_layers)
        )
    return _initialized(
        reinforce_agent.ReinforceAgent,
        time_step_spec,
        action_spec,
        options=options,
        train_step_counter=train_step_counter,
        actor_network=actor_network,
        optimizer=keras.optimizers.Adam(learning_rate=options.learning_rate),
        value_network=baseline,
        value_estimation_loss_coef=options.value_estimation_loss_coef,
        normalize_returns=options.normalize_returns,
        entropy_regularization=options.entropy_regularization,
    )


def _initialized(agent_class, time_step_spec, action_spec, *,
                 options: DqnOptions | ReinforceOptions, train_step_counter: tf.Variable,
                 **arguments):
    """An initialized ``agent_class`` with ``arguments`` and what every agent here takes:
    the discount, the gradient clipping and the train step counter."""
    agent = agent_class(
        time_step_spec,
        action_spec,
        gamma=options.gamma,
        gradient_clipping=options.gradient_clipping,
        train_step_counter=train_step_counter,
        **arguments,
    )
    agent.initialize()
    return agent

"""Options of the rl stage: which environment, which agent, and how long to train.

One step of a pipeline file (``stage: rl``) holds an :class:`RlOptions` mapping; see
``configs/cartpole_dqn.yaml``. Intervals are counted in *iterations*, as in tf-agents: a DQN
iteration collects ``collect_steps_per_iteration`` environment steps and makes
``train_steps_per_iteration`` gradient steps; a REINFORCE iteration collects
``episodes_per_iteration`` whole episodes and makes one gradient step.

No TensorFlow import here: the CLI and the config loader read this module on every start.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

# The environment options are shared with the evaluate stage, which builds the same
# environment to score a Policy artifact; they are part of RlOptions, hence named here too.
from edgeline.common.environment_options import EnvironmentOptions

__all__ = ["DqnOptions", "EnvironmentOptions", "ReinforceOptions", "RlOptions"]


def _at_least(name: str, value, minimum) -> None:
    if value is not None and value < minimum:
        raise ValueError(f"Received: {name}={value!r}; {name} must be >= {minimum}")


def _in_unit_interval(name: str, value: float, *, open_low: bool = False) -> None:
    low_ok = value > 0.0 if open_low else value >= 0.0
    if not (low_ok and value <= 1.0):
        bound = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"Received: {name}={value!r}; {name} must be in {bound}")


@dataclasses.dataclass(frozen=True)
class DqnOptions:
    """DQN (Mnih et al., 2013, 2015) with the usual options: double DQN (van Hasselt et al.,
    2016), n-step returns (Sutton, 1988; Hessel et al., 2018), soft target updates
    (Lillicrap et al., 2016)."""

    q_network: str = "dqn_mlp_100_50"  # a preset of edgeline.models.qnetworks
    double_dqn: bool = False
    n_step_update: int = 1
    gamma: float = 0.99
    loss: Literal["huber", "squared"] = "huber"  # Huber = the 2015 paper's error clipping
    optimizer: Literal["adam", "rmsprop"] = "adam"
    learning_rate: float = 1e-3
    # RMSprop as in the Nature paper: decay 0.95, no momentum, epsilon 0.01.
    rmsprop_decay: float = 0.95
    rmsprop_momentum: float = 0.0
    optimizer_epsilon: float = 1e-7
    # tf-agents clips each gradient tensor to this norm (not the global norm); None disables.
    gradient_clipping: float | None = None
    target_update_period: int = 100  # train steps between target-network updates
    target_update_tau: float = 1.0  # 1.0: copy (hard update); < 1: Polyak averaging
    # Epsilon-greedy exploration, annealed linearly over environment steps.
    epsilon_start: float = 1.0
    epsilon_end: float = 0.1
    epsilon_decay_steps: int = 10_000
    replay_capacity: int = 100_000
    initial_collect_steps: int = 1_000  # uniform-random steps that fill the buffer first
    collect_steps_per_iteration: int = 1
    train_steps_per_iteration: int = 1
    batch_size: int = 64
    # The uniform replay buffer is a set of TF variables and goes into the checkpoint unless
    # that is too large to be worth it (Atari: capacity x 84 x 84 x 4 bytes).
    checkpoint_replay_buffer: bool = True

    def __post_init__(self):
        if not self.q_network:
            raise ValueError("Received: q_network=''; q_network must name a preset")
        from edgeline.models import registry  # checked with the config (no TensorFlow)

        # Looked up among the Q-network presets first, so a misspelt name is answered with
        # those, not with every classifier the registry holds.
        if self.q_network not in registry.names(task="q_network"):
            raise ValueError(
                f"Received: q_network={self.q_network!r}; it is not a Q-network preset; the "
                f"model registry has: {', '.join(registry.names(task='q_network'))}"
            )
        _at_least("n_step_update", self.n_step_update, 1)
        _in_unit_interval("gamma", self.gamma)
        if self.learning_rate <= 0:
            raise ValueError(f"Received: learning_rate={self.learning_rate}; must be > 0")
        _in_unit_interval("rmsprop_decay", self.rmsprop_decay)
        _at_least("rmsprop_momentum", self.rmsprop_momentum, 0.0)
        if self.optimizer_epsilon <= 0:
            raise ValueError(
                f"Received: optimizer_epsilon={self.optimizer_epsilon}; must be > 0"
            )
        if self.gradient_clipping is not None and self.gradient_clipping <= 0:
            raise ValueError(
                f"Received: gradient_clipping={self.gradient_clipping}; must be > 0 or null"
            )
        _at_least("target_update_period", self.target_update_period, 1)
        _in_unit_interval("target_update_tau", self.target_update_tau, open_low=True)
        _in_unit_interval("epsilon_start", self.epsilon_start)
        _in_unit_interval("epsilon_end", self.epsilon_end)
        _at_least("epsilon_decay_steps", self.epsilon_decay_steps, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("replay_capacity", self.replay_capacity, self.batch_size)
        _at_least("initial_collect_steps", self.initial_collect_steps, self.n_step_update + 1)
        _at_least("collect_steps_per_iteration", self.collect_steps_per_iteration, 1)
        _at_least("train_steps_per_iteration", self.train_steps_per_iteration, 1)


@dataclasses.dataclass(frozen=True)
class ReinforceOptions:
    """REINFORCE (Williams, 1992) with an optional learned baseline (Sutton & Barto, 2018,
    section 13.4) and per-batch return normalization."""

    actor_layers: tuple[int, ...] = (100,)
    value_baseline: bool = False
    value_layers: tuple[int, ...] = (100,)
    value_estimation_loss_coef: float = 0.2
    normalize_returns: bool = True
    gamma: float = 0.99
    learning_rate: float = 1e-3
    episodes_per_iteration: int = 2
    entropy_regularization: float | None = None
    gradient_clipping: float | None = None

    def __post_init__(self):
        if not self.actor_layers or any(units < 1 for units in self.actor_layers):
            raise ValueError(
                f"Received: actor_layers={self.actor_layers!r}; expected positive layer sizes"
            )
        if not self.value_layers or any(units < 1 for units in self.value_layers):
            raise ValueError(
                f"Received: value_layers={self.value_layers!r}; expected positive layer sizes"
            )
        _at_least("value_estimation_loss_coef", self.value_estimation_loss_coef, 0.0)
        _in_unit_interval("gamma", self.gamma)
        if self.learning_rate <= 0:
            raise ValueError(f"Received: learning_rate={self.learning_rate}; must be > 0")
        _at_least("episodes_per_iteration", self.episodes_per_iteration, 1)
        _at_least("entropy_regularization", self.entropy_regularization, 0.0)
        if self.gradient_clipping is not None and self.gradient_clipping <= 0:
            raise ValueError(
                f"Received: gradient_clipping={self.gradient_clipping}; must be > 0 or null"
            )


@dataclasses.dataclass(frozen=True)
class RlOptions:
    """One reinforcement-learning run: train, evaluate, keep the best policy, export it."""

    algorithm: Literal["dqn", "reinforce"] = "dqn"
    environment: EnvironmentOptions = dataclasses.field(default_factory=EnvironmentOptions)
    dqn: DqnOptions = dataclasses.field(default_factory=DqnOptions)
    reinforce: ReinforceOptions = dataclasses.field(default_factory=ReinforceOptions)
    # The budget: training stops at whichever comes first (None: no limit of that kind).
    max_env_steps: int | None = 50_000
    max_episodes: int | None = None
    # Evaluation: the greedy policy on a separate environment, `eval_episodes` episodes seeded
    # eval_seed, eval_seed + 1, ... (the same episodes at every evaluation and for every
    # training seed, so that curves are comparable).
    eval_interval: int = 1_000  # iterations
    eval_episodes: int = 20
    eval_seed: int = 10_000
    # An evaluation whose mean beats the best so far is confirmed on this many more seeded
    # episodes (seeds following the evaluation's) before its policy is kept as the best or
    # counts as reaching the target; it is then scored by the mean over all of its episodes.
    # The best of many 20-episode means is biased upward (the winner's curse): on CartPole,
    # DQN evaluations of 476.7 and 448.9 scored 454.8 and 425.0 over 100 other episodes, and
    # a REINFORCE one of 487.9 scored 466.7 over 120. 0: the `eval_episodes` mean decides.
    confirm_episodes: int = 0
    # A mean greedy return to report the first crossing of (env steps, episodes, seconds);
    # with stop_at_target the run ends there.
    target_return: float | None = None
    stop_at_target: bool = False
    checkpoint_interval: int = 2_000  # iterations; a killed run resumes from the last one
    log_interval: int = 1_000  # iterations between training-progress lines
    # Export: the greedy policy as a SavedModel and the network as .tflite, checked to pick
    # the same action on this many recorded observations (0 skips the check).
    export_tflite: bool = True
    parity_observations: int = 1_000

    def __post_init__(self):
        if self.max_env_steps is None and self.max_episodes is None:
            raise ValueError(
                "Received: max_env_steps=None and max_episodes=None; set at least one budget"
            )
        _at_least("max_env_steps", self.max_env_steps, 1)
        _at_least("max_episodes", self.max_episodes, 1)
        _at_least("eval_interval", self.eval_interval, 1)
        _at_least("eval_episodes", self.eval_episodes, 1)
        _at_least("eval_seed", self.eval_seed, 0)
        _at_least("confirm_episodes", self.confirm_episodes, 0)
        if self.stop_at_target and self.target_return is None:
            raise ValueError(
                "Received: stop_at_target=True with target_return=None; set target_return"
            )
        _at_least("checkpoint_interval", self.checkpoint_interval, 1)
        _at_least("log_interval", self.log_interval, 1)
        _at_least("parity_observations", self.parity_observations, 0)
        if self.algorithm == "reinforce" and self.environment.suite == "atari":
            raise ValueError(
                "Received: algorithm='reinforce' with environment.suite='atari'; REINFORCE "
                "here is for classic control (use algorithm: dqn for Atari)"
            )

"""The rl stage's core: train an agent, evaluate it, keep the best policy, export it.

``run(options, output_dir=..., checkpoint_dir=..., seed=...)`` does, in order:

1. seed Python, NumPy and TensorFlow (and, in deterministic mode, enable op determinism);
2. build the training environment (a ``TFPyEnvironment``), ``eval_episodes`` evaluation
   environments (both from the shared :mod:`~edgeline.common.environments`, so that the
   evaluate stage later scores a Policy artifact in the very same environment), the agent and its
   replay buffer;
3. restore the last checkpoint in ``checkpoint_dir`` if there is one (agent, optimizer,
   replay buffer, counters, best network, learning curve), so a killed run resumes;
4. loop: collect with a driver and train, both compiled with ``common.function`` as in the
   tf-agents examples; every ``eval_interval`` iterations evaluate the greedy policy on the
   seeded evaluation episodes, log to TensorBoard and to the history, keep the best network
   (a new best is first confirmed on ``confirm_episodes`` more episodes, when set); every
   ``checkpoint_interval`` iterations checkpoint;
5. export the best greedy policy (SavedModel + .tflite) and check that both choose the same
   actions.

The learning curve (every evaluation, every training log line, every resume) is written to
``history.json`` in the output directory.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
from tf_agents.drivers import dynamic_episode_driver, dynamic_step_driver
from tf_agents.environments import tf_py_environment
from tf_agents.metrics import tf_metrics
from tf_agents.policies import greedy_policy, random_tf_policy
from tf_agents.replay_buffers import tf_uniform_replay_buffer
from tf_agents.utils import common

import edgeline
from edgeline.common import environments as envs
from edgeline.common.artifact_types.policy import DESCRIPTION_FILE as POLICY_FILE
from edgeline.common.artifact_types.policy import HISTORY_FILE, TENSORBOARD_DIR
from edgeline.common.determinism import determinism, op_determinism_enabled
from edgeline.components.evaluate import GreedyEvaluator
from edgeline.components.rl import agents, export
from edgeline.components.rl.options import RlOptions
from edgeline.pipeline import console
from edgeline.pipeline.artifacts import content_digest
from edgeline.pipeline.config import to_plain
from edgeline.pipeline.errors import ConfigError


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and TensorFlow (op seeds derive from TensorFlow's).

    Keras draws the seeds of unseeded initializers from Python's ``random``, unless anything
    in the process has called ``keras.utils.set_random_seed``, which installs a generator of
    Keras' own that later runs would keep drawing from. That generator is cleared, so every
    run in a process starts from the weights a fresh process would (the seeds measured in
    benchmarks/rl_seeds.py run in fresh processes).
    """
    from tf_keras.src import backend as keras_backend

    random.seed(seed)
    np.random.seed(seed % (2**32))
    tf.random.set_seed(seed)
    keras_backend._SEED_GENERATOR.generator = None  # noqa: SLF001  (see the docstring)


class Counters(tf.Module):
    """Progress that must survive a restart, as checkpointed variables."""

    def __init__(self):
        super().__init__(name="counters")
        self.iteration = tf.Variable(0, dtype=tf.int64, name="iteration")
        self.train_steps = tf.Variable(0, dtype=tf.int64, name="train_steps")
        self.wall_seconds = tf.Variable(0.0, dtype=tf.float64, name="wall_seconds")
        self.eval_seconds = tf.Variable(0.0, dtype=tf.float64, name="eval_seconds")
        self.best_return = tf.Variable(-math.inf, dtype=tf.float64, name="best_return")
        self.env_steps_metric = tf_metrics.EnvironmentSteps(name="environment_steps")
        self.episodes_metric = tf_metrics.NumberOfEpisodes(name="episodes")
        self.train_return_metric = tf_metrics.AverageReturnMetric(
            name="train_average_return", buffer_size=10
        )

    @property
    def env_steps(self) -> int:
        return int(self.env_steps_metric.result().numpy())

    @property
    def episodes(self) -> int:
        return int(self.episodes_metric.result().numpy())

    def observers(self) -> list:
        return [self.env_steps_metric, self.episodes_metric, self.train_return_metric]


class BestNetwork(tf.Module):
    """A copy of the network's variables at its best evaluation (checkpointed with the run)."""

    def __init__(self, network):
        super().__init__(name="best_network")
        self._network = network
        self.saved = [
            tf.Variable(variable, trainable=False, name=f"best_{index}")
            for index, variable in enumerate(network.variables)
        ]

    def keep(self) -> None:
        for saved, variable in zip(self.saved, self._network.variables):
            saved.assign(variable)

    def restore_into_network(self) -> None:
        for saved, variable in zip(self.saved, self._network.variables):
            variable.assign(saved)


class DqnTrainer:
    """DQN: epsilon-greedy collection into a uniform replay buffer, minibatch TD updates."""

    output_kind = "q_values"

    def __init__(self, options: RlOptions, tf_env, counters: Counters, *, prefetch: bool):
        self.options = options.dqn
        self.tf_env = tf_env
        self.counters = counters
        self.agent = agents.build_dqn_agent(
            self.options,
            tf_env.time_step_spec(),
            tf_env.action_spec(),
            env_steps=counters.env_steps_metric.environment_steps,
            train_step_counter=counters.train_steps,
        )
        self.network = self.agent._q_network  # noqa: SLF001  (tf-agents keeps no public name)
        self.greedy_policy = self.agent.policy  # DqnAgent.policy is the greedy QPolicy
        self.replay_buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
            data_spec=self.agent.collect_data_spec,
            batch_size=tf_env.batch_size,
            max_length=self.options.replay_capacity,
        )
        self._observers = [self.replay_buffer.add_batch, *counters.observers()]
        collect_driver = dynamic_step_driver.DynamicStepDriver(
            tf_env,
            self.agent.collect_policy,
            observers=self._observers,
            num_steps=self.options.collect_steps_per_iteration,
        )
        self._collect = common.function(collect_driver.run)
        self._train = common.function(self.agent.train)
        # n-step returns need n + 1 consecutive steps per sample (tf-agents' DqnAgent).
        self._sequence_length = self.options.n_step_update + 1
        self._prefetch = prefetch
        self._train_step = None  # built after the warm-up: sampling needs a filled buffer
        self._time_step = None
        self._last_loss = None

    def _build_train_step(self):
        if not self._prefetch:
            return common.function(self._sample_and_train)
        # As the tf-agents examples do: sample in parallel and prefetch. The sample order then
        # depends on thread timing, so deterministic runs sample in line instead.
        dataset = self.replay_buffer.as_dataset(
            num_parallel_calls=3,
            sample_batch_size=self.options.batch_size,
            num_steps=self._sequence_length,
        ).prefetch(3)
        iterator = iter(dataset)
        return common.function(lambda: self._train(next(iterator)[0]).loss)

    def _sample_and_train(self):
        experience, _ = self.replay_buffer.get_next(
            sample_batch_size=self.options.batch_size, num_steps=self._sequence_length
        )
        return self._train(experience).loss

    def checkpoint_objects(self) -> dict:
        objects = {"agent": self.agent}
        if self.options.checkpoint_replay_buffer:
            objects["replay_buffer"] = self.replay_buffer
        return objects

    def warm_up(self, log: Callable[[str], None]) -> None:
        """Fill the replay buffer with uniform-random steps (also after a resume whose
        checkpoint did not hold the buffer)."""
        missing = self.options.initial_collect_steps - int(self.replay_buffer.num_frames())
        if missing <= 0:
            return
        log(f"rl: filling the replay buffer with {missing} random steps")
        random_policy = random_tf_policy.RandomTFPolicy(
            self.tf_env.time_step_spec(), self.tf_env.action_spec()
        )
        driver = dynamic_step_driver.DynamicStepDriver(
            self.tf_env, random_policy, observers=self._observers, num_steps=missing
        )
        common.function(driver.run)()

    def iteration(self) -> None:
        if self._train_step is None:
            self._train_step = self._build_train_step()
        self._time_step, _ = self._collect(time_step=self._time_step)
        for _ in range(self.options.train_steps_per_iteration):
            self._last_loss = self._train_step()

    def log_values(self) -> dict:
        epsilon = self.agent.collect_policy._epsilon  # noqa: SLF001
        values = {"epsilon": float(epsilon() if callable(epsilon) else epsilon)}
        if self._last_loss is not None:
            values["loss"] = float(self._last_loss.numpy())
        return values


class ReinforceTrainer:
    """REINFORCE: whole episodes with the stochastic policy, one policy-gradient step."""

    output_kind = "logits"

    def __init__(self, options: RlOptions, tf_env, counters: Counters, *, seed: int, limit):
        if limit is None:
            raise ConfigError(
                "environment.max_episode_steps: REINFORCE stores whole episodes and needs a "
                f"time limit; {options.environment.name!r} has none, received None"
            )
        self.options = options.reinforce
        self.counters = counters
        self.agent = agents.build_reinforce_agent(
            self.options,
            tf_env.time_step_spec(),
            tf_env.action_spec(),
            seed=seed,
            train_step_counter=counters.train_steps,
        )
        self.network = self.agent._actor_network  # noqa: SLF001
        # The greedy policy acts with the mode of the action distribution.
        self.greedy_policy = greedy_policy.GreedyPolicy(self.agent.policy)
        # Room for the iteration's episodes, each with its boundary step.
        self.replay_buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
            data_spec=self.agent.collect_data_spec,
            batch_size=tf_env.batch_size,
            max_length=self.options.episodes_per_iteration * (limit + 1),
        )
        self._driver = dynamic_episode_driver.DynamicEpisodeDriver(
            tf_env,
            self.agent.collect_policy,
            observers=[self.replay_buffer.add_batch, *counters.observers()],
            num_episodes=self.options.episodes_per_iteration,
        )
        self._iteration = common.function(self._collect_and_train)
        self._last_loss = None

    def _collect_and_train(self):
        # The driver starts from a reset, so the buffer holds whole episodes.
        self._driver.run()
        experience = self.replay_buffer.gather_all()  # (1, T, ...)
        loss = self.agent.train(experience).loss
        self.replay_buffer.clear()
        return loss

    def checkpoint_objects(self) -> dict:
        return {"agent": self.agent}  # the buffer is emptied after every iteration

    def warm_up(self, log: Callable[[str], None]) -> None:
        return None

    def iteration(self) -> None:
        self._last_loss = self._iteration()

    def log_values(self) -> dict:
        return {} if self._last_loss is None else {"loss": float(self._last_loss.numpy())}


def selection_return(row: dict) -> float:
    """What an evaluation is ranked by when keeping the best policy and checking the target:
    its mean over evaluation and confirmation episodes together when it was confirmed, else
    its mean over the evaluation episodes."""
    confirmation = row.get("confirmation")
    return confirmation["mean_return"] if confirmation else row["mean_return"]


def checkpoint_key(options: RlOptions, seed: int, deterministic: bool) -> str:
    """Names the checkpoint directory of a run: the same options and seed resume it."""
    payload = {
        "options": to_plain(options),
        "seed": seed,
        "deterministic": deterministic,
        "version": edgeline.__version__,
    }
    return content_digest(payload, length=16)


def _load_history(checkpoint_dir: Path, iteration: int) -> dict:
    """The history saved with the checkpoint, without what came after it (a run killed
    between writing the history and saving the checkpoint)."""
    path = checkpoint_dir / HISTORY_FILE
    history = {"evaluations": [], "training": [], "resumes": [], "target": None}
    if iteration > 0 and path.is_file():
        history.update(json.loads(path.read_text()))
        for key in ("evaluations", "training"):
            history[key] = [row for row in history[key] if row["iteration"] <= iteration]
        if history["target"] and history["target"]["iteration"] > iteration:
            history["target"] = None
    return history


def _environment_description(options: RlOptions, environment) -> dict:
    """Every environment option (the evaluate stage rebuilds the environment from them) and,
    for Atari, the meaning of each action."""
    description = to_plain(options.environment)
    if options.environment.suite == "atari":
        description["action_meanings"] = environment.action_meanings
    return description


class TrainingRun:
    """One run: environments, trainer, checkpoint, learning curve, TensorBoard log."""

    def __init__(self, options: RlOptions, *, checkpoint_dir: Path, seed: int, log):
        self.options = options
        self.checkpoint_dir = checkpoint_dir
        self.seed = seed
        self.log = log
        self.train_py_env = envs.make_environment(options.environment, seed=seed, training=True)
        self.tf_env = tf_py_environment.TFPyEnvironment(self.train_py_env)
        eval_seeds = [options.eval_seed + index for index in range(options.eval_episodes)]
        self.eval_envs = [
            envs.make_environment(options.environment, seed=eval_seed, training=False)
            for eval_seed in eval_seeds
        ]
        # The confirmation episodes follow the evaluation's: other starts, the same every time.
        confirm_seeds = [eval_seeds[-1] + 1 + index for index in range(options.confirm_episodes)]
        confirm_envs = [
            envs.make_environment(options.environment, seed=confirm_seed, training=False)
            for confirm_seed in confirm_seeds
        ]
        self.counters = Counters()
        if options.algorithm == "dqn":
            # Prefetched sampling is faster but its order depends on thread timing.
            prefetch = not op_determinism_enabled()
            self.trainer = DqnTrainer(options, self.tf_env, self.counters, prefetch=prefetch)
        else:
            limit = envs.max_episode_steps(self.train_py_env)
            self.trainer = ReinforceTrainer(
                options, self.tf_env, self.counters, seed=seed, limit=limit
            )
        self.best_network = BestNetwork(self.trainer.network)
        self.checkpointer = common.Checkpointer(
            ckpt_dir=str(checkpoint_dir / "checkpoint"),
            max_to_keep=1,
            counters=self.counters,
            best_network=self.best_network,
            **self.trainer.checkpoint_objects(),
        )
        self.checkpointer.initialize_or_restore().expect_partial()
        self.iteration = int(self.counters.iteration.numpy())
        self.history = _load_history(checkpoint_dir, self.iteration)
        if self.iteration > 0:
            self.history["resumes"].append(
                {
                    "iteration": self.iteration,
                    "env_steps": self.counters.env_steps,
                    "episodes": self.counters.episodes,
                    "time": time.time(),
                }
            )
            log(
                f"rl: resumed from the checkpoint at iteration {self.iteration}, "
                f"env step {self.counters.env_steps}, episode {self.counters.episodes}"
            )
        self.writer = tf.summary.create_file_writer(str(checkpoint_dir / TENSORBOARD_DIR))
        self.evaluator = GreedyEvaluator(self.trainer.greedy_policy, self.eval_envs, eval_seeds)
        self.confirm_evaluator = None
        if confirm_envs:
            self.confirm_evaluator = GreedyEvaluator(
                self.trainer.greedy_policy, confirm_envs, confirm_seeds
            )
        self._wall_offset = float(self.counters.wall_seconds.numpy())
        self._started = time.perf_counter()
        self._last_log = (time.perf_counter(), self.counters.env_steps)

    def wall_seconds(self) -> float:
        return self._wall_offset + time.perf_counter() - self._started

    def budget_spent(self) -> bool:
        options, counters = self.options, self.counters
        return (
            options.max_env_steps is not None and counters.env_steps >= options.max_env_steps
        ) or (options.max_episodes is not None and counters.episodes >= options.max_episodes)

    def target_reached(self) -> bool:
        return self.history["target"] is not None

    def evaluate(self) -> dict:
        started = time.perf_counter()
        result = self.evaluator()
        counters = self.counters
        best_return = float(counters.best_return.numpy())
        confirmation = None
        if self.confirm_evaluator is not None and result["mean_return"] > best_return:
            confirmation = self._confirm(result["returns"])
        counters.eval_seconds.assign_add(time.perf_counter() - started)
        row = {
            "iteration": self.iteration,
            "env_steps": counters.env_steps,
            "episodes": counters.episodes,
            "train_steps": int(counters.train_steps.numpy()),
            "wall_seconds": round(self.wall_seconds(), 3),
            **result,
        }
        if confirmation is not None:
            row["confirmation"] = confirmation
        self.history["evaluations"].append(row)
        score = selection_return(row)
        with self.writer.as_default(step=row["env_steps"]):
            tf.summary.scalar("eval/mean_return", row["mean_return"])
            tf.summary.scalar("eval/mean_episode_length", row["mean_length"])
            if confirmation is not None:
                tf.summary.scalar("eval/confirmed_mean_return", confirmation["mean_return"])
        if score > best_return:
            counters.best_return.assign(score)
            self.best_network.keep()
        target = self.options.target_return
        if target is not None and score >= target and not self.target_reached():
            scored_episodes = confirmation["episodes"] if confirmation else len(row["returns"])
            self.history["target"] = {
                "iteration": row["iteration"],
                "env_steps": row["env_steps"],
                "episodes": row["episodes"],
                "wall_seconds": row["wall_seconds"],
                "mean_return": score,
                "scored_episodes": scored_episodes,
                "target_return": target,
            }
        confirmed = ""
        if confirmation is not None:
            confirmed = (
                f"; {confirmation['mean_return']:.1f} over {confirmation['episodes']} "
                f"with the confirmation episodes (min {confirmation['min_return']:.0f})"
            )
        self.log(
            f"rl: eval at env step {row['env_steps']} (episode {row['episodes']}): "
            f"mean greedy return {row['mean_return']:.1f} over {len(result['returns'])} "
            f"episodes{confirmed} (best {float(counters.best_return.numpy()):.1f})"
        )
        return row

    def _confirm(self, evaluation_returns: list[float]) -> dict:
        """The candidate's score over its evaluation and confirmation episodes together."""
        returns = np.asarray(evaluation_returns + self.confirm_evaluator()["returns"])
        return {
            "episodes": int(returns.size),
            "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)),
            "min_return": float(np.min(returns)),
        }

    def log_training(self) -> None:
        now, env_steps = time.perf_counter(), self.counters.env_steps
        last_time, last_steps = self._last_log
        steps_per_second = (env_steps - last_steps) / max(now - last_time, 1e-9)
        self._last_log = (now, env_steps)
        row = {
            "iteration": self.iteration,
            "env_steps": env_steps,
            "episodes": self.counters.episodes,
            "train_average_return": float(self.counters.train_return_metric.result().numpy()),
            "env_steps_per_second": round(steps_per_second, 1),
            **self.trainer.log_values(),
        }
        self.history["training"].append(row)
        with self.writer.as_default(step=env_steps):
            for key in ("train_average_return", "env_steps_per_second", "loss", "epsilon"):
                if key in row:
                    tf.summary.scalar(f"train/{key}", row[key])
        self.log(
            f"rl: iteration {self.iteration}, env step {env_steps}, "
            f"train return {row['train_average_return']:.1f}, {steps_per_second:.0f} env steps/s"
        )

    def save_checkpoint(self) -> None:
        self.counters.iteration.assign(self.iteration)
        self.counters.wall_seconds.assign(self.wall_seconds())
        # History first: a kill between the two leaves a history that _load_history trims.
        export.write_json(self.checkpoint_dir / HISTORY_FILE, self.history)
        self.checkpointer.save(global_step=self.iteration)

    def train(self) -> None:
        """The loop: iterate until the budget is spent (or the target reached, on request),
        evaluating every ``eval_interval`` and checkpointing every ``checkpoint_interval``
        iterations."""
        options = self.options
        self.trainer.warm_up(self.log)
        if self.iteration == 0:
            self.evaluate()  # the curve starts with the untrained policy
            self.save_checkpoint()
        # A bar over the step budget in a terminal; a log has the periodic lines below.
        with console.progress(options.max_env_steps, "rl", "env step", lines=False,
                              initial=self.counters.env_steps) as bar:
            while not self.budget_spent():
                if options.stop_at_target and self.target_reached():
                    break
                self.trainer.iteration()
                self.iteration += 1
                if self.iteration % options.log_interval == 0:
                    self.log_training()
                evaluated = self.iteration % options.eval_interval == 0
                if evaluated:
                    self.evaluate()
                if evaluated or self.iteration % options.checkpoint_interval == 0:
                    self.save_checkpoint()
                latest = self.history["evaluations"][-1]["mean_return"]
                bar.set(self.counters.env_steps, **{"eval return": latest})
        if self.history["evaluations"][-1]["iteration"] != self.iteration:
            self.evaluate()  # the curve ends with the final policy
        self.save_checkpoint()
        self.writer.flush()

    def export(self, output_dir: Path) -> dict:
        """The best greedy policy (not the last one) as SavedModel and .tflite, checked."""
        options = self.options
        self.best_network.restore_into_network()
        saved_policy_dir = export.save_policy(self.trainer.greedy_policy, output_dir)
        exported = {"saved_policy": saved_policy_dir, "tflite": None, "parity": None}
        if options.export_tflite:
            exported["tflite"] = export.save_tflite(
                self.trainer.network,
                self.tf_env.observation_spec(),
                self.trainer.output_kind,
                output_dir,
            )
            if options.parity_observations:
                parity_env = envs.make_environment(
                    options.environment, seed=self.seed, training=False
                )
                exported["parity"] = parity = export.check_parity(
                    saved_policy_dir,
                    exported["tflite"],
                    parity_env,
                    options.parity_observations,
                    seed=options.eval_seed + options.eval_episodes,
                )
                self.log(
                    f"rl: TFLite policy agrees with the SavedModel policy on "
                    f"{parity['agreeing_actions']}/{parity['observations']} observations"
                )
        shutil.copytree(self.checkpoint_dir / TENSORBOARD_DIR, output_dir / TENSORBOARD_DIR)
        return exported

    def summary(self, train_seconds: float, parity: dict | None) -> dict:
        counters, history = self.counters, self.history
        best = max(history["evaluations"], key=selection_return)  # the kept policy's
        summary = {
            "env_steps": counters.env_steps,
            "episodes": counters.episodes,
            "iterations": self.iteration,
            "train_steps": int(counters.train_steps.numpy()),
            "wall_seconds": round(train_seconds, 3),
            "eval_seconds": round(float(counters.eval_seconds.numpy()), 3),
            "env_steps_per_second": round(counters.env_steps / max(train_seconds, 1e-9), 1),
            "best_mean_return": selection_return(best),
            "best_scored_episodes": best.get("confirmation", {}).get(
                "episodes", len(best["returns"])
            ),
            "best_at_env_steps": best["env_steps"],
            "best_at_episodes": best["episodes"],
            "final_mean_return": history["evaluations"][-1]["mean_return"],
            "resumed": bool(history["resumes"]),
        }
        if history["target"] is not None:
            summary.update(
                target_return=history["target"]["target_return"],
                env_steps_to_target=history["target"]["env_steps"],
                episodes_to_target=history["target"]["episodes"],
                wall_seconds_to_target=history["target"]["wall_seconds"],
            )
        if parity is not None:
            summary["tflite_action_agreement"] = parity["action_agreement"]
        return summary

    def policy_description(self, exported: dict, deterministic: bool) -> dict:
        observation_spec = self.tf_env.observation_spec()
        action_spec = self.tf_env.action_spec()
        tflite = None
        if exported["tflite"] is not None:
            tflite = {
                "file": export.TFLITE_FILE,
                "input": "observation (1, *shape)",
                "output": self.trainer.output_kind,
                "action": "argmax of the output",
            }
        return {
            "algorithm": self.options.algorithm,
            "environment": _environment_description(self.options, self.eval_envs[0]),
            "observation": {
                "shape": list(observation_spec.shape),
                "dtype": observation_spec.dtype.name,
            },
            "num_actions": int(action_spec.maximum - action_spec.minimum + 1),
            "saved_model": export.SAVED_POLICY_DIR,
            "tflite": tflite,
            "best_evaluation": max(self.history["evaluations"], key=selection_return),
            "seed": self.seed,
            "deterministic": deterministic,
        }


def run(
    options: RlOptions,
    *,
    output_dir: Path,
    checkpoint_dir: Path,
    seed: int,
    deterministic: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Train, evaluate, export. Returns ``{"properties", "metrics", "history"}`` for the
    artifact; writes ``saved_policy/``, ``policy.tflite``, ``policy.json``, ``history.json``
    and ``tensorboard/`` into ``output_dir``. A checkpoint in ``checkpoint_dir`` is resumed."""
    output_dir, checkpoint_dir = Path(output_dir), Path(checkpoint_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    with determinism(deterministic=deterministic):
        seed_everything(seed)
        session = TrainingRun(options, checkpoint_dir=checkpoint_dir, seed=seed, log=log)
        session.train()
        train_seconds = session.wall_seconds()
        exported = session.export(output_dir)
    summary = session.summary(train_seconds, exported["parity"])
    description = session.policy_description(exported, deterministic)
    history = {
        "algorithm": options.algorithm,
        "environment": options.environment.name,
        "seed": seed,
        "options": to_plain(options),
        "summary": summary,
        "parity": exported["parity"],
        **session.history,
    }
    export.write_json(output_dir / POLICY_FILE, description)
    export.write_json(output_dir / HISTORY_FILE, history)
    properties = {
        "algorithm": options.algorithm,
        "environment": description["environment"],
        "observation": description["observation"],
        "num_actions": description["num_actions"],
        "saved_model": export.SAVED_POLICY_DIR,
        "tflite": export.TFLITE_FILE if exported["tflite"] else None,
        # (env steps, episodes, mean greedy return) at every evaluation.
        "learning_curve": [
            [row["env_steps"], row["episodes"], row["mean_return"]]
            for row in session.history["evaluations"]
        ],
    }
    return {"properties": properties, "metrics": summary, "history": history}


def remove_checkpoint(checkpoint_dir: Path) -> None:
    """After a run's artifact is complete its resume state is no longer needed."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)

"""Returns of a greedy policy over seeded episodes: how the evaluate stage scores an agent.

A Policy artifact (the rl stage's output) holds the greedy policy twice: ``saved_policy/``, the
tf-agents ``PolicySaver`` SavedModel (it takes a batched ``TimeStep`` and returns the action),
and ``policy.tflite``, the network alone (one observation (1, *shape) in, the action values or
logits out; the greedy action is their argmax). Both are played here in the environment the
policy was trained in (the artifact's ``environment`` property, unless overridden), built by
:mod:`.environments` as the rl stage builds it, on episodes seeded ``seed, seed + 1, ...``:
the same seeds give the same episodes, so two forms of one policy can be compared episode by
episode, and a run is reproducible.

The episodes run side by side, one policy call per step for all of them (the rl stage's
in-training evaluation, :class:`GreedyEvaluator`, is the same loop). Scores follow the usual
practice of reporting the mean and spread over evaluation episodes (Mnih et al., 2015,
"Evaluation procedure"; Henderson et al., "Deep Reinforcement Learning that Matters", 2018):
mean, standard deviation, min and max of the undiscounted, unclipped return.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tf_agents.utils import common

from edgeline.common import environments
from edgeline.common.artifact_types.metrics import HISTOGRAM_FILE
from edgeline.common.artifact_types.policy import TFLITE_FILE  # noqa: F401  (callers name it here)
from edgeline.common.environment_options import EnvironmentOptions
from edgeline.common.litert import TFLitePolicy
from edgeline.components.evaluate.core import (
    METRICS_FILE,
    POLICY_DESCRIPTION_FILE,
    SAVED_POLICY_DIR,
    EvaluationResult,
    is_policy_dir,
)
from edgeline.components.evaluate.options import EvaluateOptions
from edgeline.pipeline import console
from edgeline.pipeline.errors import UserError

# An action function: a batch of time steps (B, ...) -> the greedy actions (B,) int64.
ActionFunction = Callable[[Any], np.ndarray]


def play_greedy(action_function: ActionFunction, environment_list: list,
                seeds: list[int], progress=None) -> tuple[np.ndarray, np.ndarray]:
    """One episode in each environment, seeded ``seeds``, all stepped together. Returns the
    undiscounted returns (E,) float64 and the episode lengths (E,) int64. ``progress`` (a
    ``console.Progress``) counts the finished episodes."""
    count = len(environment_list)
    for environment, seed in zip(environment_list, seeds):
        environment.seed(seed)
    time_steps = [environment.reset() for environment in environment_list]
    returns = np.zeros(count, dtype=np.float64)
    lengths = np.zeros(count, dtype=np.int64)
    active = np.ones(count, dtype=bool)
    while active.any():
        batch = tf.nest.map_structure(lambda *values: np.stack(values), *time_steps)
        actions = action_function(batch)  # (count,)
        for index in np.flatnonzero(active):
            time_steps[index] = environment_list[index].step(actions[index])
            returns[index] += float(time_steps[index].reward)
            lengths[index] += 1
            if time_steps[index].is_last():
                active[index] = False
                if progress is not None:
                    progress.update(1, **{"mean return": float(np.mean(returns[~active]))})
    return returns, lengths


def return_statistics(returns: np.ndarray, lengths: np.ndarray) -> dict:
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "min_return": float(np.min(returns)),
        "max_return": float(np.max(returns)),
        "mean_length": float(np.mean(lengths)),
        "returns": [float(value) for value in returns],
    }


class GreedyEvaluator:
    """A tf-agents policy (or a loaded ``PolicySaver`` SavedModel) on ``len(environments)``
    seeded episodes, run side by side as one batch (one policy call per step for all)."""

    def __init__(self, policy, environment_list: list, seeds: list[int]):
        self._environments = environment_list
        self._seeds = seeds
        # Held so that a loaded SavedModel's variables live as long as its action function.
        self._policy = policy
        self._action = common.function(policy.action)

    def action_function(self, time_steps) -> np.ndarray:
        return self._action(time_steps).action.numpy()

    def __call__(self) -> dict:
        returns, lengths = play_greedy(self.action_function, self._environments, self._seeds)
        return return_statistics(returns, lengths)


# -- a Policy artifact ------------------------------------------------------------------------


def read_policy_description(policy_dir: Path) -> dict:
    """``environment``, ``saved_model`` and ``tflite`` (a file name or None) of the policy: from
    ``artifact.json``'s properties when published, else from the rl stage's ``policy.json``."""
    for name in ("artifact.json", POLICY_DESCRIPTION_FILE):
        path = policy_dir / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: unreadable policy description ({err})") from None
        data = data.get("properties", {}) if name == "artifact.json" else data
        if "environment" in data:
            tflite = data.get("tflite")
            if isinstance(tflite, dict):  # policy.json describes the file; properties name it
                tflite = tflite.get("file")
            return {
                "environment": data["environment"],
                "saved_model": data.get("saved_model", SAVED_POLICY_DIR),
                "tflite": tflite,
                "algorithm": data.get("algorithm"),
            }
    raise UserError(
        f"Received: policy={os.fspath(policy_dir)!r}; neither artifact.json nor policy.json "
        "describes the policy's environment"
    )


def environment_options_of(description: dict) -> EnvironmentOptions:
    """The :class:`EnvironmentOptions` a Policy was trained with, from its ``environment``
    property (fields it does not record keep their defaults)."""
    known = {field.name for field in dataclasses.fields(EnvironmentOptions)}
    settings = {key: value for key, value in description.items() if key in known}
    try:
        return EnvironmentOptions(**settings)
    except (TypeError, ValueError) as err:
        raise UserError(f"Received: environment={description!r}; {err}") from None


def load_action_function(policy_dir: Path, description: dict, form: str, *,
                         num_threads: int = 1) -> tuple[str, ActionFunction]:
    """(form, action function) of the policy in ``form``: ``auto``/``saved_model`` the
    SavedModel policy, ``tflite`` the network in LiteRT."""
    if form in ("auto", "saved_model"):
        saved_model = policy_dir / description["saved_model"]
        if not (saved_model / "saved_model.pb").is_file():
            raise UserError(f"Received: policy={os.fspath(policy_dir)!r}; it has no SavedModel "
                            f"policy at {description['saved_model']!r}")
        policy = tf.saved_model.load(str(saved_model))
        return "saved_model", GreedyEvaluator(policy, [], []).action_function
    if form == "tflite":
        if not description["tflite"] or not (policy_dir / description["tflite"]).is_file():
            raise UserError(f"Received: model_form='tflite'; the policy at "
                            f"{os.fspath(policy_dir)!r} has no .tflite (rl export_tflite: false?)")
        tflite = TFLitePolicy(policy_dir / description["tflite"], num_threads=num_threads)
        return "tflite", tflite.actions
    raise UserError(f"Received: model_form={form!r}; a Policy runs as auto, saved_model or tflite")


def write_returns_histogram(returns: np.ndarray, path: Path, *, title: str, dpi: int = 100) -> Path:
    """The distribution of episode returns as a histogram PNG (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.0), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    bins = int(min(20, max(1, len(np.unique(returns)))))
    axes.hist(returns, bins=bins, color="#4c72b0", edgecolor="white")
    axes.axvline(float(np.mean(returns)), color="#c44e52", linestyle="--",
                 label=f"mean {np.mean(returns):.1f} (std {np.std(returns):.1f})")
    axes.set_xlabel("episode return")
    axes.set_ylabel("episodes")
    axes.set_title(title)
    axes.legend(loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def evaluate_policy(
    *,
    options: EvaluateOptions,
    policy_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    seed: int,
    log: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Play the greedy policy of the Policy artifact at ``policy_dir`` for ``options.episodes``
    episodes seeded ``options.episode_seed`` (or ``seed``), +1, ...; write ``metrics.json`` and
    the return histogram into ``output_dir``."""
    log = log or console.log
    policy_dir, output_dir = Path(policy_dir), Path(output_dir)
    if not is_policy_dir(policy_dir):
        raise UserError(f"Received: policy={os.fspath(policy_dir)!r}; not a Policy artifact "
                        "(saved_policy/ and policy.json or artifact.json)")
    output_dir.mkdir(parents=True, exist_ok=True)
    description = read_policy_description(policy_dir)
    environment_options = options.environment
    if environment_options is None:
        environment_options = environment_options_of(description["environment"])
    first_seed = options.episode_seed if options.episode_seed is not None else seed
    seeds = [first_seed + index for index in range(options.episodes)]
    form, action_function = load_action_function(
        policy_dir, description, options.model_form, num_threads=options.num_threads)
    environment_list = [
        environments.make_environment(environment_options, seed=episode_seed, training=False)
        for episode_seed in seeds
    ]
    log(f"evaluate: {form} policy on {environment_options.name}, {len(seeds)} episodes "
        f"(seeds {seeds[0]}..{seeds[-1]})")
    started = time.perf_counter()
    with console.progress(len(seeds), "evaluate", "episode") as progress:
        returns, lengths = play_greedy(action_function, environment_list, seeds, progress)
    seconds = time.perf_counter() - started
    metrics = episode_metrics(returns, lengths, seconds)
    files = {"metrics": METRICS_FILE}
    if options.plots:
        write_returns_histogram(
            returns, output_dir / HISTOGRAM_FILE,
            title=f"{environment_options.name}: {form} policy, {len(seeds)} episodes")
        files["returns_histogram"] = HISTOGRAM_FILE
    report = {
        "task": "policy",
        "model_form": form,
        "algorithm": description["algorithm"],
        "environment": dataclasses.asdict(environment_options),
        "seeds": seeds,
        "returns": [float(value) for value in returns],
        "episode_lengths": [int(length) for length in lengths],
        "seconds": seconds,
        **metrics,
        "files": files,
    }
    (output_dir / METRICS_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    properties = {"task": "policy", "model_form": form, "environment": environment_options.name,
                  "episodes": len(seeds), "seeds": [seeds[0], seeds[-1]], "files": files}
    log(f"evaluate: mean return {metrics['mean_return']:.2f} +- {metrics['std_return']:.2f} "
        f"(min {metrics['min_return']:.1f}, max {metrics['max_return']:.1f}), "
        f"{metrics['episodes_per_second']:.2f} episodes/s")
    return EvaluationResult(properties=properties, metrics=metrics, report=report)


def episode_metrics(returns: np.ndarray, lengths: np.ndarray, seconds: float) -> dict:
    """The Metrics artifact's figures of ``len(returns)`` episodes played in ``seconds``."""
    statistics = return_statistics(returns, lengths)
    return {
        "mean_return": statistics["mean_return"],
        "std_return": statistics["std_return"],
        "min_return": statistics["min_return"],
        "max_return": statistics["max_return"],
        "mean_episode_length": statistics["mean_length"],
        "min_episode_length": int(np.min(lengths)),
        "max_episode_length": int(np.max(lengths)),
        "episodes": len(returns),
        "episodes_per_second": len(returns) / seconds if seconds > 0 else float("inf"),
        "env_steps_per_second": float(np.sum(lengths)) / seconds if seconds > 0 else float("inf"),
    }

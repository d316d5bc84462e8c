"""The return of a real tf-agents greedy policy over seeded CartPole episodes, in both of its
exported forms (PolicySaver SavedModel, .tflite in LiteRT), through the evaluate core, stage
binding and CLI; and an `edgeline run` of rl -> evaluate on a tiny CartPole config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tf_agents.environments import tf_py_environment
from tf_agents.networks import q_network
from tf_agents.policies import greedy_policy, q_policy

from edgeline.common.environment_options import EnvironmentOptions
from edgeline.common.environments import load_gym
from edgeline.components.evaluate import returns
from edgeline.components.evaluate.options import EvaluateOptions
from edgeline.components.rl import export as rl_export
from edgeline.pipeline.artifacts import Artifact
from edgeline.pipeline.errors import UserError
from edgeline.pipeline.stage import StageContext

# A hand-made greedy CartPole controller: push the cart towards where the pole is falling,
# action 1 (right) when pole angle + pole angular velocity > 0. Observation: (x, x_dot, theta,
# theta_dot). As Q-values: q_right = w . obs, q_left = -w . obs, so argmax picks that action.
# It balances most episodes to the 500-step limit and drops some earlier (seed 0: 334 steps).
# (The test asserts the returns equal this controller's stepped by hand, not fixed numbers.)
CONTROLLER_WEIGHTS = np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32)


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    """A Policy directory as the rl stage lays it out: saved_policy/ (PolicySaver), policy.tflite
    (the Q-network) and policy.json naming the environment."""
    directory = tmp_path_factory.mktemp("policy")
    tf_env = tf_py_environment.TFPyEnvironment(load_gym("CartPole-v1", seed=0))
    network = q_network.QNetwork(
        tf_env.observation_spec(), tf_env.action_spec(), fc_layer_params=None
    )
    network.create_variables()
    kernel = np.stack([-CONTROLLER_WEIGHTS, CONTROLLER_WEIGHTS], axis=1)  # (4, 2)
    network.layers[-1].set_weights([kernel, np.zeros(2, dtype=np.float32)])
    # QPolicy samples from softmax(Q); the greedy policy (DqnAgent.policy) takes its mode.
    policy = greedy_policy.GreedyPolicy(
        q_policy.QPolicy(tf_env.time_step_spec(), tf_env.action_spec(), q_network=network)
    )
    rl_export.save_policy(policy, directory)
    rl_export.save_tflite(network, tf_env.observation_spec(), "q_values", directory)
    description = {
        "algorithm": "hand-made",
        "environment": {"suite": "gym", "name": "CartPole-v1"},
        "saved_model": returns.SAVED_POLICY_DIR,
        "tflite": {"file": returns.TFLITE_FILE, "output": "q_values"},
    }
    (directory / returns.POLICY_DESCRIPTION_FILE).write_text(json.dumps(description))
    return directory


def _evaluate(policy_dir, output_dir, *, seed=0, **options):
    return returns.evaluate_policy(
        options=EvaluateOptions(**{"episodes": 4, **options}),
        policy_dir=policy_dir, output_dir=output_dir, seed=seed, log=lambda message: None,
    )


def _reference_returns(seeds: list[int]) -> list[float]:
    """The controller stepped by hand in the plain Gym environment, for comparison."""
    totals = []
    for seed in seeds:
        environment = load_gym("CartPole-v1", seed=seed)
        environment.seed(seed)
        time_step, total = environment.reset(), 0.0
        while not time_step.is_last():
            action = int(np.dot(CONTROLLER_WEIGHTS, time_step.observation) > 0)
            time_step = environment.step(np.asarray(action, dtype=np.int64))
            total += float(time_step.reward)
        totals.append(total)
    return totals


def test_both_forms_score_the_same_returns_on_the_same_seeds(policy_dir, tmp_path):
    saved = _evaluate(policy_dir, tmp_path / "saved", model_form="saved_model")
    lite = _evaluate(policy_dir, tmp_path / "lite", model_form="tflite")

    assert saved.report["seeds"] == lite.report["seeds"] == [0, 1, 2, 3]
    assert saved.report["returns"] == lite.report["returns"]
    assert saved.metrics["mean_return"] == lite.metrics["mean_return"]
    # The returns are the controller's own, and the episodes differ (seeded starts).
    assert saved.report["returns"] == _reference_returns(list(range(4)))
    assert len(set(saved.report["returns"])) > 1
    assert saved.report["episode_lengths"] == [int(r) for r in saved.report["returns"]]
    metrics = saved.metrics
    assert metrics["mean_return"] == pytest.approx(np.mean(saved.report["returns"]))
    assert metrics["std_return"] == pytest.approx(np.std(saved.report["returns"]))
    assert metrics["min_return"] < metrics["max_return"] == 500.0
    assert metrics["episodes"] == 4 and metrics["episodes_per_second"] > 0
    assert saved.properties["model_form"] == "saved_model"
    assert lite.properties["model_form"] == "tflite"

    written = json.loads((tmp_path / "lite" / "metrics.json").read_text())
    assert written["returns"] == lite.report["returns"]
    assert written["environment"]["name"] == "CartPole-v1"
    histogram = tmp_path / "lite" / returns.HISTOGRAM_FILE
    assert histogram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_seed_gives_the_same_episodes_and_another_seed_others(policy_dir, tmp_path):
    # The LiteRT form (cheap per step); the SavedModel's equality with it is tested above.
    settings = {"model_form": "tflite", "plots": False}
    first = _evaluate(policy_dir, tmp_path / "a", seed=7, **settings)
    again = _evaluate(policy_dir, tmp_path / "b", seed=7, **settings)
    other = _evaluate(policy_dir, tmp_path / "c", seed=7, episode_seed=100, **settings)
    assert first.report["returns"] == again.report["returns"]
    assert first.report["seeds"] == list(range(7, 11))
    assert other.report["seeds"] == list(range(100, 104))
    assert other.report["returns"] == _reference_returns(list(range(100, 104)))
    assert not (tmp_path / "a" / returns.HISTOGRAM_FILE).exists()


def test_an_environment_override_replaces_the_recorded_one(policy_dir, tmp_path):
    result = _evaluate(
        policy_dir, tmp_path, environment=EnvironmentOptions(name="CartPole-v1",
                                                              max_episode_steps=50)
    )
    assert result.report["episode_lengths"] == [50] * 4  # the controller outlasts the limit
    assert result.metrics["mean_return"] == 50.0


def test_the_stage_binding_takes_a_policy_artifact(policy_dir, tmp_path):
    from edgeline.components.evaluate.stage import STAGES

    artifact = Artifact(uri=str(policy_dir), type="Policy", producer="cartpole:rl",
                        fingerprint="0" * 16, inputs={}, properties={}, metrics={})
    context = StageContext(
        step="evaluate", options=EvaluateOptions(episodes=3, model_form="tflite"),
        inputs={"cartpole": artifact}, output_dir=tmp_path, seed=4, deterministic=True,
        cache_dir=tmp_path / "cache",
    )
    result = STAGES[0].run(context)
    assert result.properties["model_type"] == "Policy"
    assert result.properties["seeds"] == [4, 6]
    assert result.metrics["mean_return"] == pytest.approx(np.mean(_reference_returns([4, 5, 6])))


def test_bad_requests_are_one_line_user_errors(policy_dir, tmp_path):
    with pytest.raises(UserError, match="model_form='keras'"):
        _evaluate(policy_dir, tmp_path, model_form="keras")
    with pytest.raises(UserError, match="not a Policy artifact"):
        _evaluate(tmp_path, tmp_path / "out")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / returns.SAVED_POLICY_DIR).symlink_to(policy_dir / returns.SAVED_POLICY_DIR)
    (bare / returns.POLICY_DESCRIPTION_FILE).write_text(json.dumps(
        {"environment": {"name": "CartPole-v1"}, "saved_model": "saved_policy", "tflite": None}))
    with pytest.raises(UserError, match="has no .tflite"):
        _evaluate(bare, tmp_path / "out", model_form="tflite")
    with pytest.raises(ValueError, match="Received: episodes=0"):
        EvaluateOptions(episodes=0)


def test_the_evaluate_command_takes_a_policy_artifact(policy_dir, tmp_path, capsys):
    from edgeline.cli import main

    code = main(["evaluate", str(policy_dir), "--output", str(tmp_path / "cli"), "--form",
                 "tflite", "--episodes", "3", "--seed", "5", "--max-episode-steps", "200",
                 "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["seeds"] == [5, 6, 7] and report["environment"]["max_episode_steps"] == 200
    assert report["returns"] == [min(value, 200.0) for value in _reference_returns([5, 6, 7])]
    assert (tmp_path / "cli" / returns.HISTOGRAM_FILE).is_file()

    assert main(["evaluate", str(policy_dir), "--output", str(tmp_path / "bad"),
                 "--episodes", "0"]) == 2
    assert capsys.readouterr().err == (
        "edgeline: error: Received: episodes=0; episodes must be >= 1\n"
    )
    assert main(["evaluate", str(policy_dir), str(tmp_path), "--output",
                 str(tmp_path / "mixed")]) == 2
    assert "a Policy is evaluated in its environment" in capsys.readouterr().err


def _edgeline(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgeline", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.mark.slow
def test_edgeline_run_trains_then_evaluates_a_tiny_cartpole_dqn(tmp_path, repo_root):
    # The shipped config, shrunk: a few hundred steps of DQN, then the evaluate step as written.
    shrink = {
        "cartpole_dqn.max_env_steps": 300,
        "cartpole_dqn.dqn.initial_collect_steps": 100,
        "cartpole_dqn.dqn.batch_size": 16,
        "cartpole_dqn.dqn.replay_capacity": 1000,
        "cartpole_dqn.eval_interval": 200,
        "cartpole_dqn.eval_episodes": 2,
        "cartpole_dqn.parity_observations": 50,
        "evaluate.episodes": 5,
        "runs_dir": str(tmp_path / "runs"),
    }
    settings = [part for key, value in shrink.items() for part in ("--set", f"{key}={value}")]
    result = _edgeline("run", repo_root / "configs" / "cartpole_dqn.yaml", *settings, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    (metrics_path,) = (tmp_path / "runs").rglob("returns_histogram.png")
    evaluated = Artifact.load(metrics_path.parent)
    assert evaluated.type == "Metrics"
    assert evaluated.properties["model_type"] == "Policy"
    assert evaluated.properties["model_form"] == "tflite"
    report = json.loads((metrics_path.parent / "metrics.json").read_text())
    assert report["seeds"] == [0, 1, 2, 3, 4]  # the config's run seed
    assert evaluated.metrics["mean_return"] == pytest.approx(np.mean(report["returns"]))
    assert evaluated.metrics["episodes"] == 5

    # The published Policy's SavedModel form: the same seeds give the same returns (the .tflite
    # agrees with the SavedModel on every action, as rl's parity check requires).
    (policy_json,) = (tmp_path / "runs").rglob("policy.json")
    saved = _evaluate(policy_json.parent, tmp_path / "saved", episodes=5,
                      model_form="saved_model", plots=False)
    assert saved.report["returns"] == report["returns"]

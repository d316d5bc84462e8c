"""The rl core end to end on real environments: real tf-agents agents, real TFLite files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from edgeline.common import environments as envs
from edgeline.components.evaluate.returns import GreedyEvaluator
from edgeline.components.rl import core, export
from edgeline.components.rl.options import (
    DqnOptions,
    EnvironmentOptions,
    ReinforceOptions,
    RlOptions,
)
from edgeline.pipeline.errors import ConfigError


def _short_cartpole_dqn(**overrides) -> RlOptions:
    settings = {
        "algorithm": "dqn",
        "dqn": DqnOptions(
            q_network="dqn_mlp_100_50",
            double_dqn=True,
            initial_collect_steps=200,
            epsilon_decay_steps=800,
            target_update_period=50,
            replay_capacity=5_000,
        ),
        "max_env_steps": 1_000,
        "eval_interval": 400,
        "eval_episodes": 5,
        "checkpoint_interval": 400,
        "log_interval": 400,
        "parity_observations": 0,
    }
    settings.update(overrides)
    return RlOptions(**settings)


def _run(options, tmp_path, name, seed=0, deterministic=True):
    messages = []
    result = core.run(
        options,
        output_dir=tmp_path / name / "out",
        checkpoint_dir=tmp_path / name / "ckpt",
        seed=seed,
        deterministic=deterministic,
        log=messages.append,
    )
    return result, messages


def _tensorboard_scalars(directory, tag: str) -> list[tuple[int, float]]:
    """(step, value) of the TensorBoard scalar ``tag``, read back from the event files."""
    values, plugins = [], set()
    for path in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    plugins.add(value.metadata.plugin_data.plugin_name)
                    values.append((event.step, float(tf.make_ndarray(value.tensor))))
    # TensorBoard's scalars plugin reads what carries its name (the first event of a tag
    # must; later ones may leave the metadata out).
    assert "scalars" in plugins and plugins <= {"scalars", ""}
    return values


def _saved_policy_mean_return(policy_dir, options: RlOptions, episodes=None) -> float:
    """The exported SavedModel policy, scored on the run's own evaluation episodes (and the
    confirmation episodes that follow them, when ``episodes`` counts them too)."""
    policy = tf.saved_model.load(str(policy_dir))
    episodes = options.eval_episodes if episodes is None else episodes
    seeds = [options.eval_seed + index for index in range(episodes)]
    environments = [
        envs.make_environment(options.environment, seed=seed, training=False) for seed in seeds
    ]
    return GreedyEvaluator(policy, environments, seeds)()["mean_return"]


@pytest.mark.slow
def test_dqn_same_seed_gives_the_same_learning_curve_and_tflite_picks_the_same_actions(tmp_path):
    # Acceptance 4 (same seed, same curve) and 6 (TFLite vs SavedModel, 1,000 observations).
    options = _short_cartpole_dqn(parity_observations=1_000)
    first, messages = _run(options, tmp_path, "first")
    second, _ = _run(_short_cartpole_dqn(export_tflite=False), tmp_path, "second")
    evaluations = first["history"]["evaluations"]
    curve = [row["returns"] for row in evaluations]
    assert curve == [row["returns"] for row in second["history"]["evaluations"]]
    assert [row["env_steps"] for row in evaluations] == [200, 600, 1000]
    assert len({tuple(returns) for returns in curve}) > 1  # the policy changed as it trained
    assert not tf_config.is_op_determinism_enabled()  # restored after the run

    out = tmp_path / "first" / "out"
    for name in ("saved_policy/saved_model.pb", "policy.tflite", "policy.json", "history.json"):
        assert (out / name).is_file(), name
    assert _tensorboard_scalars(out / "tensorboard", "eval/mean_return") == [
        (row["env_steps"], pytest.approx(row["mean_return"])) for row in evaluations
    ]
    metrics = first["metrics"]
    assert metrics["tflite_action_agreement"] == 1.0
    parity = first["history"]["parity"]
    assert parity["observations"] == 1_000 and parity["agreeing_actions"] == 1_000
    assert any("agrees with the SavedModel policy on 1000/1000" in m for m in messages)
    assert metrics["env_steps"] == 1_000 and metrics["train_steps"] == 800
    assert not metrics["resumed"]
    # Epsilon anneals linearly over the 800 steps after the 200-step warm-up: 1.0 -> 0.1.
    training = first["history"]["training"]
    assert [row["env_steps"] for row in training] == [600, 1000]
    assert [row["epsilon"] for row in training] == pytest.approx([0.55, 0.1])

    # The exported policy is the best evaluation's, not the last one's.
    best = max(evaluations, key=lambda row: row["mean_return"])
    assert metrics["best_mean_return"] == best["mean_return"]
    assert _saved_policy_mean_return(out / "saved_policy", options) == best["mean_return"]
    assert first["properties"]["learning_curve"] == [
        [row["env_steps"], row["episodes"], row["mean_return"]] for row in evaluations
    ]
    policy = json.loads((out / "policy.json").read_text())
    assert policy["observation"] == {"shape": [4], "dtype": "float32"}
    assert policy["tflite"]["output"] == "q_values" and policy["num_actions"] == 2
    history = json.loads((out / "history.json").read_text())
    assert history["evaluations"] == json.loads(json.dumps(evaluations))


@pytest.mark.slow
def test_a_new_best_is_confirmed_on_more_episodes_before_it_is_kept_or_reaches_the_target(
    tmp_path,
):
    # The assertions hold whatever the learning curve. On the machine that wrote this test,
    # seed 1 confirms the evaluations at 200, 800 and 1,000 steps and keeps the last, whose 3
    # episodes average 28.7 but whose 7 average 26.3: the target of 27 is not reached.
    options = _short_cartpole_dqn(
        eval_interval=200, eval_episodes=3, confirm_episodes=4, target_return=27.0
    )
    result, messages = _run(options, tmp_path, "confirmed", seed=1)
    evaluations = result["history"]["evaluations"]
    assert len(evaluations) == 5
    best = -np.inf
    for row in evaluations:
        # Only an evaluation that beats the kept score is confirmed, over its own 3 episodes
        # and the 4 that follow them.
        assert ("confirmation" in row) == (row["mean_return"] > best)
        if "confirmation" in row:
            assert row["confirmation"]["episodes"] == 7
            assert row["confirmation"]["min_return"] <= min(row["returns"])
        best = max(best, core.selection_return(row))
    assert any("with the confirmation episodes" in message for message in messages)
    # The kept policy is the one with the best confirmed score, and that is what it scores.
    kept = max(evaluations, key=core.selection_return)
    metrics = result["metrics"]
    assert metrics["best_mean_return"] == kept["confirmation"]["mean_return"] == best
    assert metrics["best_scored_episodes"] == 7
    out = tmp_path / "confirmed" / "out"
    assert _saved_policy_mean_return(out / "saved_policy", options, 7) == pytest.approx(best)
    # The target is reached by the first confirmed score at or above it, not by a lucky 3.
    reached = [row for row in evaluations if core.selection_return(row) >= 27.0]
    target = result["history"]["target"]
    if reached:
        assert target["env_steps"] == reached[0]["env_steps"]
        assert target["mean_return"] == reached[0]["confirmation"]["mean_return"]
        assert metrics["env_steps_to_target"] == reached[0]["env_steps"]
    else:
        assert target is None and "env_steps_to_target" not in metrics


@pytest.mark.slow
def test_the_shipped_dqn_recipe_learns_cartpole_within_8000_steps(tmp_path, repo_root):
    # The DQN learning check: configs/cartpole_dqn.yaml's agent as shipped, cut to 8,000 env
    # steps (28 rounds of 250), confirmation off to keep it cheap. The best 20-episode greedy
    # mean by then, measured on seeds 0, 1, 2, 3, 4 and 1234 (the demo's): 435.7, 500.0,
    # 401.6, 330.1, 328.5 and 276.5; untrained (after the warm-up): 36.0, 9.8, 401.6 (a lucky
    # initial network), 9.4, 10.5 and 9.5. The 50,000-step, 5-seed acceptance run is
    # benchmarks/rl_seeds.py.
    from edgeline.cli import stage_registry
    from edgeline.pipeline.config import load_pipeline_config

    config = load_pipeline_config(
        str(repo_root / "configs" / "cartpole_dqn.yaml"),
        stage_registry().options_types(),
        ["cartpole_dqn.max_env_steps=8000", "cartpole_dqn.confirm_episodes=0",
         "cartpole_dqn.parity_observations=0"],
    )
    options = config.step("cartpole_dqn").options
    result, _ = _run(options, tmp_path, "dqn", seed=0, deterministic=config.deterministic)
    evaluations = result["history"]["evaluations"]
    assert evaluations[-1]["env_steps"] == 8_000 and len(evaluations) == 15
    assert result["metrics"]["train_steps"] == 28 * 125
    # Seed 0 (re-measured): untrained 36.0, then 435.7 at best. At least 150, and no longer
    # also 3x the untrained return: seed 2's lucky initial network scores 401.6, which no run
    # can triple (an episode returns at most 500). 150 is 15x what an untrained network
    # usually scores (about 10), and well below the worst seed's 276.5.
    assert result["metrics"]["best_mean_return"] >= 150.0


@pytest.mark.slow
def test_reinforce_learns_cartpole_and_exports_its_logits(tmp_path):
    # The CI's REINFORCE learning check: a real improvement in 120 episodes (the
    # 100,000-step, 5-seed acceptance run is benchmarks/rl_seeds.py).
    options = RlOptions(
        algorithm="reinforce",
        reinforce=ReinforceOptions(
            learning_rate=0.003, value_baseline=True, episodes_per_iteration=2
        ),
        max_env_steps=None,
        max_episodes=120,
        eval_interval=15,
        eval_episodes=10,
        checkpoint_interval=30,
        log_interval=30,
        parity_observations=300,
    )
    result, _ = _run(options, tmp_path, "reinforce", seed=1)
    evaluations = result["history"]["evaluations"]
    assert [row["episodes"] for row in evaluations] == [0, 30, 60, 90, 120]
    untrained = evaluations[0]["mean_return"]
    # Best 10-episode greedy mean with seeds 1 (this test's), 2, 3: 497.1 / 360.3 / 421.4;
    # untrained 9.5 / 12.2 / 9.1. (A run's curve is not monotonic: seed 2 went 20.4, 43.2,
    # 360.3, 232.4, so the best evaluation, not the last, is what is checked.)
    assert result["metrics"]["best_mean_return"] >= max(150.0, 3 * untrained)
    assert result["metrics"]["tflite_action_agreement"] == 1.0
    out = tmp_path / "reinforce" / "out"
    policy = json.loads((out / "policy.json").read_text())
    assert policy["tflite"]["output"] == "logits"
    # The TFLite logits are the actor network's: their argmax is the greedy action.
    tflite = export.TFLitePolicy(out / "policy.tflite")
    assert tflite.action_values(np.zeros(4, np.float32)).shape == (2,)


@pytest.mark.slow
def test_short_dqn_run_on_pong_trains_and_exports_a_uint8_tflite_policy(tmp_path):
    # Acceptance 3's short Pong run, shortened further for CI (benchmarks/bench_rl.py runs a
    # few thousand steps and reports the steps per second).
    options = RlOptions(
        algorithm="dqn",
        environment=EnvironmentOptions(suite="atari", name="pong", max_episode_frames=1_200),
        dqn=DqnOptions(
            q_network="dqn_nature_2015",
            optimizer="rmsprop",
            learning_rate=0.00025,
            optimizer_epsilon=0.01,
            replay_capacity=2_000,
            initial_collect_steps=200,
            collect_steps_per_iteration=4,
            batch_size=32,
            target_update_period=25,
            epsilon_decay_steps=400,
            checkpoint_replay_buffer=False,
        ),
        max_env_steps=600,
        eval_interval=100,
        eval_episodes=1,
        checkpoint_interval=50,
        log_interval=25,
        parity_observations=60,
    )
    result, _ = _run(options, tmp_path, "pong", deterministic=False)
    metrics = result["metrics"]
    assert metrics["env_steps"] == 600 and metrics["train_steps"] == 100
    assert metrics["tflite_action_agreement"] == 1.0
    assert np.isfinite(result["history"]["training"][-1]["loss"])
    # An evaluation episode runs to the 1,200-frame limit: 300 agent steps less the no-ops.
    assert 292 <= result["history"]["evaluations"][0]["mean_length"] <= 300
    out = tmp_path / "pong" / "out"
    policy = json.loads((out / "policy.json").read_text())
    assert policy["observation"] == {"shape": [84, 84, 4], "dtype": "uint8"}
    assert policy["environment"]["action_meanings"][:2] == ["NOOP", "FIRE"]
    tflite = export.TFLitePolicy(out / "policy.tflite")
    assert tflite.input_details["dtype"] == np.uint8
    assert list(tflite.input_details["shape"]) == [1, 84, 84, 4]
    assert tflite.action_values(np.zeros((84, 84, 4), np.uint8)).shape == (6,)


@pytest.mark.slow
def test_double_dqn_with_n_step_returns_and_rmsprop_trains(tmp_path):
    options = _short_cartpole_dqn(
        dqn=DqnOptions(
            double_dqn=True,
            n_step_update=3,
            optimizer="rmsprop",
            learning_rate=0.0005,
            initial_collect_steps=100,
            target_update_period=20,
            replay_capacity=1_000,
        ),
        max_env_steps=400,
        eval_interval=300,
        eval_episodes=2,
        log_interval=100,
        export_tflite=False,
    )
    result, _ = _run(options, tmp_path, "ddqn")
    assert result["metrics"]["train_steps"] == 300
    losses = [row["loss"] for row in result["history"]["training"]]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert (tmp_path / "ddqn" / "out" / "saved_policy" / "saved_model.pb").is_file()


def test_a_preset_that_is_not_a_q_network_is_a_config_error(tmp_path):
    with pytest.raises(ValueError, match="'resnet50'; it is not a Q-network preset"):
        DqnOptions(q_network="resnet50")  # refused with the config, before any work
    frames_net = _short_cartpole_dqn(dqn=DqnOptions(q_network="dqn_nature_2015"))
    with pytest.raises(ConfigError, match="dqn.q_network: Received: input_shape=\\(4,\\)"):
        _run(frames_net, tmp_path, "bad2")


def test_linear_epsilon_anneals_over_env_steps_after_the_warm_up():
    from edgeline.components.rl.agents import linear_epsilon

    steps = tf.Variable(0, dtype=tf.int64)
    epsilon = linear_epsilon(steps, start=1.0, end=0.1, decay_steps=1_000, warmup_steps=500)
    values = []
    for step in (0, 500, 1_000, 1_500, 9_000):
        steps.assign(step)
        values.append(float(epsilon()))
    np.testing.assert_allclose(values, [1.0, 1.0, 0.55, 0.1, 0.1], atol=1e-6)


def test_checkpoint_key_follows_options_and_seed():
    options = _short_cartpole_dqn()
    key = core.checkpoint_key(options, 0, True)
    assert key == core.checkpoint_key(_short_cartpole_dqn(), 0, True)
    assert key != core.checkpoint_key(options, 1, True)
    assert key != core.checkpoint_key(_short_cartpole_dqn(max_env_steps=1_200), 0, True)

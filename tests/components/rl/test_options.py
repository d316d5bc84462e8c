"""rl options: strict parsing, range checks with the received value, the shipped configs."""

from __future__ import annotations

import pytest

from edgeline.components.evaluate.options import EvaluateOptions
from edgeline.components.rl.options import RlOptions
from edgeline.components.rl.stage import STAGES
from edgeline.pipeline.config import load_pipeline_config, parse_dataclass, to_plain
from edgeline.pipeline.errors import ConfigError

# The shipped rl configs run rl, then evaluate on the published Policy.
RL_STAGES = {"rl": RlOptions, "evaluate": EvaluateOptions}


def test_defaults_are_the_cartpole_dqn_demo():
    options = RlOptions()
    assert options.algorithm == "dqn"
    assert options.environment.suite == "gym" and options.environment.name == "CartPole-v1"
    assert options.dqn.loss == "huber" and options.max_env_steps == 50_000


def test_nested_sections_parse_and_round_trip():
    raw = {
        "algorithm": "reinforce",
        "environment": {"name": "Acrobot-v1", "max_episode_steps": 200},
        "reinforce": {"actor_layers": [64, 64], "value_baseline": True},
        "max_env_steps": None,
        "max_episodes": 300,
    }
    options = parse_dataclass(RlOptions, raw, "rl")
    assert options.reinforce.actor_layers == (64, 64)
    assert options.environment.max_episode_steps == 200
    assert parse_dataclass(RlOptions, to_plain(options), "rl") == options


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"algorithm": "ppo"}, "rl.algorithm: expected one of 'dqn', 'reinforce', received 'ppo'"),
        ({"dqn": {"epsilon_end": 1.5}}, "Received: epsilon_end=1.5"),
        ({"dqn": {"n_step_update": 0}}, "Received: n_step_update=0; n_step_update must be >= 1"),
        ({"dqn": {"target_update_tau": 0.0}}, "Received: target_update_tau=0.0"),
        ({"dqn": {"replay_capacity": 10}}, "Received: replay_capacity=10"),
        ({"dqn": {"learning_rat": 0.1}}, "rl.dqn.learning_rat: unknown key"),
        ({"environment": {"suite": "mujoco"}}, "rl.environment.suite: expected one of"),
        ({"eval_episodes": 0}, "Received: eval_episodes=0"),
        ({"confirm_episodes": -1}, "Received: confirm_episodes=-1"),
        ({"max_env_steps": None}, "set at least one budget"),
        ({"stop_at_target": True}, "set target_return"),
        (
            {"algorithm": "reinforce", "environment": {"suite": "atari", "name": "pong"}},
            "algorithm='reinforce' with environment.suite='atari'",
        ),
    ],
)
def test_bad_values_are_one_line_config_errors_naming_the_value(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_dataclass(RlOptions, raw, "rl")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("config", "algorithm", "suite"),
    [
        ("cartpole_dqn.yaml", "dqn", "gym"),
        ("cartpole_reinforce.yaml", "reinforce", "gym"),
        ("atari_dqn.yaml", "dqn", "atari"),
    ],
)
def test_shipped_configs_load(repo_root, config, algorithm, suite):
    pipeline = load_pipeline_config(str(repo_root / "configs" / config), RL_STAGES)
    [step] = [step for step in pipeline.steps if step.stage == "rl"]
    assert step.options.algorithm == algorithm
    assert step.options.environment.suite == suite
    # The policy is then scored by the evaluate stage, in its .tflite form, in the environment
    # the Policy artifact records (no override in the config).
    [evaluate] = [step for step in pipeline.steps if step.stage == "evaluate"]
    assert evaluate.inputs == (step.name,)
    assert evaluate.options.model_form == "tflite" and evaluate.options.environment is None


def test_atari_config_plays_pong_with_the_nature_network_and_the_game_is_a_config_value(
    repo_root,
):
    path = str(repo_root / "configs" / "atari_dqn.yaml")
    step = load_pipeline_config(path, RL_STAGES).steps[0]
    assert step.options.environment.name == "pong"
    assert step.options.dqn.q_network == "dqn_nature_2015"
    other = load_pipeline_config(path, RL_STAGES, [f"{step.name}.environment.name=breakout"])
    assert other.steps[0].options.environment.name == "breakout"


def test_the_stage_publishes_a_policy_artifact():
    [stage] = STAGES
    assert stage.name == "rl" and stage.artifact_type == "Policy"
    assert stage.options_type is RlOptions

"""The Atari environment (real ALE, real ROMs from the ale-py wheel) and the Gym suite."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeline.common.environment_options import EnvironmentOptions
from edgeline.common.environments import (
    AtariEnvironment,
    load_gym,
    make_environment,
    max_episode_steps,
)
from edgeline.pipeline.errors import ConfigError

NOOP = 0


def _step(environment, action: int):
    return environment.step(np.asarray(action, dtype=np.int64))


def test_pong_observation_is_a_uint8_stack_of_four_84x84_frames():
    environment = AtariEnvironment("pong", seed=0)
    spec = environment.observation_spec()
    assert spec.shape == (84, 84, 4) and spec.dtype == np.uint8
    first = environment.reset()
    assert first.observation.shape == (84, 84, 4) and first.observation.dtype == np.uint8
    # At a reset the stack holds the first frame four times.
    for channel in range(1, 4):
        np.testing.assert_array_equal(first.observation[..., channel], first.observation[..., 0])
    # The frame is a picture of the game, not a blank screen.
    assert first.observation.std() > 1.0
    second = _step(environment, 2)
    assert second.observation.dtype == np.uint8
    # The stack shifts by one: the oldest frame drops out, the newest comes in last.
    np.testing.assert_array_equal(second.observation[..., :3], first.observation[..., 1:])
    assert environment.action_spec().maximum == 5  # Pong's minimal action set has 6 actions
    assert environment.action_meanings[:2] == ["NOOP", "FIRE"]


@pytest.mark.parametrize("game", ["pong", "breakout"])
def test_one_agent_step_advances_the_emulator_four_frames(game):
    environment = AtariEnvironment(game, seed=3)
    environment.reset()
    for action in (0, 1, 2, 3):
        before = environment.ale.getEpisodeFrameNumber()
        _step(environment, action)
        assert environment.ale.getEpisodeFrameNumber() - before == 4


def test_the_newest_frame_is_the_max_of_the_last_two_emulator_frames_resized():
    environment = AtariEnvironment("breakout", seed=5)
    environment.reset()
    for _ in range(10):
        _step(environment, 1)
    ale = environment.ale
    state = ale.cloneState()
    # Replay the next agent step by hand on the emulator: 4 frames, keep the last two.
    screens = []
    for _ in range(4):
        ale.act(environment._actions[3])  # noqa: SLF001  (the ALE action of agent action 3)
        screens.append(ale.getScreenGrayscale())
    expected = np.maximum(screens[-2], screens[-1])
    expected = np.asarray(Image.fromarray(expected).resize((84, 84), Image.BILINEAR))
    ale.restoreState(state)
    observed = _step(environment, 3).observation[..., -1]
    np.testing.assert_array_equal(observed, expected)


def test_no_op_starts_play_1_to_30_frames_and_differ_between_resets():
    environment = AtariEnvironment("pong", seed=11, noop_max=30)
    starts = []
    for _ in range(12):
        environment.seed(len(starts) + 100)
        environment.reset()
        starts.append(environment.ale.getEpisodeFrameNumber())
    assert all(1 <= frames <= 30 for frames in starts)
    assert len(set(starts)) > 3
    # The same seed gives the same start.
    environment.seed(100)
    environment.reset()
    assert environment.ale.getEpisodeFrameNumber() == starts[0]
    # noop_max=0: no no-op frames at all.
    plain = AtariEnvironment("pong", seed=11, noop_max=0)
    plain.reset()
    assert plain.ale.getEpisodeFrameNumber() == 0


def _play_until_life_lost(environment, rng) -> tuple:
    time_step = environment.reset()
    lives_at_start = environment.ale.lives()
    steps = 0
    while environment.ale.lives() == lives_at_start:
        time_step = _step(environment, int(rng.integers(0, 4)))
        steps += 1
        assert steps < 5_000, "no life was lost in 5000 random steps"
    return time_step, lives_at_start


def test_breakout_life_loss_ends_training_episodes_but_not_evaluation_episodes():
    options = EnvironmentOptions(suite="atari", name="breakout")
    training = make_environment(options, seed=7, training=True)
    time_step, lives_at_start = _play_until_life_lost(training, np.random.default_rng(0))
    assert lives_at_start == 5
    assert time_step.is_last() and float(time_step.discount) == 0.0
    assert training.ale.lives() == 4 and not training.ale.game_over()
    # The next training episode goes on with the same game: no emulator reset, no no-ops.
    frame = training.ale.getEpisodeFrameNumber()
    restart = training.reset()
    assert restart.is_first()
    assert training.ale.getEpisodeFrameNumber() == frame and training.ale.lives() == 4

    evaluation = make_environment(options, seed=7, training=False)
    time_step, _ = _play_until_life_lost(evaluation, np.random.default_rng(0))
    assert evaluation.ale.lives() == 4
    assert not time_step.is_last()  # the evaluation episode goes on to the game's end


def test_breakout_game_over_ends_the_episode_and_the_next_reset_starts_a_new_game():
    environment = AtariEnvironment("breakout", seed=2, terminal_on_life_loss=True, noop_max=0)
    rng = np.random.default_rng(1)
    losses = 0
    while not environment.ale.game_over():
        time_step, _ = _play_until_life_lost(environment, rng)
        assert time_step.is_last()
        losses += 1
    assert losses == 5
    environment.reset()
    assert environment.ale.lives() == 5 and environment.ale.getEpisodeFrameNumber() == 0


def test_training_rewards_are_clipped_to_their_sign_and_evaluation_rewards_are_not():
    options = EnvironmentOptions(suite="atari", name="space_invaders")
    training = make_environment(options, seed=4, training=True)
    evaluation = make_environment(options, seed=4, training=False)
    training.reset()
    evaluation.reset()
    rng = np.random.default_rng(0)
    raw, clipped = [], []
    for _ in range(400):
        action = int(rng.integers(0, 6))
        clipped_step, raw_step = _step(training, action), _step(evaluation, action)
        raw.append(float(raw_step.reward))
        clipped.append(float(clipped_step.reward))
        if clipped_step.is_last():  # a lost life: the two episodes part ways here
            break
    assert max(raw) > 1.0  # Space Invaders scores 5 to 30 per invader
    np.testing.assert_array_equal(clipped, np.sign(raw))


def test_episodes_are_truncated_at_max_episode_frames():
    environment = AtariEnvironment("pong", seed=0, noop_max=0, max_episode_frames=100)
    time_step = environment.reset()
    steps = 0
    while not time_step.is_last():
        time_step = _step(environment, 0)
        steps += 1
    assert steps == 25
    assert float(time_step.discount) == 1.0  # a time limit, not a terminal state


def test_unknown_atari_game_and_gym_id_are_config_errors():
    with pytest.raises(ConfigError, match="unknown Atari game 'pongg'"):
        AtariEnvironment("pongg")
    with pytest.raises(ConfigError, match="unknown Gym id 'CartPole-v9'"):
        load_gym("CartPole-v9", seed=0)


def test_cartpole_is_seeded_and_keeps_its_500_step_limit():
    first = load_gym("CartPole-v1", seed=3).reset().observation
    again = load_gym("CartPole-v1", seed=3).reset().observation
    other = load_gym("CartPole-v1", seed=4).reset().observation
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert max_episode_steps(load_gym("CartPole-v1", seed=0)) == 500


def test_a_time_limit_truncates_the_episode_instead_of_terminating_it():
    environment = load_gym("CartPole-v1", seed=0, max_episode_steps=8)
    time_step = environment.reset()
    steps = 0
    while not time_step.is_last():
        # Alternating pushes keep the pole up for far longer than 8 steps.
        time_step = environment.step(np.asarray(steps % 2, dtype=np.int64))
        steps += 1
    assert steps == 8
    assert float(time_step.discount) == 1.0  # the value of the last state still counts
    # A pole that falls is a real terminal state.
    environment = load_gym("CartPole-v1", seed=0)
    time_step = environment.reset()
    while not time_step.is_last():
        time_step = environment.step(np.asarray(1, dtype=np.int64))
    assert float(time_step.discount) == 0.0

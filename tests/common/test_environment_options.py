"""EnvironmentOptions refuse an impossible environment with one line naming the field."""

from __future__ import annotations

import pytest

from edgeline.common.environment_options import EnvironmentOptions


@pytest.mark.parametrize(("settings", "message"), [
    ({"name": ""}, "Received: name=''; name must name a Gym id or an Atari game"),
    ({"max_episode_steps": 0}, "Received: max_episode_steps=0; max_episode_steps must be >= 1"),
    ({"frame_skip": 0}, "Received: frame_skip=0; frame_skip must be >= 1"),
    ({"screen_size": 8}, "Received: screen_size=8; screen_size must be >= 16"),
    ({"noop_max": -1}, "Received: noop_max=-1; noop_max must be >= 0"),
    ({"repeat_action_probability": 1.5},
     "Received: repeat_action_probability=1.5; repeat_action_probability must be in [0, 1]"),
])
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError) as raised:
        EnvironmentOptions(**settings)
    assert str(raised.value) == message


def test_defaults_and_limits_are_accepted():
    assert EnvironmentOptions().name == "CartPole-v1"
    EnvironmentOptions(suite="atari", name="pong", max_episode_steps=None, noop_max=0,
                       screen_size=16, repeat_action_probability=1.0)


def test_the_stages_share_the_one_class():
    from edgeline.components.evaluate.options import EvaluateOptions
    from edgeline.components.rl.options import RlOptions

    assert RlOptions().environment == EnvironmentOptions()
    assert EvaluateOptions(environment=EnvironmentOptions()).environment == EnvironmentOptions()

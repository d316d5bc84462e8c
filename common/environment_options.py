"""Which Gym or Atari environment to build, and how: the options the rl stage trains in and the
evaluate stage scores a Policy in.

They are one dataclass so that both stages build exactly the same environment
(:mod:`edgeline.common.environments` builds it). No TensorFlow here: configs are checked, and
the CLI starts, before any heavy import.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

# The smallest value each whole-number field may take (None, where a field allows it, is
# always fine): one step, one frame, a 16-pixel screen, no no-ops at all.
_MINIMUMS = {
    "max_episode_steps": 1,
    "frame_skip": 1,
    "frame_stack": 1,
    "screen_size": 16,
    "noop_max": 0,
    "max_episode_frames": 1,
}


@dataclasses.dataclass(frozen=True)
class EnvironmentOptions:
    """The environment: a Gym id (``suite: gym``) or an Atari game (``suite: atari``).

    Shared by the rl stage (training and its in-run evaluations) and the evaluate stage (the
    returns of a Policy artifact), so that both build exactly the same environment; see
    :mod:`edgeline.common.environments`.
    """

    suite: Literal["gym", "atari"] = "gym"
    # A Gym id such as "CartPole-v1", or an ALE game id such as "pong" or "breakout"
    # (`ale_py.roms.get_all_rom_ids()` lists the ROMs that ship in the ale-py wheel).
    name: str = "CartPole-v1"
    # Gym: overrides the registered time limit; None keeps it (500 for CartPole-v1).
    max_episode_steps: int | None = None
    # Atari preprocessing (Mnih et al., 2015, "Methods"; Machado et al., 2018 for the names).
    frame_skip: int = 4  # each agent step repeats the action for this many emulator frames
    frame_stack: int = 4  # the observation is the last `frame_stack` processed frames
    screen_size: int = 84  # frames are grayscale, resized to screen_size x screen_size
    noop_max: int = 30  # a reset plays a random 1..noop_max no-op frames
    terminal_on_life_loss: bool = True  # training only: a lost life ends the episode
    clip_rewards: bool = True  # training only: rewards become their sign, -1, 0 or +1
    repeat_action_probability: float = 0.0  # sticky actions (Machado et al.); 0 as in DQN
    max_episode_frames: int = 108_000  # 30 minutes of play at 60 Hz, then truncation

    def __post_init__(self):
        if not self.name:
            raise ValueError("Received: name=''; name must name a Gym id or an Atari game")
        for name, minimum in _MINIMUMS.items():
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise ValueError(f"Received: {name}={value!r}; {name} must be >= {minimum}")
        probability = self.repeat_action_probability
        if not 0.0 <= probability <= 1.0:
            raise ValueError(
                f"Received: repeat_action_probability={probability!r}; "
                "repeat_action_probability must be in [0, 1]"
            )

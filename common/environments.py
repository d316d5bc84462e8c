"""The environments of the rl and evaluate stages: classic control through tf-agents'
``suite_gym``, Atari through the ALE.

The Atari environment is a tf-agents ``PyEnvironment`` over ``ale_py.ALEInterface`` (the ROMs
ship in the ale-py wheel) with the preprocessing of Mnih et al. (2015, "Methods: preprocessing"),
in the form later made standard by Machado et al. (2018) and the Dopamine and OpenAI baselines
wrappers:

1. each agent step repeats the action for ``frame_skip`` (4) emulator frames and sums the
   rewards; the frame it sees is the pixel-wise max of the last two emulator frames, which
   removes the flicker of sprites drawn on alternate frames;
2. the frame is converted to grayscale (the ALE's luminance) and resized to 84x84;
3. the observation is the stack of the last 4 processed frames, uint8 (84, 84, 4);
4. a reset plays a random number (1..30) of no-op frames, so that episodes start from
   different states ("no-op starts");
5. for training only: rewards are clipped to their sign, and losing a life ends the episode
   (the game goes on from there at the next reset; a real game over resets the game).

Both stages build them from here, from one :class:`EnvironmentOptions`, so that a Policy
artifact is scored in exactly the environment it was trained in.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from tf_agents.environments import py_environment, suite_gym
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from edgeline.common.environment_options import EnvironmentOptions
from edgeline.pipeline.errors import ConfigError

NOOP_ACTION = 0  # ale_py.Action.NOOP


class AtariEnvironment(py_environment.PyEnvironment):
    """One Atari game as a tf-agents ``PyEnvironment`` with DQN preprocessing."""

    def __init__(
        self,
        game: str,
        *,
        seed: int = 0,
        # Machado et al. (2018)'s preprocessing: skip, stack, resize, random no-ops at reset.
        frame_skip: int = 4, frame_stack: int = 4, screen_size: int = 84, noop_max: int = 30,
        terminal_on_life_loss: bool = False,
        clip_rewards: bool = False,
        repeat_action_probability: float = 0.0,
        max_episode_frames: int = 108_000,
    ):
        super().__init__(handle_auto_reset=True)
        from ale_py import ALEInterface, LoggerMode, roms

        known = roms.get_all_rom_ids()
        if game not in known:
            raise ConfigError(
                f"environment.name: unknown Atari game {game!r}; the ale-py ROMs include: "
                f"{', '.join(sorted(known)[:12])}, ... ({len(known)} in all)"
            )
        ALEInterface.setLoggerMode(LoggerMode.Error)
        self._ale = ALEInterface()
        self._rom_path = roms.get_rom_path(game)
        self._repeat_action_probability = repeat_action_probability
        self.game = game
        self.frame_skip = frame_skip
        self.frame_stack = frame_stack
        self.screen_size = screen_size
        self.noop_max = noop_max
        self.terminal_on_life_loss = terminal_on_life_loss
        self.clip_rewards = clip_rewards
        self.max_episode_frames = max_episode_frames
        self._load(seed)
        self._actions = list(self._ale.getMinimalActionSet())
        height, width = self._ale.getScreenDims()
        self._raw_frames = np.zeros((2, height, width), dtype=np.uint8)  # the last two frames
        self._stack = np.zeros((screen_size, screen_size, frame_stack), dtype=np.uint8)
        self._observation_spec = array_spec.BoundedArraySpec(
            shape=self._stack.shape, dtype=np.uint8, minimum=0, maximum=255, name="observation"
        )
        self._action_spec = array_spec.BoundedArraySpec(
            shape=(), dtype=np.int64, minimum=0, maximum=len(self._actions) - 1, name="action"
        )

    def _load(self, seed: int) -> None:
        # ALE settings take effect when a ROM is loaded, so seeding reloads the ROM.
        self._ale.setInt("random_seed", int(seed) % (2**31))
        self._ale.setFloat("repeat_action_probability", self._repeat_action_probability)
        self._ale.setInt("frame_skip", 1)  # frames are skipped here, with max pooling
        self._ale.loadROM(self._rom_path)
        self._rng = np.random.default_rng(seed)
        self._lives = self._ale.lives()
        self._full_reset_needed = True

    # -- PyEnvironment -------------------------------------------------------------------
    def observation_spec(self) -> array_spec.BoundedArraySpec:
        return self._observation_spec

    def action_spec(self) -> array_spec.BoundedArraySpec:
        return self._action_spec

    def seed(self, seed: int) -> int:
        """Reseeds the no-op starts and starts a new game at the next reset. The emulator is
        deterministic; only sticky actions draw from its own generator, and its seed takes
        effect at a ROM load, which costs about a second: so only then is the ROM reloaded."""
        if self._repeat_action_probability > 0:
            self._load(seed)
        else:
            self._rng = np.random.default_rng(seed)
            self._full_reset_needed = True
        return seed

    @property
    def action_meanings(self) -> list[str]:
        return [action.name for action in self._actions]

    @property
    def ale(self):
        """The emulator, for tests and tools (frame numbers, lives)."""
        return self._ale

    def get_info(self) -> dict:
        return {
            "lives": self._ale.lives(),
            "episode_frame_number": self._ale.getEpisodeFrameNumber(),
        }

    def _reset(self) -> ts.TimeStep:
        if self._full_reset_needed:
            self._ale.reset_game()
            # No-op starts: 1..noop_max frames of NOOP (Mnih et al., 2015, "Evaluation").
            noops = int(self._rng.integers(1, self.noop_max + 1)) if self.noop_max else 0
            for _ in range(noops):
                self._ale.act(NOOP_ACTION)
                if self._ale.game_over():
                    self._ale.reset_game()
            self._full_reset_needed = False
        # After a lost life (training), the game simply goes on from where it stands.
        self._lives = self._ale.lives()
        self._ale.getScreenGrayscale(self._raw_frames[1])
        self._raw_frames[0] = self._raw_frames[1]
        frame = self._process(self._raw_frames[1])
        self._stack[...] = frame[:, :, None]  # (84, 84, 4): the first frame, repeated
        return ts.restart(self._stack.copy())

    def _step(self, action) -> ts.TimeStep:
        ale_action = self._actions[int(action)]
        reward = 0.0
        game_over = False
        for frame_index in range(self.frame_skip):
            reward += self._ale.act(ale_action)
            game_over = self._ale.game_over()
            if frame_index >= self.frame_skip - 2 or game_over:
                # Keep the last two frames for the max below.
                self._raw_frames[0] = self._raw_frames[1]
                self._ale.getScreenGrayscale(self._raw_frames[1])
            if game_over:
                break
        frame = self._process(np.maximum(self._raw_frames[0], self._raw_frames[1]))
        self._stack[:, :, :-1] = self._stack[:, :, 1:]
        self._stack[:, :, -1] = frame  # (84, 84, 4): the newest frame last
        observation = self._stack.copy()

        lives = self._ale.lives()
        life_lost = lives < self._lives
        self._lives = lives
        if self.clip_rewards:
            reward = float(np.sign(reward))
        reward = np.float32(reward)
        if game_over:
            self._full_reset_needed = True
            return ts.termination(observation, reward)
        if self.terminal_on_life_loss and life_lost:
            return ts.termination(observation, reward)
        if self._ale.getEpisodeFrameNumber() >= self.max_episode_frames:
            # A time limit, not a terminal state: the value of the next state still counts.
            self._full_reset_needed = True
            return ts.truncation(observation, reward)
        return ts.transition(observation, reward, discount=np.float32(1.0))

    def _process(self, frame: np.ndarray) -> np.ndarray:
        """(210, 160) grayscale -> (84, 84), with an antialiasing bilinear filter."""
        size = (self.screen_size, self.screen_size)
        return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR), dtype=np.uint8)


def load_gym(name: str, *, seed: int, max_episode_steps: int | None = None):
    """A Gym environment (gym 0.23) as a tf-agents ``PyEnvironment``, seeded.

    The time limit is tf-agents' ``TimeLimit`` wrapper, not Gym's: Gym's ends the episode with
    ``done=True``, which ``GymWrapper`` turns into a terminal step (discount 0), so the 500th
    step of a perfect CartPole episode would teach the agent that the state is a failure.
    tf-agents' wrapper ends the episode with the discount left at 1, a truncation whose value
    still bootstraps (Pardo et al., "Time Limits in Reinforcement Learning", ICML 2018).
    """
    import gym

    try:
        spec = gym.spec(name)
    except gym.error.Error:
        raise ConfigError(
            f"environment.name: unknown Gym id {name!r} (e.g. CartPole-v1, Acrobot-v1, "
            "MountainCar-v0, LunarLander-v2)"
        ) from None
    gym_env = spec.make()
    while isinstance(gym_env, gym.wrappers.TimeLimit):
        gym_env = gym_env.env
    limit = max_episode_steps if max_episode_steps is not None else spec.max_episode_steps
    environment = suite_gym.wrap_env(gym_env, max_episode_steps=limit or 0)
    environment.seed(seed)
    return environment


def make_environment(options: EnvironmentOptions, *, seed: int, training: bool):
    """The training or evaluation environment described by ``options``.

    Reward clipping and life loss as episode end apply to training environments only: the
    evaluation environment scores the real game (Mnih et al., 2015).
    """
    if options.suite == "gym":
        return load_gym(options.name, seed=seed, max_episode_steps=options.max_episode_steps)
    return AtariEnvironment(
        options.name,
        seed=seed,
        frame_skip=options.frame_skip,
        frame_stack=options.frame_stack,
        screen_size=options.screen_size,
        noop_max=options.noop_max,
        terminal_on_life_loss=training and options.terminal_on_life_loss,
        clip_rewards=training and options.clip_rewards,
        repeat_action_probability=options.repeat_action_probability,
        max_episode_frames=options.max_episode_frames,
    )


def max_episode_steps(environment) -> int | None:
    """The time limit of a ``suite_gym`` environment in agent steps (None when unlimited)."""
    limit = getattr(environment, "_duration", None)  # tf-agents' TimeLimit wrapper
    return int(limit) if limit else None

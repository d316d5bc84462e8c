"""A Policy artifact as ``edgeline predict``'s MODEL: greedy episodes, and the first as a GIF.

The returns are the evaluate stage's (its public :class:`GreedyEvaluator` plays the seeded
episodes side by side, as ``edgeline evaluate POLICY`` does), so the same seeds give the same
figures there and here. The first episode is then replayed alone, with the same seed, to draw
its frames: the emulator (ALE) and the classic-control physics are deterministic, so the
replay is the episode that was scored. Frames come from the ALE's RGB screen for Atari, and
from Gym's ``render("rgb_array")`` otherwise (pygame, with SDL's dummy drivers when there is
no display).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeline.common.artifact_types.policy import DESCRIPTION_FILE as POLICY_FILE
from edgeline.common.artifact_types.policy import SAVED_POLICY_DIR
from edgeline.common.environment_options import EnvironmentOptions
from edgeline.components.predict.options import PredictOptions
from edgeline.pipeline.errors import UserError

EPISODES_FILE = "episodes.json"
# Gym frames are 600x400: halved, a 500-step CartPole GIF stays a few MB.
GYM_FRAME_SCALE = 0.5
GYM_FRAME_MS = 40  # 25 frames a second; GIF viewers slow anything under 20 ms down


@dataclasses.dataclass(frozen=True)
class PolicyRun:
    environment: str
    seeds: list[int]
    returns: list[float]
    gif_path: Path
    gif_frames: int
    first_episode_steps: int
    first_episode_return: float
    episodes_path: Path


def policy_environment(policy_dir: Path) -> EnvironmentOptions:
    """The environment the Policy was trained in: ``environment`` in its artifact.json
    properties when published, else in the rl stage's policy.json."""
    for name, key in (("artifact.json", "properties"), (POLICY_FILE, None)):
        path = policy_dir / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            environment = (data.get(key, {}) if key else data).get("environment")
        except (OSError, ValueError, AttributeError) as err:
            raise UserError(f"{path}: unreadable policy description ({err})") from None
        if isinstance(environment, dict):
            known = {field.name for field in dataclasses.fields(EnvironmentOptions)}
            try:
                return EnvironmentOptions(**{k: v for k, v in environment.items()
                                             if k in known})
            except (TypeError, ValueError) as err:
                raise UserError(f"{path}: environment {environment!r}: {err}") from None
    raise UserError(f"{policy_dir}: neither artifact.json nor {POLICY_FILE} names the "
                    "environment the policy plays")


def _frame(environment) -> np.ndarray:
    """The screen now: (h, w, 3) uint8."""
    if hasattr(environment, "ale"):  # edgeline's AtariEnvironment
        return environment.ale.getScreenRGB()
    # pygame opens a window to render into, even for rgb_array; headless, SDL's dummy video
    # and audio drivers stand in (a user's own settings win).
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    frame = environment.render(mode="rgb_array")
    if frame is None:
        raise UserError("the environment draws no frames (render('rgb_array') gave None)")
    return np.asarray(frame, np.uint8)


def replay_with_frames(action_function: Callable[[Any], np.ndarray], environment, seed: int,
                       max_frames: int) -> tuple[list[np.ndarray], float, int]:
    """One greedy episode seeded ``seed``, as ``play_greedy`` plays it: (its first
    ``max_frames`` frames, its return, its length in steps)."""
    import tensorflow as tf

    environment.seed(seed)
    time_step = environment.reset()
    frames, total, steps = [_frame(environment)], 0.0, 0
    while not time_step.is_last():
        batch = tf.nest.map_structure(lambda value: np.stack([value]), time_step)  # (1, ...)
        time_step = environment.step(action_function(batch)[0])
        total += float(time_step.reward)
        steps += 1
        if len(frames) < max_frames:
            frames.append(_frame(environment))
    return frames, total, steps


def write_gif(frames: list[np.ndarray], path: Path, *, frame_ms: int, scale: float) -> Path:
    from PIL import Image

    pictures = [Image.fromarray(frame) for frame in frames]
    if scale != 1.0:
        size = (max(1, round(pictures[0].width * scale)), max(1, round(pictures[0].height * scale)))
        pictures = [picture.resize(size, Image.BILINEAR) for picture in pictures]
    pictures[0].save(path, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=frame_ms, loop=0)
    return path


def play(policy_dir: str | os.PathLike, *, options: PredictOptions,
         output_dir: str | os.PathLike, log: Callable[[str], None] | None = None) -> PolicyRun:
    """``options.episodes`` greedy episodes seeded ``options.seed``, +1, ...; the first
    written as ``episode_seed<N>.gif`` and every return in episodes.json, in ``output_dir``."""
    import tensorflow as tf

    from edgeline.common.environments import make_environment
    from edgeline.components.evaluate import GreedyEvaluator

    log = log or (lambda message: print(message, file=sys.stderr))
    policy_dir, output_dir = Path(policy_dir), Path(output_dir)
    environment_options = policy_environment(policy_dir)
    try:
        policy = tf.saved_model.load(str(policy_dir / SAVED_POLICY_DIR))
    except Exception as err:  # noqa: BLE001  (protobuf, TF and OS errors alike)
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(f"{policy_dir / SAVED_POLICY_DIR}: not a readable policy "
                        f"({type(err).__name__}: {first})") from None
    seeds = [options.seed + index for index in range(options.episodes)]
    log(f"predict: greedy policy on {environment_options.name}, {len(seeds)} episode(s) "
        f"(seeds {seeds[0]}..{seeds[-1]})")
    environment_list = [make_environment(environment_options, seed=seed, training=False)
                        for seed in seeds]
    returns = GreedyEvaluator(policy, environment_list, seeds)()["returns"]
    frames, first_return, steps = replay_with_frames(
        GreedyEvaluator(policy, [], []).action_function,
        make_environment(environment_options, seed=seeds[0], training=False), seeds[0],
        options.max_gif_frames)
    output_dir.mkdir(parents=True, exist_ok=True)
    atari = environment_options.suite == "atari"
    gif_path = write_gif(frames, output_dir / f"episode_seed{seeds[0]}.gif",
                         frame_ms=round(1000 * environment_options.frame_skip / 60) if atari
                         else GYM_FRAME_MS, scale=1.0 if atari else GYM_FRAME_SCALE)
    episodes_path = output_dir / EPISODES_FILE
    episodes_path.write_text(json.dumps({
        "environment": dataclasses.asdict(environment_options), "seeds": seeds,
        "returns": returns, "mean_return": float(np.mean(returns)),
        "gif": gif_path.name, "gif_frames": len(frames), "first_episode_steps": steps,
    }, indent=2) + "\n", encoding="utf-8")
    return PolicyRun(environment=environment_options.name, seeds=seeds, returns=returns,
                     gif_path=gif_path, gif_frames=len(frames), first_episode_steps=steps,
                     first_episode_return=first_return, episodes_path=episodes_path)

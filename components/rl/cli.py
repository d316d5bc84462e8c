"""``edgeline rl train CONFIG``: run the rl steps of a pipeline config on their own."""

from __future__ import annotations

import argparse

from edgeline.components.rl.options import RlOptions
from edgeline.pipeline.flags import options_reference

TRAIN_DESCRIPTION = """\
Train the rl steps (stage: rl) of a pipeline config, e.g. configs/cartpole_dqn.yaml, through
the same runner as 'edgeline run': the result is a Policy artifact in the runs directory
(cached by fingerprint, recorded in the lineage), holding

  saved_policy/   the greedy policy as a SavedModel (tf-agents PolicySaver)
  policy.tflite   the network: observation (1, *shape) -> action values / logits (argmax = action)
  policy.json     observation shape and dtype, actions, what the .tflite outputs
  history.json    the learning curve: every evaluation, training log line and resume
  tensorboard/    event files (eval/mean_return, train/*) against environment steps

Steps of other stages in CONFIG are ignored; an rl step reads no inputs. 'edgeline run CONFIG'
runs the whole file: the shipped cartpole/atari configs follow the rl step with an evaluate
step, which scores the published policy (its .tflite in LiteRT) over seeded episodes.

A killed run resumes: checkpoints (agent, optimizer, replay buffer, counters, best network,
learning curve) live in RUNS_DIR/cache/rl/<step>-<key>, where <key> hashes the step's
options, the seed and the deterministic flag; rerunning the same config continues from the
last checkpoint. They are removed once the artifact is complete.

Examples:
  edgeline rl train configs/cartpole_dqn.yaml
  edgeline rl train configs/cartpole_dqn.yaml --set seed=2 \
      --set cartpole_dqn.max_env_steps=20000 --set cartpole_dqn.dqn.learning_rate=0.0005
  edgeline rl train configs/atari_dqn.yaml --set dqn_atari.environment.name=breakout

Config keys of an rl step (their meaning is in components/rl/options.py):
"""


def _cmd_train(args: argparse.Namespace) -> int:
    from edgeline.components.rl.stage import STAGES
    from edgeline.pipeline.config import load_pipeline_config, load_yaml
    from edgeline.pipeline.errors import ConfigError
    from edgeline.pipeline.runner import run_pipeline
    from edgeline.pipeline.stage import StageRegistry

    data = load_yaml(args.config)
    steps = data.get("steps")
    if not isinstance(steps, dict):
        raise ConfigError(f"{args.config}: steps: expected a mapping, received {steps!r}")
    rl_steps = {
        name: body
        for name, body in steps.items()
        if isinstance(body, dict) and body.get("stage") == "rl"
    }
    if args.step:
        rl_steps = {name: body for name, body in rl_steps.items() if name in args.step}
    if not rl_steps:
        stages = sorted({str(b.get("stage")) for b in steps.values() if isinstance(b, dict)})
        named = f" named {', '.join(args.step)}" if args.step else ""
        raise ConfigError(
            f"{args.config}: no step with stage: rl{named} "
            f"(stages in the file: {', '.join(stages) or 'none'})"
        )
    registry = StageRegistry()
    for stage in STAGES:
        registry.register(stage)
    config = load_pipeline_config(
        args.config, registry.options_types(), args.set, data={**data, "steps": rl_steps}
    )
    outcome = run_pipeline(config, registry, force=args.force, runs_dir=args.runs_dir)
    for step in outcome.steps:
        artifact = step.artifact
        metrics = artifact.metrics
        how = "cached" if step.cached else f"trained in {step.seconds:.0f}s"
        print(
            f"{step.step}: {how}; best mean greedy return {metrics.get('best_mean_return')} "
            f"at env step {metrics.get('best_at_env_steps')} "
            f"(episode {metrics.get('best_at_episodes')}); "
            f"{metrics.get('env_steps')} env steps, {metrics.get('env_steps_per_second')} "
            "env steps/s"
        )
        print(f"  Policy artifact: {artifact.uri}")
    print(f"details: edgeline runs show {outcome.run_id} --runs-dir {outcome.runs_dir}")
    return 0


def register(subparsers) -> None:
    rl = subparsers.add_parser(
        "rl",
        help="reinforcement learning with tf-agents (DQN, REINFORCE; Gym and Atari)",
        description="Reinforcement learning with tf-agents: DQN and REINFORCE agents on "
        "classic-control (Gym) and Atari (ALE) environments, exported for the phone.",
    )
    commands = rl.add_subparsers(dest="rl_command", metavar="COMMAND", parser_class=type(rl))
    commands.required = True
    train = commands.add_parser(
        "train",
        help="train the rl steps of a pipeline config (e.g. configs/cartpole_dqn.yaml)",
        description=TRAIN_DESCRIPTION + options_reference(RlOptions),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("config", help="a pipeline YAML file with one or more 'stage: rl' steps")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value: STEP.KEY=VALUE for a step's option (e.g. --set "
        "cartpole_dqn.max_env_steps=20000) or seed=3 (repeatable)",
    )
    train.add_argument(
        "--step", action="append", metavar="STEP",
        help="train only this rl step of the file (repeatable; default: every rl step)",
    )
    train.add_argument(
        "--runs-dir", help="where artifacts, lineage and checkpoints go (default: the "
        "config's runs_dir)",
    )
    train.add_argument(
        "--force", action="store_true",
        help="train again even if an artifact with the same fingerprint is published",
    )
    train.set_defaults(func=_cmd_train)

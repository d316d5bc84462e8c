"""``edgeline train CONFIG --examples DIR --output DIR``: the train stage on its own.

CONFIG is either a pipeline file (the options of its train step are used; ``--step`` picks
one when there are several) or a YAML mapping of train options alone. The output is a Model
artifact, published atomically; a killed run, rerun with the same command, resumes from its
last finished epoch (the state is kept under ``--cache-dir``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeline.components.train.options import TrainOptions
from edgeline.pipeline import standalone
from edgeline.pipeline.flags import options_reference

EPILOG = """\
examples:
  edgeline train configs/demo.yaml --step classifier --examples runs/.../Examples --output model
  edgeline train train.yaml --examples examples/ --output model --set epochs=3 \\
      --set optimizer.learning_rate=0.05
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
              "task": {"type": "worker", "index": 0}}' \\
      edgeline train train.yaml --examples examples/ --output model --set distribution=multi_worker

options (keys of the train step, for CONFIG or --set KEY=VALUE; their meaning is in
components/train/options.py):
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a classifier or detector from an Examples directory",
        description=__doc__.split("\n\n", 1)[1],
        epilog=EPILOG + options_reference(TrainOptions),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    standalone.add_config_flags(parser, "train", "epochs=3")
    parser.add_argument("--examples", required=True, metavar="DIR",
                        help="an Examples directory (ingest's output: shards and labels.txt)")
    standalone.add_publishing_flags(parser, "the Model artifact's files")
    parser.add_argument("--initial-model", metavar="DIR",
                        help="start from this Model artifact or Keras SavedModel")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="where resumable state is kept (default: .train-cache beside "
                        "--output)")
    parser.set_defaults(func=_cmd_train)


def _load_options(args):
    """(options, seed, deterministic) from CONFIG and the overrides."""
    from edgeline.pipeline.config import parse_dataclass

    body, where, _, seed, deterministic = standalone.config_options(args, ("train",))
    options = parse_dataclass(TrainOptions, standalone.set_options(body, args.set), where,
                              Path(args.config).resolve().parent)
    return options, seed, deterministic


def _cmd_train(args) -> int:
    import dataclasses

    from edgeline.components.train.stage import STAGES
    from edgeline.pipeline import artifacts
    from edgeline.pipeline.errors import UserError
    from edgeline.pipeline.standalone import given_artifact, run_one_step

    options, seed, deterministic = _load_options(args)
    examples = Path(args.examples)
    if not examples.is_dir():
        raise UserError(f"--examples: not a directory: {args.examples!r}")
    if args.initial_model and not Path(args.initial_model).exists():
        raise UserError(f"--initial-model: path does not exist: {args.initial_model!r}")
    artifacts.verify_input(examples, "--examples")
    artifacts.verify_input(args.initial_model, "--initial-model")
    inputs = {"examples": given_artifact(examples, "Examples")}
    if args.initial_model:  # the stage starts from a Model input, as in a pipeline;
        # --initial-model overrides transfer.initial_model, as it always did
        inputs["initial_model"] = given_artifact(args.initial_model, "Model")
        options = dataclasses.replace(
            options, transfer=dataclasses.replace(options.transfer, initial_model=None))
    output = Path(args.output).absolute()
    # Resumable state in --cache-dir, not the runs directory's cache: a killed training, rerun
    # with the same command, resumes from its last finished epoch.
    cache_dir = Path(args.cache_dir) if args.cache_dir else output.parent / ".train-cache"
    stage = STAGES[0]

    def run(context):
        return stage.run(dataclasses.replace(context, cache_dir=cache_dir))

    outcome = run_one_step(dataclasses.replace(stage, run=run), options, inputs=inputs,
                           output=output, overwrite=args.overwrite, runs_dir=args.runs_dir,
                           seed=seed, deterministic=deterministic, force=args.force)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(outcome.artifact.metrics.items()))
    cached = " (cached, no work done)" if outcome.cached else ""
    print(f"model: {outcome.artifact.uri}{cached} ({metrics})")
    print(outcome.details())
    sys.stdout.flush()
    return 0

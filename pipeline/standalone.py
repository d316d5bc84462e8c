"""One stage run on its own, as a pipeline step: what every single-stage command shares.

``edgeline ingest|train|evaluate|compress|export`` each run their stage as a one-step
pipeline through :func:`~edgeline.pipeline.runner.run_pipeline`, exactly as ``edgeline run``
runs a step: the artifact is published atomically in a runs directory, with
``artifact.json`` and a lineage row, and a rerun with the same options and inputs is a cache
hit that does no work. The published artifact is then placed at the command's ``--output``
(:func:`~edgeline.pipeline.artifacts.place_at_output`), which keeps the contract the commands
always had: a new or empty folder, an earlier edgeline output only with ``--overwrite``, and
never a folder edgeline did not write.

The command's inputs (``--examples DIR``, ``MODEL``) are folders made outside the run: each
becomes a *given* artifact, its own ``artifact.json`` when it has one, else an identity made
of its path and its files' sizes and times, so a changed folder is not mistaken for a cache hit.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeline.pipeline import artifacts
from edgeline.pipeline.artifacts import ARTIFACT_FILE, Artifact
from edgeline.pipeline.config import PipelineConfig, StepConfig, to_plain
from edgeline.pipeline.errors import ConfigError, StorageError, UserError, storage_problem
from edgeline.pipeline.stage import Stage, StageRegistry

# Where a standalone command publishes when not told (--runs-dir): a hidden runs directory
# beside --output, so that placing the artifact there is a hard link on the same file system
# and nothing lands in the working directory.
DEFAULT_RUNS_DIR_NAME = ".edgeline-runs"


@dataclasses.dataclass
class StandaloneOutcome:
    artifact: Artifact  # as placed at --output
    cached: bool  # the runs directory held it already: no work was done
    run_id: str
    runs_dir: Path

    def details(self) -> str:
        return f"details: edgeline runs show {self.run_id} --runs-dir {self.runs_dir}"


def add_publishing_flags(parser, writes: str) -> None:
    """``--output`` (where ``writes`` go), ``--overwrite``, ``--runs-dir`` and ``--force``:
    where a single-stage command's result lands, and how it is published."""
    parser.add_argument("--output", required=True, metavar="DIR",
                        help=f"where {writes} go: a new or empty folder, or an earlier edgeline "
                        "output with --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it holds an earlier edgeline output (swapped only "
                        "once the new result is complete)")
    parser.add_argument("--runs-dir", metavar="DIR",
                        help="the runs directory the result is published in, with its lineage "
                        f"(default: {DEFAULT_RUNS_DIR_NAME}/ beside --output); a rerun with the "
                        "same options and inputs is a cache hit that does no work")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even when the runs directory holds the result already")


def add_config_flags(parser, stage: str, example: str) -> None:
    """CONFIG and what picks and changes its options: ``--step``, ``--set``, ``--seed``,
    ``--deterministic`` (for a command whose options come from a file, as train's do)."""
    parser.add_argument("config", help=f"a pipeline file with a {stage} step, or a YAML file "
                        f"of {stage} options")
    parser.add_argument("--step", metavar="NAME",
                        help=f"the {stage} step to use when CONFIG is a pipeline with several")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override an option, e.g. --set {example} (repeatable)")
    parser.add_argument("--seed", type=int, help="the seed (default: the pipeline's, or 0)")
    parser.add_argument("--deterministic", action="store_true", default=None,
                        help="deterministic ops: the same seed gives the same result")


def config_options(args, stages: tuple[str, ...]) -> tuple[dict, str, str | None, int, bool]:
    """The options mapping that ``args.config`` (see :func:`add_config_flags`) gives a step
    of one of ``stages``: (options, where, the step's stage or None, seed, deterministic).

    CONFIG is a pipeline file (its one step of those stages, or ``--step``'s) or a mapping of
    options alone; ``--set`` is applied by the caller (:func:`set_options`), after any change
    of its own, so that the command line has the last word.
    """
    from edgeline.pipeline.config import load_yaml

    data = load_yaml(args.config)
    if not isinstance(data.get("steps"), dict):  # options alone (a recipe's steps are a list)
        return dict(data), stages[0], None, _seed(args, 0), bool(args.deterministic)
    found = {name: body for name, body in data["steps"].items()
             if isinstance(body, dict) and body.get("stage") in stages}
    if args.step:
        if args.step not in found:
            raise ConfigError(f"--step {args.step}: no {stages[0]} step of that name in "
                              f"{args.config}; {stages[0]} steps: "
                              f"{', '.join(found) or '(none)'}")
        name = args.step
    elif len(found) == 1:
        name = next(iter(found))
    else:
        raise ConfigError(f"{args.config}: {len(found)} {stages[0]} steps "
                          f"({', '.join(found) or 'none'}); pick one with --step")
    body = {k: v for k, v in found[name].items() if k not in ("stage", "inputs")}
    return (body, name, found[name]["stage"], _seed(args, data.get("seed", 0)),
            bool(args.deterministic or data.get("deterministic", False)))


def set_options(body: dict, overrides: list[str]) -> dict:
    """``--set KEY=VALUE`` applied to an options mapping (dotted keys reach nested options)."""
    from edgeline.pipeline.config import parse_override

    for text in overrides:
        keys, value = parse_override(text)
        node = body
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text}: '{key}' is not a mapping")
        node[keys[-1]] = value
    return body


def _seed(args, default: Any) -> int:
    seed = args.seed if args.seed is not None else default
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: expected an integer, received {seed!r}")
    return seed


def refuse_foreign_output(output: str | os.PathLike) -> None:
    """Before any work: a file, or a non-empty folder edgeline did not write, is refused at
    once. Whether an earlier edgeline output there may be replaced (--overwrite) or already
    is the result (a rerun) is decided by :func:`run_one_step`, once the fingerprint is known."""
    artifacts.check_output_dir(Path(output).absolute(), overwrite=True)


def default_runs_dir(output: Path) -> Path:
    return output.parent / DEFAULT_RUNS_DIR_NAME


def given_artifact(path: str | os.PathLike, artifact_type: str) -> Artifact:
    """A command's input folder (or file) as an artifact the one step can read.

    A published artifact is read as it is (:func:`~.artifacts.verify_input` has checked it);
    anything else gets ``artifact_type`` and a fingerprint over its path and every file's
    relative name, size and modification time.
    """
    path = Path(path)
    if (path / ARTIFACT_FILE).is_file():
        try:
            return Artifact.load(path)
        except (OSError, ValueError, TypeError, KeyError):
            pass  # not readable as one: identified by its files below
    identity = [str(path.resolve()), artifacts.path_identity(path)]
    return Artifact(uri=str(path), type=artifact_type, producer="given", inputs={},
                    fingerprint=artifacts.content_digest(identity), properties={}, metrics={})


def run_one_step(
    stage: Stage,
    options: Any,
    *,
    inputs: Mapping[str, Artifact],
    output: str | os.PathLike,
    overwrite: bool,
    runs_dir: str | os.PathLike | None = None,
    seed: int = 0,
    deterministic: bool = False,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> StandaloneOutcome:
    """Run ``stage`` with ``options`` on ``inputs`` as a one-step pipeline, and place its
    artifact at ``output``. ``output`` is checked before any work (a refusal costs nothing).

    Errors are those of ``edgeline run``, but a bad input is reported without the step's name
    (there is one step), and a disk that refuses the default runs directory is reported as
    ``--output``'s, the only folder the user named.
    """
    from edgeline.pipeline.runner import run_pipeline, step_fingerprint

    output = Path(output).absolute()
    implicit = runs_dir is None
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir(output)
    step = StepConfig(stage.name, stage.name, tuple(inputs), options, to_plain(options))
    config = PipelineConfig(name=f"edgeline {stage.name}", seed=seed,
                            deterministic=deterministic, runs_dir=str(runs_dir), steps=(step,))
    # A rerun whose --output already holds this very artifact is a cache hit, as a pipeline
    # step's is: nothing to refuse, nothing to replace.
    if artifacts.published_twin(output, step_fingerprint(config, stage, step, inputs)) is None:
        artifacts.check_output_dir(output, overwrite)
    registry = StageRegistry()
    registry.register(stage)
    try:
        outcome = run_pipeline(config, registry, force=force, runs_dir=runs_dir,
                               log=log or (lambda message: None), given=inputs)
    except StorageError as err:
        problem = storage_problem(err.__cause__)
        if not implicit or problem is None:
            raise
        raise StorageError(f"--output {str(output)!r}: {problem}; nothing was written there "
                           "(rerun once it can be written, or choose another folder)") from err
    except UserError as err:
        if isinstance(err.__cause__, UserError) and not isinstance(err, StorageError):
            raise err.__cause__ from None  # "step 'train' (train): " names nothing here
        raise
    [done] = outcome.steps
    placed = artifacts.place_at_output(done.artifact, output, replace=overwrite)
    return StandaloneOutcome(placed, done.cached, outcome.run_id, outcome.runs_dir)


def read_json(artifact: Artifact, name: str) -> dict:
    """A JSON file of a placed artifact (the report a command prints)."""
    return json.loads((artifact.path / name).read_text(encoding="utf-8"))

"""The train stage's binding to the pipeline: Examples (and optionally a Model) in, Model out.

Nothing heavy is imported here; the core is imported when the stage runs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import edgeline
from edgeline.components.train.options import TrainOptions
from edgeline.pipeline.artifacts import content_digest, path_identity
from edgeline.pipeline.config import to_plain
from edgeline.pipeline.errors import ConfigError
from edgeline.pipeline.stage import Stage, StageContext, StageResult

WORK_SUBDIR = "train"


def run_identity(
    options: TrainOptions, inputs: Mapping[str, str], seed: int, deterministic: bool
) -> str:
    """What decides a training's result, hashed: the work directory's name in the cache.

    It is made of what the runner's fingerprint is made of (options, input fingerprints, seed,
    determinism, package version), so a rerun of the same step after a crash finds the state
    the crashed attempt left, and a changed config starts afresh.
    """
    payload = {
        "options": to_plain(options),
        "inputs": dict(sorted(inputs.items())),
        "seed": seed,
        "deterministic": deterministic,
        "version": edgeline.__version__,
    }
    return content_digest(payload, length=24)


def work_dir_for(cache_dir: Path, identity: str) -> Path:
    return Path(cache_dir) / WORK_SUBDIR / identity


def model_source_identity(path: str | os.PathLike | None) -> Any:
    """Identity of a starting model outside the pipeline: its artifact fingerprint when it is a
    published artifact, else its files' names, sizes and modification times."""
    if not path:
        return None
    path = Path(path)
    artifact = path / "artifact.json"
    if artifact.is_file():
        try:
            return {"fingerprint": json.loads(artifact.read_text())["fingerprint"]}
        except (json.JSONDecodeError, KeyError):
            pass
    return {"files": path_identity(path)}


def _external_fingerprint(options: TrainOptions) -> Any:
    return {"initial_model": model_source_identity(options.transfer.initial_model)}


def _run(context: StageContext) -> StageResult:
    from edgeline.components.train import core, distribute

    examples = context.input_of_type("Examples")
    models = [a for a in context.inputs.values() if a.type == "Model"]
    if len(models) > 1:
        raise ConfigError(
            f"{context.step}.inputs: at most one Model to start from, received {len(models)}"
        )
    initial_model = models[0].uri if models else None
    if initial_model and context.options.transfer.initial_model:
        raise ConfigError(
            f"{context.step}.transfer.initial_model: set it or give the step a Model input, "
            f"not both (received {context.options.transfer.initial_model!r} and {initial_model})"
        )
    inputs = {name: artifact.fingerprint for name, artifact in context.inputs.items()}
    external = _external_fingerprint(context.options)
    identity = run_identity(context.options, {**inputs, "external": json.dumps(external)},
                            context.seed, context.deterministic)
    work_dir = work_dir_for(context.cache_dir, identity)
    result = core.run(
        options=context.options,
        examples_dir=examples.path,
        output_dir=context.output_dir,
        work_dir=work_dir,
        seed=context.seed,
        deterministic=context.deterministic,
        initial_model=initial_model,
    )
    if distribute.is_chief_task():
        # Finished: the resumable state has served its purpose.
        shutil.rmtree(work_dir, ignore_errors=True)
    return StageResult(properties=result.properties, metrics=result.metrics)


STAGES = (
    Stage(
        name="train",
        options_type=TrainOptions,
        artifact_type="Model",
        run=_run,
        external_fingerprint=_external_fingerprint,
        description="train a classifier or detector from Examples (Keras, tf.distribute)",
    ),
)

"""The train stage's core: Examples in, a Model artifact out.

``run(...)`` reads top to bottom:

1. pick the tf.distribute strategy (first: collectives must be set up before TF runs
   anything), seed everything, and set the precision policy (``_set_up``);
2. build the network from the registry inside the strategy's scope, and copy in the starting
   weights when fine-tuning (``_build_network``; :mod:`.transfer`);
3. train in phases (backbone frozen, then all layers at a lower rate; or one phase), each a
   ``model.fit`` whose state ``BackupAndRestore`` saves after every epoch into ``work_dir``,
   so a killed run resumes from its last finished epoch; the input stream starts at that
   epoch too, so the resumed run sees the batches an uninterrupted one would
   (:func:`.loop.train_in_phases`);
4. keep the best epoch's weights by the validation metric (the weight average's, when
   enabled), stop with a clear message when the loss turns NaN
   (:func:`.loop.keep_best_epoch`; :mod:`.callbacks`);
5. rebuild the network in float32, evaluate it, and write the Model artifact through
   :mod:`edgeline.models.io` (:func:`.publish.write_model_artifact`).

What differs between classification and detection lives in :mod:`.task`.

``work_dir`` must survive a crash (the stage puts it in the run store's cache keyed by the
step's identity); ``output_dir`` may be thrown away with a failed attempt.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common.determinism import determinism
from edgeline.components.train import data, distribute, loop, publish
from edgeline.components.train.options import TrainOptions
from edgeline.components.train.task import Log, make_task
from edgeline.components.train.transfer import load_source_weights, transfer_weights
from edgeline.models import io as model_io
from edgeline.pipeline import console
from edgeline.pipeline.errors import UserError


def _stderr(message: str) -> None:
    console.log(message)  # above a live bar, if there is one


@dataclasses.dataclass
class TrainResult:
    model_dir: model_io.ModelDir
    history: dict[str, list]
    metrics: dict[str, float]
    properties: dict[str, Any]


@dataclasses.dataclass
class TrainingSetup:
    """What step 1 decided: the data and task, the step budget, the monitored metric, the
    precision policy and the starting weights (None when training from scratch)."""

    info: data.ExamplesInfo
    task: Any  # task.ClassificationTask | task.DetectionTask
    replicas: int
    steps_per_epoch: int
    monitor: str
    policy: str
    source_weights: dict[str, np.ndarray] | None
    is_chief: bool


def run(
    *,
    options: TrainOptions,
    examples_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    seed: int = 0,
    deterministic: bool = False,
    initial_model: str | os.PathLike | None = None,
    log: Log | None = None,
) -> TrainResult:
    """Trains ``options.model`` on ``examples_dir`` and writes a Model artifact to
    ``output_dir``; resumable state lives in ``work_dir``. ``initial_model`` (a Model
    artifact or SavedModel) overrides ``options.transfer.initial_model``."""
    log = log or _stderr
    strategy = distribute.select_strategy(options.distribution)
    # Tests and pipelines train several models in one process: the policy and op determinism
    # the run sets are undone after it.
    with determinism(seed=seed, deterministic=deterministic):
        return _run(options=options, examples_dir=Path(examples_dir), output_dir=Path(output_dir),
                    work_dir=Path(work_dir), seed=seed, deterministic=deterministic,
                    initial_model=initial_model or options.transfer.initial_model,
                    strategy=strategy, log=log)


def _run(*, options, examples_dir, output_dir, work_dir, seed, deterministic, initial_model,
         strategy, log) -> TrainResult:
    started = time.time()
    setup = _set_up(options=options, examples_dir=examples_dir, work_dir=work_dir,
                    initial_model=initial_model, strategy=strategy, log=log)
    model = _build_network(setup, options=options, initial_model=initial_model,
                           strategy=strategy, log=log)
    training = loop.train_in_phases(
        model=model, task=setup.task, options=options, strategy=strategy,
        steps_per_epoch=setup.steps_per_epoch, monitor=setup.monitor,
        has_initial_weights=setup.source_weights is not None, seed=seed, work_dir=work_dir,
        is_chief=setup.is_chief, log=log,
    )
    best_epoch = loop.keep_best_epoch(model, training.best, setup.monitor, log)
    published = publish.write_model_artifact(
        model=model, task=setup.task, info=setup.info, history=training.history,
        best_epoch=best_epoch, output_dir=output_dir, work_dir=work_dir, log=log,
    )
    seconds = time.time() - started
    properties = _properties(setup, options=options, strategy=strategy, training=training,
                             best_epoch=best_epoch, seconds=seconds)
    log(f"train: done in {seconds:.1f}s; " + ", ".join(f"{k} {v:.4f}" for k, v in
                                                      published.metrics.items()))
    return TrainResult(model_dir=published.model_dir, history=published.history,
                       metrics=published.metrics, properties=properties)


def _set_up(*, options: TrainOptions, examples_dir: Path, work_dir: Path, initial_model,
            strategy, log: Log) -> TrainingSetup:
    """Step 1 after the strategy and the seeds: read the Examples, check the batch against
    them and the replicas, pick the task, read the starting weights, set the precision
    policy. The order is the old ``_run``'s: the starting model is read before the policy
    changes."""
    info = data.read_examples(examples_dir, options.task)
    if not info.validation_files:
        raise UserError(f"examples: no 'validation' shards in {str(examples_dir)!r}")
    replicas = strategy.num_replicas_in_sync
    if options.batch_size % replicas:
        raise UserError(
            f"train.batch_size={options.batch_size} must be a multiple of the {replicas} "
            "replicas (it is the global batch)"
        )
    steps_per_epoch = options.steps_per_epoch or info.train_count // options.batch_size
    if steps_per_epoch < 1:
        raise UserError(
            f"train.batch_size={options.batch_size} is larger than the {info.train_count} "
            "training examples; lower it or set steps_per_epoch"
        )
    task = make_task(info, options)
    monitor = task.monitor if options.monitor == "auto" else options.monitor
    policy = distribute.precision_policy(options.mixed_precision)
    source_weights = load_source_weights(initial_model) if initial_model else None
    distribute.set_precision_policy(policy)
    is_chief = distribute.is_chief(strategy)
    work_dir.mkdir(parents=True, exist_ok=True)
    log(f"train: {options.model} on {info.task} ({info.num_classes} classes, "
        f"{info.train_count} train / {info.validation_count} validation examples), "
        f"{replicas} replica(s) with {type(strategy).__name__}, policy {policy}, "
        f"batch {options.batch_size}, {steps_per_epoch} steps x {options.epochs} epochs")
    return TrainingSetup(info=info, task=task, replicas=replicas,
                         steps_per_epoch=steps_per_epoch, monitor=monitor, policy=policy,
                         source_weights=source_weights, is_chief=is_chief)


def _build_network(setup: TrainingSetup, *, options: TrainOptions, initial_model, strategy,
                   log: Log):
    """Step 2: the registry network, built in the strategy's scope, with the starting
    weights copied in by name and shape when fine-tuning."""
    with strategy.scope():
        model = setup.task.build_model()
        if setup.source_weights is not None:
            copied, total = transfer_weights(model, setup.source_weights)
            if copied == 0:
                raise UserError(
                    f"transfer.initial_model: no layer of {str(initial_model)!r} matches "
                    f"{options.model} by name and shape"
                )
            log(f"train: copied {copied} of {total} variables from {initial_model}")
    return model


def _properties(setup: TrainingSetup, *, options: TrainOptions, strategy,
                training: loop.PhasedTraining, best_epoch: int | None,
                seconds: float) -> dict[str, Any]:
    """The Model artifact's properties: what was trained, how, and for how long."""
    return {
        "task": setup.info.task,
        "model": options.model,
        "num_classes": setup.info.num_classes,
        "input_size": list(options.data.input_size),
        "epochs": options.epochs,
        "steps_per_epoch": setup.steps_per_epoch,
        "global_batch_size": options.batch_size,
        "replicas": setup.replicas,
        "strategy": type(strategy).__name__,
        "precision_policy": setup.policy,
        "phases": [dataclasses.asdict(p) for p in training.phases],
        "best_epoch": best_epoch,
        "resumed_from_epoch": training.resumed_from,
        "train_examples": setup.info.train_count,
        "validation_examples": setup.info.validation_count,
        "seconds": round(seconds, 2),
    }

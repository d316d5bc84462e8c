"""The training loop: phases of ``model.fit`` (backbone frozen, then all layers at a lower
rate; or one phase), each resumable after a crash, and the best epoch's weights kept.

``BackupAndRestore`` saves a phase's state after every epoch into the work directory, so a
killed run resumes from its last finished epoch; the input stream starts at that epoch too,
so the resumed run sees the batches an uninterrupted one would. A finished phase leaves a
``phase-<name>.weights.h5`` marker and is skipped on a rerun.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import tensorflow as tf
import tf_keras as keras

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.train import callbacks as train_callbacks
from edgeline.components.train import optim
from edgeline.components.train.callbacks import (
    ConsoleProgress,
    HistoryLog,
    KeepBest,
    StopOnNaN,
    TensorBoardScalars,
)
from edgeline.components.train.options import TrainOptions
from edgeline.components.train.task import Log
from edgeline.components.train.transfer import backbone_layers
from edgeline.pipeline.errors import UserError


@dataclasses.dataclass(frozen=True)
class Phase:
    """A stretch of epochs ``[start, end)`` trained with one optimizer."""

    name: str
    start: int
    end: int
    freeze_backbone: bool
    learning_rate_scale: float


def resume_epoch(backup_dir: Path, default: int) -> int:
    """The epoch ``BackupAndRestore`` will resume at: one past the epoch it saved last.

    Read here, before ``fit``, so the input stream can start at the same epoch.
    """
    checkpoint = tf.train.latest_checkpoint(str(backup_dir / "chief"))
    if checkpoint is None:
        return default
    reader = tf.train.load_checkpoint(checkpoint)
    saved = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    return saved + 1 if saved >= 0 else default


def plan_phases(options: TrainOptions, has_initial_weights: bool) -> list[Phase]:
    frozen = options.transfer.freeze_backbone_epochs
    if frozen and not has_initial_weights:
        raise UserError(
            f"train.transfer.freeze_backbone_epochs={frozen} needs starting weights: set "
            "transfer.initial_model or give the step a Model input"
        )
    if not frozen:
        return [Phase("train", 0, options.epochs, False, 1.0)]
    phases = [Phase("frozen", 0, frozen, True, 1.0)]
    if frozen < options.epochs:
        phases.append(Phase("fine_tune", frozen, options.epochs, False,
                            options.transfer.fine_tune_learning_rate_scale))
    return phases


@dataclasses.dataclass
class PhasedTraining:
    """What the phases left behind: their plan, the per-epoch history, the best-epoch keeper
    (None without ``keep_best``) and the epoch a crashed run resumed at (None if it did not)."""

    phases: list[Phase]
    history: HistoryLog
    best: KeepBest | None
    resumed_from: int | None


def train_in_phases(*, model, task, options: TrainOptions, strategy, steps_per_epoch: int,
                    monitor: str, has_initial_weights: bool, seed: int, work_dir: Path,
                    is_chief: bool, log: Log) -> PhasedTraining:
    """Trains ``model`` through every phase, skipping those a previous attempt finished."""
    phases = plan_phases(options, has_initial_weights)
    history = HistoryLog(work_dir / "history.json", phase=phases[0].name, writer=is_chief)
    best = (KeepBest(work_dir, monitor, task.monitor_mode if options.monitor == "auto" else
                     _mode_of(monitor), writer=is_chief) if options.keep_best else None)
    resumed_from = None
    for phase in phases:
        done = work_dir / f"phase-{phase.name}.weights.h5"
        if done.is_file():
            model.load_weights(str(done))
            log(f"train: phase {phase.name} already finished; loaded its weights")
            resumed_from = phase.end
            continue
        start = _fit_phase(
            model=model, task=task, phase=phase, options=options, strategy=strategy,
            steps_per_epoch=steps_per_epoch, seed=seed, work_dir=work_dir, history=history,
            best=best, is_chief=is_chief, log=log,
        )
        if start > phase.start:
            resumed_from = start
        train_callbacks.save_weights(model, done, writer=is_chief)
        shutil.rmtree(work_dir / f"backup-{phase.name}", ignore_errors=True)
    return PhasedTraining(phases=phases, history=history, best=best, resumed_from=resumed_from)


def keep_best_epoch(model, best: KeepBest | None, monitor: str, log: Log) -> int | None:
    """Loads the best epoch's weights into ``model``; returns that epoch (None: the last)."""
    if best is None or not best.weights_path.is_file():
        return None
    model.load_weights(str(best.weights_path))
    best_epoch = best.state["epoch"]
    log(f"train: kept epoch {best_epoch + 1} ({monitor} {best.state['value']:.4f})")
    return best_epoch


def _mode_of(monitor: str) -> str:
    return "min" if "loss" in monitor or "error" in monitor else "max"


def _compile(model, task, options: TrainOptions, phase: Phase, steps_per_epoch: int):
    schedule = optim.build_schedule(
        options.schedule,
        peak_learning_rate=options.optimizer.learning_rate * phase.learning_rate_scale,
        steps_per_epoch=steps_per_epoch,
        epochs=phase.end - phase.start,
    )
    optimizer = optim.build_optimizer(options.optimizer, learning_rate=schedule,
                                      ema_decay=options.ema_decay,
                                      jit_compile=options.jit_compile)
    model.compile(optimizer=optimizer, jit_compile=options.jit_compile,
                  **task.compile_args(model))
    optim.exclude_from_weight_decay(model.optimizer, model)


def _fit_phase(*, model, task, phase: Phase, options: TrainOptions, strategy, steps_per_epoch,
               seed, work_dir: Path, history: HistoryLog, best, is_chief, log) -> int:
    """Runs (or resumes) one phase; returns the epoch it started at."""
    for layer in backbone_layers(model):
        layer.trainable = not phase.freeze_backbone
    with strategy.scope():
        _compile(model, task, options, phase, steps_per_epoch)
    backup_dir = work_dir / f"backup-{phase.name}"
    start = resume_epoch(backup_dir, phase.start)
    if start >= phase.end:
        # Every epoch finished but the phase was not marked done: restore, no fit.
        _restore_finished_phase(model, backup_dir)
        log(f"train: phase {phase.name} had finished; restored it from {backup_dir}")
        return phase.end
    if start > phase.start:
        log(f"train: resuming phase {phase.name} at epoch {start + 1} from {backup_dir}")
    history.phase = phase.name
    history.drop_from(start)
    callbacks = [StopOnNaN(options.optimizer.learning_rate * phase.learning_rate_scale)]
    if options.ema_decay is not None:
        callbacks.append(optim.EvaluateWithAverage())
    # Order matters: the history and the best weights are on disk before BackupAndRestore
    # marks the epoch finished, so a crash between them repeats the epoch instead of losing it.
    callbacks.append(history)
    if best is not None:
        callbacks.append(best)
    callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False))
    if options.tensorboard and is_chief:
        callbacks.append(TensorBoardScalars(work_dir / "tensorboard"))
    if is_chief:  # one worker's progress, not one per worker of a multi-worker run
        callbacks.append(ConsoleProgress(options.progress, phase=phase.name, first_epoch=start,
                                         last_epoch=phase.end, total_epochs=options.epochs,
                                         steps_per_epoch=steps_per_epoch))
    train_ds = task.train_dataset(start_epoch=start, end_epoch=phase.end,
                                  steps_per_epoch=steps_per_epoch, seed=seed)
    model.fit(
        train_ds,
        epochs=phase.end,
        initial_epoch=phase.start,
        steps_per_epoch=steps_per_epoch,
        validation_data=task.validation_dataset(),
        validation_steps=options.validation_steps,
        callbacks=callbacks,
        verbose=0,  # ConsoleProgress prints instead
    )
    return start


def _restore_finished_phase(model, backup_dir: Path) -> None:
    """What ``fit`` would have ended with: the backed-up weights, then the weight average
    swapped in (``finalize_variable_values``) when the optimizer keeps one."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model)
    checkpoint.restore(tf.train.latest_checkpoint(str(backup_dir / "chief"))).expect_partial()
    optimizer.finalize_variable_values(model.trainable_variables)


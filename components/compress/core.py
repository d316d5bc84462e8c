"""The compress stage's core: a Model artifact (and its Examples) in, a smaller Model out.

``run(...)`` reads top to bottom:

1. read the Model artifact (``edgeline.models.io``) and load its Keras network;
2. build the fine-tuning data from the Examples with the train stage's input pipeline and
   the task's loss (so classifiers and detectors fine-tune as they trained);
3. apply the recipe's methods in order (:mod:`.recipes`), evaluating after each;
4. write the new Model artifact through ``models.io`` plus ``compress.json``: each step's
   report (sparsity per layer, clusters per kernel, layers left out and why) and metrics.

Frontier mode (:mod:`.frontier`) runs several recipes and exports each to TFLite.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common.artifact_types.model import COMPRESS_REPORT_FILE as REPORT_FILE
from edgeline.common.determinism import determinism
from edgeline.components.compress.finetune import TrainingData
from edgeline.components.compress.options import CompressOptions, FineTuneOptions
from edgeline.components.compress.recipes import RecipeOutcome, run_recipe
from edgeline.pipeline import console
from edgeline.pipeline.config import to_plain
from edgeline.pipeline.errors import UserError

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    console.log(message)  # above a live bar, if there is one


@dataclasses.dataclass
class SourceModel:
    """The Model artifact being compressed."""

    directory: Path
    model: Any  # the tf_keras network
    labels: tuple[str, ...]
    preprocessing: Any  # models.io.Preprocessing

    @property
    def task(self) -> str:
        return self.preprocessing.task


@dataclasses.dataclass
class CompressResult:
    model_dir: Path
    report: dict[str, Any]
    metrics: dict[str, Any]
    properties: dict[str, Any]


def read_source(model_dir: str | os.PathLike) -> SourceModel:
    """The artifact and its network; a QAT network loads inside TF-MOT's scope."""
    from edgeline.models import io as model_io

    try:
        artifact = model_io.load_model_dir(model_dir)
    except model_io.ModelDirError as err:
        raise UserError(str(err)) from None
    from edgeline.components.compress.qat import quantize_scope

    try:
        with quantize_scope():
            model = artifact.load_keras()
    except (model_io.ModelDirError, ValueError, TypeError) as err:
        # TF-MOT cannot reload a quantization-aware .keras file
        # (tensorflow/model-optimization#1123): compress a QAT model's float source instead.
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{artifact.keras_path}: cannot load the Keras model ({first_line})"
                        ) from None
    return SourceModel(Path(model_dir), model, artifact.labels, artifact.preprocessing)


def _data_options(preprocessing, fine_tune: FineTuneOptions):
    from edgeline.components.train import DataOptions

    resize = preprocessing.resize if preprocessing.resize in (
        "bilinear", "bicubic", "area", "nearest") else "bilinear"
    return DataOptions(
        input_size=tuple(int(s) for s in preprocessing.input_size),
        mean=tuple(preprocessing.mean), std=tuple(preprocessing.std), resize=resize,
        crop_fraction=float(preprocessing.crop_fraction),
        augmentation=fine_tune.augmentation,
    )


@dataclasses.dataclass
class ExamplesTask:
    """The train stage's view of the Examples (its input pipeline and the task's loss)."""

    info: Any  # train.data.ExamplesInfo
    task: Any  # train.task.ClassificationTask | DetectionTask
    steps_per_epoch: int

    def training_data(self, model, seed: int) -> TrainingData:
        """Fine-tuning data whose loss matches ``model`` (the uncompressed network: a
        wrapped copy has the same outputs, but not the layers the loss inspects)."""
        compile_args = self.task.compile_args(model)
        return TrainingData(
            train=lambda epochs: self.task.train_dataset(
                start_epoch=0, end_epoch=epochs, steps_per_epoch=self.steps_per_epoch,
                seed=seed),
            steps_per_epoch=self.steps_per_epoch,
            loss=compile_args["loss"],
            metrics=compile_args.get("metrics", ()),
            validation=None,
            task=self.info.task,
            num_classes=self.info.num_classes,
        )

    def evaluate(self, model, reference, *, max_images: int | None) -> dict[str, float]:
        """Validation metrics of ``model``: top-1 (and top-5) for a classifier, box mAP for a
        detector."""
        compile_args = self.task.compile_args(reference)
        if self.info.task == "detection":
            return {k: float(v) for k, v in self.task.final_metrics(model, _quiet).items()}
        model.compile(loss=compile_args["loss"], metrics=compile_args.get("metrics", ()))
        batch_size = self.task.options.batch_size
        steps = None if max_images is None else max(1, max_images // batch_size)
        evaluated = model.evaluate(self.task.validation_dataset(), steps=steps, verbose=0,
                                   return_dict=True)
        return {f"val_{k}": float(v) for k, v in evaluated.items()}


def _quiet(message: str) -> None:
    pass


def examples_task(examples_dir: str | os.PathLike, source: SourceModel,
                  fine_tune: FineTuneOptions) -> ExamplesTask:
    """The train stage's data and task for fine-tuning ``source`` on ``examples_dir``."""
    from edgeline.components.train import TrainOptions, make_task, read_examples

    info = read_examples(examples_dir, source.task)
    if info.num_classes != len(source.labels):
        raise UserError(
            f"the Examples at {str(examples_dir)!r} have {info.num_classes} classes and the "
            f"model {len(source.labels)}; compress fine-tunes on the data the model was "
            "trained on"
        )
    options = TrainOptions(
        model="cnn", task=source.task, batch_size=fine_tune.batch_size,
        data=_data_options(source.preprocessing, fine_tune), tensorboard=False,
    )
    task = make_task(info, options)
    steps = fine_tune.steps_per_epoch or info.train_count // fine_tune.batch_size
    if steps < 1:
        raise UserError(f"fine_tune.batch_size={fine_tune.batch_size} is larger than the "
                        f"{info.train_count} training examples; lower it")
    return ExamplesTask(info=info, task=task, steps_per_epoch=steps)


def student_builder(source: SourceModel, seed: int):
    """``DistillOptions -> a fresh registry network`` with the teacher's classes and input."""
    from edgeline.models import registry

    height, width = (int(s) for s in source.preprocessing.input_size)

    def build(options):
        import tf_keras as keras

        keras.utils.set_random_seed(seed)
        try:
            return registry.build(options.student, num_classes=len(source.labels),
                                  input_shape=(height, width, 3), **options.student_options)
        except (ValueError, TypeError) as err:
            raise UserError(f"distill.student: {err}") from None

    return build


def run_steps(source: SourceModel, steps, task: ExamplesTask, *, fine_tune: FineTuneOptions,
              seed: int, evaluation_images: int | None, log: Log) -> RecipeOutcome:
    """The recipe ``steps`` on ``source``'s network."""
    data = task.training_data(source.model, seed)

    def evaluate(model):
        return task.evaluate(model, source.model, max_images=evaluation_images)

    return run_recipe(source.model, steps, data, fine_tune=fine_tune, evaluate=evaluate,
                      build_student=student_builder(source, seed), log=log)


def save_model(output_dir: Path, model, source: SourceModel, history: dict):
    from edgeline.models import io as model_io

    return model_io.save_model_dir(output_dir, model=model, labels=source.labels,
                                   preprocessing=source.preprocessing, history=history)


EVALUATION_DIR = "evaluation"


def evaluate_artifact(model_dir: Path, examples_dir, output_dir: Path, *,
                      quantization_aware: bool, max_images: int | None) -> dict[str, Any]:
    """The evaluate stage's metrics of a Model artifact on the validation split (its
    SavedModel for a QAT network: TF-MOT cannot reload a QAT ``.keras`` file)."""
    from edgeline.components import evaluate

    options = evaluate.EvaluateOptions(model_form="saved_model" if quantization_aware else "keras",
                              max_images=max_images, plots=False)
    result = evaluate.run(options=options, examples_dir=examples_dir,
                               model_path=model_dir, output_dir=output_dir, log=_quiet)
    return {k: v for k, v in result.metrics.items() if isinstance(v, int | float)}


def summary_metrics(after: dict[str, float], before: dict[str, float],
                    outcome: RecipeOutcome) -> dict[str, Any]:
    """The artifact's metrics: the evaluate stage's figures for the result and (with an
    ``original_`` prefix) for the input model, and the result's sparsity and size."""
    from edgeline.components.compress.selection import kernels

    metrics: dict[str, Any] = dict(after)
    metrics.update({f"original_{k}": v for k, v in before.items()})
    zeros = size = 0
    for layer in outcome.model.layers:
        for weight in kernels(layer):
            values = weight.numpy()
            zeros, size = zeros + int((values == 0).sum()), size + int(values.size)
    metrics["kernel_sparsity"] = zeros / size if size else 0.0
    metrics["parameters"] = int(outcome.model.count_params())
    return metrics


def write_report(path: Path, *, model_dir: str | os.PathLike, source: SourceModel,
                 options: CompressOptions, started: float, **measured: Any) -> dict[str, Any]:
    """Writes a compress run's JSON report (``compress.json``, or ``frontier.json`` in
    frontier mode) and returns it: the version, the source and its task, what the mode
    ``measured``, the options and the seconds since ``started``."""
    report = {
        "edgeline_version": edgeline.__version__,
        "source": os.fspath(model_dir),
        "task": source.task,
        **measured,
        "options": to_plain(options),
        "seconds": round(time.time() - started, 2),
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=True, default=float)
        f.write("\n")
    return report


def run(*, options: CompressOptions, model_dir: str | os.PathLike,
        examples_dir: str | os.PathLike, output_dir: str | os.PathLike, seed: int = 0,
        deterministic: bool = False, log: Log | None = None) -> CompressResult:
    """Compress the Model artifact ``model_dir`` with ``options`` (recipe mode) and write the
    result to ``output_dir``; frontier mode is :func:`.frontier.run`."""
    if options.mode != "recipe":
        raise UserError(f"compress.core.run is recipe mode; received mode={options.mode!r} "
                        "(use frontier.run)")
    # Op determinism is process-wide: on for this run only, not for what the process does next.
    with determinism(seed=seed, deterministic=deterministic):
        return _run_recipe(options=options, model_dir=model_dir, examples_dir=examples_dir,
                           output_dir=output_dir, seed=seed, log=log)


def _run_recipe(*, options: CompressOptions, model_dir, examples_dir, output_dir, seed: int,
                log: Log | None) -> CompressResult:
    log = log or _stderr
    started = time.time()
    output_dir = Path(output_dir)
    source = read_source(model_dir)
    task = examples_task(examples_dir, source, options.fine_tune)
    before = task.evaluate(source.model, source.model, max_images=options.evaluation_images)
    log("compress: original " + ", ".join(f"{k} {v:.4f}" for k, v in before.items()))
    outcome = run_steps(source, options.steps, task, fine_tune=options.fine_tune, seed=seed,
                        evaluation_images=options.evaluation_images, log=log)
    save_model(output_dir, outcome.model, source, outcome.history())
    from edgeline.components.export import is_quantization_aware

    log("compress: evaluating the original and the result (evaluate stage)")
    evaluated = {
        name: evaluate_artifact(path, examples_dir, output_dir / EVALUATION_DIR / name,
                                quantization_aware=is_quantization_aware(network),
                                max_images=options.evaluation_images)
        for name, path, network in (("original", Path(model_dir), source.model),
                                    ("compressed", output_dir, outcome.model))
    }
    metrics = summary_metrics(evaluated["compressed"], evaluated["original"], outcome)
    report = write_report(
        output_dir / REPORT_FILE, model_dir=model_dir, source=source, options=options,
        started=started, original_metrics=before, evaluation=evaluated,
        steps=outcome.to_json(), metrics=metrics,
    )
    properties = {
        "task": source.task,
        "recipe": [step.method for step in options.steps],
        "source": os.fspath(model_dir),
    }
    return CompressResult(model_dir=output_dir, report=report, metrics=metrics,
                          properties=properties)

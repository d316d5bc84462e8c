"""A recipe: compression methods applied in order, each on the previous one's model.

Every method takes a model and returns a new one (the input is never modified), fine-tuned on
the training data, with a report of what it did (sparsity per layer, distinct values per
kernel, which layers were wrapped and why others were not). After each step the model is
evaluated, so a recipe's table shows where accuracy was lost.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from edgeline.components.compress.finetune import TrainingData
from edgeline.components.compress.options import CompressStep, FineTuneOptions

Evaluate = Callable[[Any], dict[str, float]]
BuildStudent = Callable[[Any], Any]  # DistillOptions -> a fresh student network
Log = Callable[[str], None]


@dataclasses.dataclass
class StepOutcome:
    method: str
    report: dict[str, Any]
    history: dict[str, list[float]]
    metrics: dict[str, float]
    seconds: float


@dataclasses.dataclass
class RecipeOutcome:
    model: Any
    steps: list[StepOutcome]

    def history(self) -> dict[str, list[float]]:
        """Each step's fine-tuning history under ``<index>_<method>/<metric>``."""
        merged = {}
        for index, step in enumerate(self.steps, start=1):
            for key, values in step.history.items():
                merged[f"{index}_{step.method}/{key}"] = values
        return merged

    def to_json(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(step) for step in self.steps]


def apply_step(model, step: CompressStep, data: TrainingData, fine_tune: FineTuneOptions,
               build_student: BuildStudent | None = None):
    """One method on ``model``: returns (new model, report, history)."""
    fine_tune = step.fine_tune or fine_tune
    if step.method == "bn_fold":
        from edgeline.components.compress.bn_fold import fold_batch_norm

        folded, report = fold_batch_norm(model)
        return folded, {"method": "bn_fold", **report.to_json()}, {}
    if step.method == "prune":
        from edgeline.components.compress.prune import prune

        result = prune(model, data, step.prune, fine_tune)
    elif step.method == "cluster":
        from edgeline.components.compress.cluster import cluster

        result = cluster(model, data, step.cluster, fine_tune)
    elif step.method == "qat":
        from edgeline.components.compress.qat import qat

        result = qat(model, data, step.qat, fine_tune)
    elif step.method == "distill":
        from edgeline.components.compress.distill import distill

        if build_student is None:
            raise ValueError("distill needs a student builder")
        options = step.distill
        result = distill(model, build_student(options), data, temperature=options.temperature,
                         alpha=options.alpha, epochs=options.epochs,
                         learning_rate=options.learning_rate)
        result.report["student"] = options.student
    else:  # pragma: no cover - options.Method lists every method
        raise ValueError(f"unknown method {step.method!r}")
    return result.model, result.report, result.history


def run_recipe(model, steps: Sequence[CompressStep], data: TrainingData, *,
               fine_tune: FineTuneOptions, evaluate: Evaluate,
               build_student: BuildStudent | None = None,
               log: Log = lambda message: None) -> RecipeOutcome:
    """Apply ``steps`` in order, evaluating after each."""
    outcomes = []
    for index, step in enumerate(steps, start=1):
        started = time.time()
        log(f"compress: step {index}/{len(steps)}: {step.method}")
        model, report, history = apply_step(model, step, data, fine_tune, build_student)
        metrics = evaluate(model)
        seconds = round(time.time() - started, 2)
        log(f"compress: {step.method} done in {seconds:.1f}s: "
            + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        outcomes.append(StepOutcome(step.method, report, history, metrics, seconds))
    return RecipeOutcome(model=model, steps=outcomes)

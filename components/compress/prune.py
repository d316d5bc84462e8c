"""Magnitude pruning with TF-MOT ``prune_low_magnitude``, then ``strip_pruning``.

Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural Networks"
(NeurIPS 2015) remove the smallest-magnitude weights and retrain; Zhu & Gupta, "To prune, or
not to prune" (2017), raise the sparsity gradually along

    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n * dt)) ** 3

(TF-MOT's ``PolynomialDecay`` with power 3), which recovers accuracy better than one shot.
Structured 2:4 sparsity keeps the 2 largest of every 4 consecutive weights along the input
axis (Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.compress.finetune import (
    CompressedModel,
    TrainingData,
    fine_tune,
    require_epochs,
    total_steps,
)
from edgeline.components.compress.options import FineTuneOptions, PruneOptions
from edgeline.components.compress.selection import kernels, select_layers, wrap_layers

MASK_UPDATES = 16  # mask updates along the ramp when pruning_frequency is None


def _pruning_support(structure: str):
    """``supports(layer)`` for :func:`select_layers`: None if TF-MOT can prune it."""
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    def supports(layer) -> str | None:
        prunable = hasattr(layer, "get_prunable_weights") or (
            prune_registry.PruneRegistry.supports(layer)
        )
        if not prunable:
            return f"{type(layer).__name__} has no TF-MOT pruning support"
        if not kernels(layer):
            return f"{type(layer).__name__} has no kernel to prune"
        if structure == "2:4":
            if not isinstance(layer, keras.layers.Conv2D | keras.layers.Dense) or isinstance(
                layer, keras.layers.DepthwiseConv2D | keras.layers.Conv2DTranspose
            ):
                return "2:4 sparsity applies to Conv2D and Dense kernels"
            input_channels = kernels(layer)[0].shape[-2]
            if input_channels % 4:
                return f"2:4 needs input channels divisible by 4, received {input_channels}"
        return None

    return supports


def pruning_schedule(options: PruneOptions, steps: int):
    """The TF-MOT schedule for ``steps`` fine-tuning steps.

    The mask is updated every ``frequency`` steps and TF-MOT only updates on steps where
    ``(step - begin) % frequency == 0``, so the ramp's ``end_step`` is a multiple of the
    frequency: the target sparsity is then reached exactly, not one update short.
    """
    import tensorflow_model_optimization as tfmot

    ramp = max(1, int(round(steps * options.ramp_fraction)))
    frequency = options.pruning_frequency or max(1, ramp // MASK_UPDATES)
    if options.schedule == "constant":
        return tfmot.sparsity.keras.ConstantSparsity(
            options.target_sparsity, begin_step=0, frequency=frequency
        )
    end_step = max(frequency, (ramp // frequency) * frequency)
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=options.initial_sparsity,
        final_sparsity=options.target_sparsity,
        begin_step=0,
        end_step=end_step,
        power=3,
        frequency=frequency,
    )


def sparsity_report(model, pruned_layers: list[str] | None = None) -> dict[str, Any]:
    """Per-layer zeros of every kernel, and the totals over the pruned kernels and all."""
    layers = {}
    pruned_zeros = pruned_size = all_zeros = all_size = 0
    for layer in model.layers:
        for weight in kernels(layer):
            values = weight.numpy()
            zeros, size = int(np.sum(values == 0)), int(values.size)
            pruned = pruned_layers is None or layer.name in pruned_layers
            layers[layer.name] = {
                "weights": size,
                "zeros": zeros,
                "sparsity": zeros / size,
                "pruned": pruned,
            }
            all_zeros, all_size = all_zeros + zeros, all_size + size
            if pruned:
                pruned_zeros, pruned_size = pruned_zeros + zeros, pruned_size + size
    return {
        "layers": layers,
        "pruned_sparsity": pruned_zeros / pruned_size if pruned_size else 0.0,
        "overall_sparsity": all_zeros / all_size if all_size else 0.0,
    }


def prune(model, data: TrainingData, options: PruneOptions,
          fine_tune_options: FineTuneOptions) -> CompressedModel:
    """A pruned copy of ``model``, fine-tuned, with the pruning wrappers stripped.

    The layers named by ``options.layers`` (by default all but the first convolution and the
    classifier) are wrapped; the others stay dense and are listed with the reason.
    """
    import tensorflow_model_optimization as tfmot

    require_epochs("prune", fine_tune_options.epochs)
    selection = select_layers(model, options.layers, _pruning_support(options.structure))
    schedule = pruning_schedule(options, total_steps(data, fine_tune_options.epochs))
    m_by_n = (2, 4) if options.structure == "2:4" else None

    def wrap(layer):
        return tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=schedule, sparsity_m_by_n=m_by_n
        )

    wrapped = wrap_layers(model, selection.wrap, wrap)
    history = fine_tune(
        wrapped, data, epochs=fine_tune_options.epochs,
        learning_rate=fine_tune_options.learning_rate,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    report = sparsity_report(stripped, selection.wrap)
    report.update(
        method="prune",
        structure=options.structure,
        target_sparsity=0.5 if options.structure == "2:4" else options.target_sparsity,
        schedule=options.schedule,
        selection=selection.to_json(),
    )
    return CompressedModel(model=stripped, report=report, history=history)


def m_by_n_violations(kernel: np.ndarray, m_nonzero: int = 2, block: int = 4) -> int:
    """How many groups of ``block`` consecutive input-axis weights hold other than
    ``m_nonzero`` non-zeros. Conv2D (kh, kw, C_in, C_out) and Dense (C_in, C_out) kernels:
    the input axis is the second to last."""
    moved = np.moveaxis(kernel, -2, -1)  # (..., C_out, C_in)
    groups = moved.reshape(-1, moved.shape[-1] // block, block)  # (rows, C_in / 4, 4)
    return int(np.sum(np.count_nonzero(groups, axis=-1) != m_nonzero))

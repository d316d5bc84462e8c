"""Magnitude pruning (acceptance 1) and 2:4 structured sparsity (acceptance 2)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import tf_keras as keras

import edgeline  # noqa: F401
from edgeline.components.compress.options import (
    FineTuneOptions,
    LayerSelection,
    PruneOptions,
)
from edgeline.components.compress.prune import m_by_n_violations, prune, pruning_schedule
from edgeline.components.compress.selection import kernels

pytestmark = pytest.mark.filterwarnings("ignore")


def _gzip_bytes(model) -> int:
    """gzip size of the float TFLite file, converted by the export stage."""
    from edgeline.components.export.convert import convert_keras

    return len(gzip.compress(convert_keras(model, quantize="none"), compresslevel=9))


def test_pruning_to_80_percent_is_exact_per_kernel_and_shrinks_the_gzip_3x(
        bar_data, trained_cnn, pruned80, model_accuracy):
    _, (test_images, test_labels) = bar_data
    result = pruned80

    report = result.report
    assert report["selection"]["wrapped"] == ["conv0", "conv1", "hidden"]
    assert report["selection"]["skipped"]["stem"].startswith("the first convolution")
    assert report["selection"]["skipped"]["logits"].startswith("the classifier")
    for name in ("conv0", "conv1", "hidden"):
        kernel = kernels(result.model.get_layer(name))[0].numpy()
        assert abs(np.mean(kernel == 0) - 0.8) <= 0.01, name
        assert report["layers"][name]["pruned"]
        assert abs(report["layers"][name]["sparsity"] - 0.8) <= 0.01
    assert np.mean(kernels(result.model.get_layer("stem"))[0].numpy() == 0) == 0
    # strip_pruning leaves plain layers, and the input model is untouched.
    assert not any("prune" in type(layer).__name__.lower() for layer in result.model.layers)
    assert np.mean(kernels(trained_cnn.get_layer("conv1"))[0].numpy() == 0) == 0
    assert _gzip_bytes(trained_cnn) >= 3 * _gzip_bytes(result.model)
    # Fine-tuning kept the network working. Model seeds 0 (conftest's), 1, 2: 1.000 / 1.000 /
    # 1.000 of the 256 test images (the unpruned network: 1.000 each).
    assert model_accuracy(result.model, test_images, test_labels) >= 0.9


def test_two_four_sparsity_keeps_two_of_every_four_input_weights(bar_data, trained_cnn, make_data):
    (images, labels), _ = bar_data
    result = prune(trained_cnn, make_data(images, labels),
                   PruneOptions(structure="2:4", layers=LayerSelection()),
                   FineTuneOptions(epochs=1))

    skipped = result.report["selection"]["skipped"]
    # The stem sees 3 input channels, which 2:4 cannot group; it is left with the reason.
    assert "divisible by 4" in skipped["stem"]
    assert result.report["selection"]["wrapped"] == ["conv0", "conv1", "hidden", "logits"]
    for name in result.report["selection"]["wrapped"]:
        kernel = kernels(result.model.get_layer(name))[0].numpy()
        assert m_by_n_violations(kernel) == 0, name
        assert np.mean(kernel == 0) == pytest.approx(0.5)


def test_m_by_n_check_detects_a_broken_group():
    kernel = np.tile(np.array([1.0, 0.0, 2.0, 0.0], np.float32), (3, 3, 2, 1))  # (3,3,8,1)
    kernel = np.transpose(kernel.reshape(3, 3, 1, 8), (0, 1, 3, 2))  # (3, 3, 8, 1)
    assert m_by_n_violations(kernel) == 0
    kernel[0, 0, 1, 0] = 5.0  # three non-zeros in the first group
    assert m_by_n_violations(kernel) == 1


def test_polynomial_schedule_reaches_the_target_on_an_update_step():
    options = PruneOptions(target_sparsity=0.8, ramp_fraction=0.5)
    schedule = pruning_schedule(options, steps=100)
    config = schedule.get_config()["config"]
    assert config["end_step"] % config["frequency"] == 0 and config["end_step"] <= 50
    update, sparsity = schedule(config["end_step"])
    assert bool(update) and float(sparsity) == pytest.approx(0.8)


def test_custom_layers_are_left_out_with_a_reason(bar_data, make_data):
    from edgeline.models.layers import StochasticDepth

    (images, labels), _ = bar_data
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", name="branch")(x)
    x = StochasticDepth(0.8, name="drop")([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="logits")(x)
    model = keras.Model(inputs, outputs)
    result = prune(model, make_data(images, labels),
                   PruneOptions(target_sparsity=0.5), FineTuneOptions(epochs=1))
    assert result.report["selection"]["wrapped"] == ["branch"]
    assert isinstance(result.model.get_layer("drop"), StochasticDepth)

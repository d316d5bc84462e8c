"""Clustering and QAT, alone and chained after pruning, through int8 TFLite conversion
(acceptance 5 on a small model; the demo classifier is in test_pipeline.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras

import edgeline  # noqa: F401
from edgeline.common.litert import LiteRTModel
from edgeline.components.compress import tflite_kernels
from edgeline.components.compress.bn_fold import fold_batch_norm
from edgeline.components.compress.cluster import cluster
from edgeline.components.compress.options import (
    ClusterOptions,
    FineTuneOptions,
    LayerSelection,
    QatOptions,
)
from edgeline.components.compress.qat import detect_preservation, qat
from edgeline.components.compress.selection import kernels
from edgeline.components.export.convert import convert_keras

pytestmark = pytest.mark.filterwarnings("ignore")

ONE_EPOCH = FineTuneOptions(epochs=1, learning_rate=1e-3)


def _tflite_accuracy(content: bytes, images: np.ndarray, labels: np.ndarray) -> float:
    (scores,) = LiteRTModel(content).predict(images, batch_size=64)
    return float(np.mean(np.argmax(scores, -1) == labels))


@pytest.fixture(scope="module")
def chained(bar_data, pruned80, make_data):
    """prune 80% -> BN fold -> cluster 16 -> QAT, the Deep Compression order, and its int8
    .tflite. Folding leaves conv -> ReLU pairs, and the stem is left dense and unclustered:
    the two cases where TF-MOT 0.8.1's own QAT would undo the pruning (see qat.py)."""
    (images, labels), _ = bar_data
    data = make_data(images, labels)
    pruned = pruned80
    folded, _ = fold_batch_norm(pruned.model)
    clustered = cluster(folded, data, ClusterOptions(
        number_of_clusters=16, layers=LayerSelection(exclude_first_conv=True)),
        FineTuneOptions(epochs=1, learning_rate=1e-4))
    quantized = qat(clustered.model, data, QatOptions(), FineTuneOptions(epochs=1))
    content = convert_keras(quantized.model, quantize="int8")
    return pruned, clustered, quantized, content


def test_clustering_keeps_the_pruned_zeros_and_16_values_per_kernel(chained):
    pruned, clustered, _, _ = chained
    for name in ("conv0", "conv1", "hidden"):
        before = kernels(pruned.model.get_layer(name))[0].numpy()
        after = kernels(clustered.model.get_layer(name))[0].numpy()
        assert np.unique(after).size <= 16, name
        assert np.all(after[before == 0] == 0), name  # sparsity-preserving clustering
        assert clustered.report["layers"][name]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert clustered.report["selection"]["skipped"]["stem"].startswith("the first convolution")


def test_chained_qat_preserves_sparsity_and_clusters_through_int8_conversion(
        chained, bar_data):
    _, clustered, quantized, content = chained
    _, (test_images, test_labels) = bar_data
    assert detect_preservation(clustered.model) == "sparsity_and_clusters"
    assert quantized.report["preserve"] == "sparsity_and_clusters"
    stored = {k.name: k for k in tflite_kernels.kernels(content)}
    for layer in ("conv0", "conv1", "hidden"):
        (kernel,) = [k for name, k in stored.items() if f"quant_{layer}/" in name]
        # The kernel trained under fake quantization (TF-MOT's conv -> ReLU rule would have
        # dropped its weight quantizer and, with it, the zeros).
        wrapper = quantized.model.get_layer(f"quant_{layer}")
        assert any("kernel_min" in w.name for w in wrapper.weights), layer
        assert kernel.values.dtype == np.int8
        assert kernel.sparsity == pytest.approx(0.8, abs=0.01), layer
        # 16 clusters, one of them the pruned zero: at most 16 int8 values per channel.
        assert kernel.max_distinct_per_channel <= 16, layer
    # Model seeds 0 (conftest's), 1, 2: 1.000 / 1.000 / 1.000 of the 256 test images.
    assert _tflite_accuracy(content, test_images, test_labels) >= 0.9


@pytest.fixture(scope="module")
def quantized(bar_data, trained_cnn, make_data):
    """The trained CNN after QAT alone."""
    (images, labels), _ = bar_data
    return qat(trained_cnn, make_data(images, labels), QatOptions(preserve="auto"), ONE_EPOCH)


def test_qat_int8_tflite_is_within_one_point_of_the_float_model(
        bar_data, trained_cnn, quantized, model_accuracy):
    _, (test_images, test_labels) = bar_data
    result = quantized
    assert result.report["preserve"] == "none"
    # Input, stem, both ReLUs, hidden and logits start from the float network's ranges, not
    # TF-MOT's [-6, 6]: a ReLU's range starts at exactly 0.
    assert result.report["calibrated_ranges"] == 6
    relu_min = result.model.get_layer("quant_relu0").weights
    assert [float(w.numpy()) for w in relu_min if w.name.endswith("output_min:0")] == [0.0]
    content = convert_keras(result.model, quantize="int8")
    assert tflite_kernels.summary(content)["kernels"] == 5
    float_accuracy = model_accuracy(trained_cnn, test_images, test_labels)
    # Model seeds 0 (conftest's), 1, 2: float 1.000 and int8 QAT 1.000 each (no image lost;
    # the budget allows two of the 256).
    assert _tflite_accuracy(content, test_images, test_labels) >= float_accuracy - 0.01


class Scale(keras.layers.Layer):
    """A custom layer TF-MOT knows nothing about (and that edgeline gives no config)."""

    def build(self, input_shape):
        self.scale = self.add_weight("scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return inputs * self.scale


def test_custom_layers_get_a_quantize_config_or_stay_float_with_a_reason(bar_data, make_data):
    from edgeline.models.layers import ChannelZeroPad, StochasticDepth

    (images, labels), (test_images, _) = bar_data
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", name="branch")(x)
    x = StochasticDepth(0.9, name="drop")([x, y])
    x = ChannelZeroPad(8, name="pad")(x)
    x = Scale(name="scale")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="logits")(x)
    model = keras.Model(inputs, outputs)
    result = qat(model, make_data(images, labels),
                 QatOptions(layers=LayerSelection(exclude_layers=("logits",))), ONE_EPOCH)

    selection = result.report["selection"]
    assert "no 8-bit QuantizeConfig" in selection["skipped"]["scale"]
    assert selection["skipped"]["logits"] == "excluded by exclude_layers"
    wrapped = {layer.name: type(layer).__name__ for layer in result.model.layers}
    assert wrapped["quant_drop"].startswith("QuantizeWrapper")
    assert wrapped["quant_pad"].startswith("QuantizeWrapper")
    assert wrapped["scale"] == "Scale" and wrapped["logits"] == "Dense"
    content = convert_keras(result.model, quantize="int8", allow_float_ops=True,
                            representative=test_images[:16])
    assert LiteRTModel(content).predict(test_images[:4])[0].shape == (4, 4)


def test_a_qat_model_artifact_serves_the_same_outputs(bar_data, quantized, tmp_path):
    """A QAT network goes into a Model artifact; its SavedModel (which the export stage
    converts: TF-MOT cannot reload a QAT ``.keras`` file, tensorflow/model-optimization#1123)
    computes what the trained network computes."""
    import tensorflow as tf

    from edgeline.models import io as model_io

    _, (test_images, _) = bar_data
    model_dir = model_io.save_model_dir(
        tmp_path / "model", model=quantized.model, labels=["top", "bottom", "left", "right"],
        preprocessing=model_io.Preprocessing(task="classification", input_size=(16, 16)),
    )
    serve = model_dir.load_saved_model().signatures["serving_default"]
    (served,) = serve(images=tf.constant(test_images[:8])).values()
    np.testing.assert_allclose(served.numpy(), quantized.model.predict(test_images[:8], verbose=0),
                               atol=1e-5)

"""The methods on the registry's detector (MobileNet v2 + FPN + heads): BN folding stays
exact, pruning leaves the stem and every prediction head dense, QAT wraps every layer."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras

import edgeline  # noqa: F401
from edgeline.components.compress.bn_fold import fold_batch_norm
from edgeline.components.compress.options import PruneOptions, QatOptions
from edgeline.components.compress.prune import _pruning_support
from edgeline.components.compress.qat import quantize_aware
from edgeline.components.compress.selection import classifier_names, select_layers
from edgeline.models import registry

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


@pytest.fixture(scope="module")
def detector():
    keras.utils.set_random_seed(0)
    model = registry.build("mobilenet_v2_detector", num_classes=3, input_shape=(64, 64, 3),
                           backbone_width_multiplier=0.35, fpn_channels=16, head_channels=16,
                           head_depth=1)
    rng = np.random.RandomState(0)
    for layer in model.layers:  # trained-looking statistics, so the fold has work to do
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(-1.5, 1.5, gamma.shape), rng.normal(0, .2, beta.shape),
                               rng.normal(0, .2, mean.shape), rng.uniform(.1, 2, variance.shape)])
    return model


@pytest.fixture(scope="module")
def folded_detector(detector):
    return fold_batch_norm(detector)


def test_bn_folding_the_detector_is_exact(detector, folded_detector):
    folded, report = folded_detector
    images = np.random.RandomState(1).normal(0, 1, (2, 64, 64, 3)).astype(np.float32)
    expected, actual = detector(images).numpy(), folded(images).numpy()
    assert report.folded and not report.kept
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert np.max(np.abs(expected - actual)) <= 1e-4 * max(1.0, np.max(np.abs(expected)))


def test_pruning_leaves_the_stem_and_each_prediction_head_dense(detector):
    heads = classifier_names(detector)
    # Box, objectness and class predictions at each of the 3 pyramid levels.
    assert heads == {f"head{stride}_{kind}" for stride in (8, 16, 32)
                     for kind in ("box", "objectness", "classes")}
    selection = select_layers(detector, PruneOptions().layers, _pruning_support("unstructured"))
    for name in heads:
        assert selection.skipped[name].startswith("the classifier")
    assert len(selection.wrap) > 40


def test_qat_wraps_the_folded_detector_without_leaving_layers_out(detector, folded_detector):
    folded, _ = folded_detector
    quantized, report = quantize_aware(folded, QatOptions())
    assert report["selection"]["skipped"] == {}
    images = np.random.RandomState(2).normal(0, 1, (2, 64, 64, 3)).astype(np.float32)
    assert quantized(images).shape == detector(images).shape

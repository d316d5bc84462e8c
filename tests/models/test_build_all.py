"""Every registered classifier and detector builds at its default input and at 32x32 and 64x64, and the
published parameter counts match exactly (acceptance 1).

Counting convention: *trainable* parameters, i.e. convolution kernels (no bias where a batch
norm follows), batch-norm gamma and beta, classifier weights and biases. Batch-norm moving
means and variances are statistics, not parameters: torchvision keeps them as buffers, which
is how the reference numbers (ResNet-50 25,557,032; DenseNet-121 7,978,856; SqueezeNet 1.1
1,235,496; MobileNet v2 3,504,872) were counted; keras.applications' MobileNet v1 reports
4,231,976 trainable parameters the same way. (keras.applications' ResNet50 and DenseNet121
differ: their convolutions carry biases.)
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeline import models
from edgeline.models import detector

# The five counts of the issue (1000 classes, 224x224).
PUBLISHED_TRAINABLE_PARAMETERS = {
    "resnet50": 25_557_032,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "densenet121": 7_978_856,
    "squeezenet1_1": 1_235_496,
}
# Further reference counts: torchvision's resnet18, resnet34 and squeezenet1_0 (exact), and the
# papers' rounded figures: ResNet-110 "1.7M" (He et al., Table 6), WRN-28-10 "36.5M"
# (Zagoruyko & Komodakis, Table 3), DenseNet-BC (L=100, k=12) "0.8M" (Huang et al., Table 2).
OTHER_EXACT_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "squeezenet1_0": 1_248_424,
}
PAPER_ROUNDED_COUNTS = {
    "resnet110_cifar": (1.7e6, 0.05e6),
    "wide_resnet28_10": (36.5e6, 0.05e6),
    "densenet_bc100_cifar": (0.8e6, 0.05e6),
}


# Small-input builds use this many classes (other test files reuse those builds).
SMALL_INPUT_CLASSES = 7


def _expected_output_shape(name: str, batch: int, input_shape, num_classes: int):
    if models.get(name).task == "detection":
        locations = len(detector.anchor_points(input_shape[:2]).strides)
        return (batch, locations, 5 + num_classes)
    return (batch, num_classes)


# The networks of this package; the Q-networks (task "q_network", models/qnetworks.py) are
# tf-agents networks tested with the RL stage.
TASKS = ("classification", "detection")


def _sizes():
    cases = []
    for name in [name for task in TASKS for name in models.names(task=task)]:
        spec = models.get(name)
        cases.append(pytest.param(name, None, id=f"{name}-default"))
        for size in (32, 64):
            if spec.default_input_shape[:2] != (size, size) and size >= spec.min_input_size:
                cases.append(pytest.param(name, size, id=f"{name}-{size}"))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("name, size", _sizes())
def test_builds(name, size, build_cached):
    spec = models.get(name)
    if size is None:
        model = build_cached(name)
        input_shape = spec.default_input_shape
        assert model.input_shape == (None, *input_shape)
        assert model.output_shape == _expected_output_shape(
            name, None, input_shape, spec.default_num_classes
        )
        return
    # Small inputs: build and run a forward pass (cheap at these sizes).
    num_classes = SMALL_INPUT_CLASSES
    input_shape = (size, size, spec.default_input_shape[-1])
    model = build_cached(name, num_classes=num_classes, input_shape=input_shape)
    images = np.random.default_rng(0).standard_normal((2, *input_shape)).astype(np.float32)
    outputs = model(images, training=False).numpy()
    assert outputs.shape == _expected_output_shape(name, 2, input_shape, num_classes)
    assert np.isfinite(outputs).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLISHED_TRAINABLE_PARAMETERS))
def test_published_parameter_counts(name, build_cached, trainable_parameters):
    model = build_cached(name)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 1000)
    assert trainable_parameters(model) == PUBLISHED_TRAINABLE_PARAMETERS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OTHER_EXACT_COUNTS))
def test_other_reference_counts(name, build_cached, trainable_parameters):
    assert trainable_parameters(build_cached(name)) == OTHER_EXACT_COUNTS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER_ROUNDED_COUNTS))
def test_paper_rounded_counts(name, build_cached, trainable_parameters):
    published, rounding = PAPER_ROUNDED_COUNTS[name]
    assert abs(trainable_parameters(build_cached(name)) - published) <= rounding

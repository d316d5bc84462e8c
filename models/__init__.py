"""A registry of tf_keras networks by name, and the layers and losses they use.

    from edgeline import models
    models.names()                                   # every registered name
    model = models.build("mobilenet_v2", num_classes=10, input_shape=(96, 96, 3),
                         width_multiplier=0.35)

Families (each module cites its paper): :mod:`.resnet` (ResNet v1/v2, CIFAR ResNets, Wide
ResNets, stochastic depth), :mod:`.mobilenet` (v1, v2), :mod:`.squeezenet` (1.0, 1.1),
:mod:`.densenet` (DenseNet-BC), :mod:`.detector` (a MobileNet v2 single-stage detector with its
losses and decoding), :mod:`.cnn` (a small CNN for tests). Classifiers take float32
preprocessed images ``(N, H, W, C)`` and return logits ``(N, num_classes)`` unless built with
``classifier_activation``.

Importing this package does not import TensorFlow: the registry resolves builders on first
build. (The network modules import TensorFlow; importing any ``edgeline.*`` module first runs
``edgeline/__init__``, which sets ``TF_USE_LEGACY_KERAS``.) Before loading a ``.keras`` file
that holds edgeline layers with plain ``keras.models.load_model``, call
:func:`import_serializables` so that Keras knows their classes.
"""

from edgeline.models import registry
from edgeline.models.registry import (
    DuplicateModelError,
    ModelOptionError,
    ModelSpec,
    UnknownModelError,
    build,
    get,
    names,
    register,
    unregister,
)


def import_serializables() -> None:
    """Imports the modules that register Keras serializables under the package "edgeline"
    (the layers of :mod:`.layers`, :class:`.detector.DetectorLoss`)."""
    from edgeline.models import detector, layers  # noqa: F401


__all__ = [
    "DuplicateModelError",
    "ModelOptionError",
    "ModelSpec",
    "UnknownModelError",
    "build",
    "get",
    "import_serializables",
    "names",
    "register",
    "registry",
    "unregister",
]

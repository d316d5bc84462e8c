"""A small plain CNN: stages of 3x3 conv-BN-ReLU and 2x2 max pooling, then a classifier.

Not from a paper: the VGG pattern (Simonyan & Zisserman, 2015, arXiv:1409.1556) at a size
that trains on a CPU in seconds, for tests, demos and smoke runs of the pipeline. Every layer
is a stock Keras layer with a TFLite builtin kernel. Outputs are logits unless
``classifier_activation`` says otherwise.
"""

from __future__ import annotations

import tf_keras as keras

from edgeline.models.layers import batch_norm, check_rate, classifier_head, conv2d


def cnn(*, num_classes: int, input_shape: tuple[int | None, int | None, int], name: str = "cnn",
        stage_widths: tuple[int, ...] = (16, 32, 64), convs_per_stage: int = 1,
        classifier_dropout_rate: float = 0.0, classifier_activation: str | None = None,
        seed: int | None = None) -> keras.Model:
    """Builds the small CNN.

    Args:
      stage_widths: channels of each stage; each stage ends with a 2x2 max pool.
      convs_per_stage: 3x3 convolutions in each stage.
      classifier_dropout_rate: dropout before the classifier.
      classifier_activation: ``None`` for logits, or e.g. ``"softmax"``.
      seed: seeds the dropout.
    """
    check_rate("classifier_dropout_rate", classifier_dropout_rate)
    if not stage_widths or min(stage_widths) < 1 or convs_per_stage < 1:
        raise ValueError(
            f"Received: stage_widths={tuple(stage_widths)}, convs_per_stage={convs_per_stage}; "
            "each needs at least one stage and one convolution"
        )
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for stage, width in enumerate(stage_widths, start=1):
        for conv in range(1, convs_per_stage + 1):
            x = conv2d(x, width, 3, name=f"stage{stage}_conv{conv}")
            x = batch_norm(x, name=f"stage{stage}_bn{conv}")
            x = keras.layers.ReLU(name=f"stage{stage}_relu{conv}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)  # (N, H/2^s, W/2^s, w)
    outputs = classifier_head(
        x, num_classes, classifier_dropout_rate, classifier_activation, seed=seed
    )
    return keras.Model(inputs, outputs, name=name)

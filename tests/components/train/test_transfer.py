"""Transfer learning: starting weights read from a Model artifact or a SavedModel, copied by
name and shape."""

from __future__ import annotations

import numpy as np
import pytest

import edgeline  # noqa: F401
from edgeline.components.train import transfer
from edgeline.pipeline.errors import UserError


def test_transfer_from_a_saved_model_with_another_head(classification_examples, tiny_model,
                                                       trained, tmp_path):
    """A SavedModel (here the artifact's own) is a source too; a head for another number of
    classes starts fresh."""
    import tensorflow as tf

    from edgeline.models import registry

    source = transfer.load_source_weights(trained.model_dir.saved_model_path)
    model = registry.build(tiny_model, num_classes=5, input_shape=(32, 32, 3))
    copied, total = transfer.transfer_weights(model, source)
    assert (copied, total) == (4, 6)  # conv1 and conv2 kernels and biases, not the 5-way head
    kernel = trained.model_dir.load_keras().get_layer("conv1").kernel
    np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(), kernel.numpy())
    assert isinstance(source["conv1/kernel:0"], np.ndarray) and tf.is_tensor(kernel)
    with pytest.raises(UserError, match="neither a Model artifact"):
        transfer.load_source_weights(tmp_path)

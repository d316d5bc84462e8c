"""BN folding (acceptance 3): the folded model equals the original, with no BN left."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras

import edgeline  # noqa: F401
from edgeline.components.compress.bn_fold import fold_batch_norm, fold_weights

pytestmark = pytest.mark.filterwarnings("ignore")


def _randomize_bn(bn: keras.layers.BatchNormalization, rng: np.random.RandomState) -> None:
    """Trained-looking statistics: gamma of both signs, shifted means, spread variances."""
    channels = bn.moving_mean.shape[0]
    gamma = rng.uniform(0.5, 2.0, channels) * rng.choice([-1.0, 1.0], channels)
    gamma[0] = -1.7  # a negative gamma for certain
    bn.set_weights([
        gamma.astype(np.float32),
        rng.normal(0, 0.5, channels).astype(np.float32),  # beta
        rng.normal(0, 0.5, channels).astype(np.float32),  # moving_mean
        rng.uniform(0.05, 3.0, channels).astype(np.float32),  # moving_variance
    ])


def _max_relative_difference(expected: np.ndarray, actual: np.ndarray) -> float:
    return float(np.max(np.abs(expected - actual)) / max(1.0, float(np.max(np.abs(expected)))))


def _model_with_every_foldable_kind():
    """Conv2D(no bias) -> BN -> ReLU -> DepthwiseConv2D -> BN -> ReLU -> Conv2D -> BN ->
    pool -> Dense -> BN (all foldable), with hazards planted in the BN statistics."""
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="stem")(inputs)
    # A tiny eps with a zero-variance channel: s = gamma / sqrt(1e-10) is 1e5 * gamma.
    x = keras.layers.BatchNormalization(epsilon=1e-10, name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(12, 1, name="project")(x)
    x = keras.layers.BatchNormalization(name="project_bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5, name="logits")(x)
    outputs = keras.layers.BatchNormalization(name="logits_bn")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.RandomState(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            _randomize_bn(layer, rng)
    # A dead stem channel (all-zero kernel, so its pre-BN output is exactly its mean 0) with
    # variance 0: the near-zero-variance hazard. Folding must keep it finite and equal.
    stem = model.get_layer("stem")
    kernel = stem.get_weights()[0]
    kernel[..., 3] = 0.0
    stem.set_weights([kernel])
    stem_bn = model.get_layer("stem_bn")
    gamma, beta, mean, variance = stem_bn.get_weights()
    mean[3], variance[3] = 0.0, 0.0
    stem_bn.set_weights([gamma, beta, mean, variance])
    # A zero-variance channel that does carry signal, with Keras's default eps = 1e-3.
    dw_bn = model.get_layer("dw_bn")
    gamma, beta, mean, variance = dw_bn.get_weights()
    variance[5] = 0.0
    dw_bn.set_weights([gamma, beta, mean, variance])
    return model


def test_folding_is_exact_and_removes_every_batch_norm():
    model = _model_with_every_foldable_kind()
    folded, report = fold_batch_norm(model)

    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert {(f["bn"], f["into"]) for f in report.folded} == {
        ("stem_bn", "stem"), ("dw_bn", "dw"), ("project_bn", "project"), ("logits_bn", "logits"),
    }
    assert report.kept == []
    images = np.random.RandomState(1).normal(0, 1, (16, 12, 12, 3)).astype(np.float32)
    expected = model.predict(images, verbose=0)
    actual = folded.predict(images, verbose=0)
    assert np.all(np.isfinite(actual))
    assert _max_relative_difference(expected, actual) < 1e-4
    # The original is untouched (folding builds a new model).
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_negative_gamma_flips_the_kernel_sign_and_zero_variance_stays_finite():
    kernel = np.array([[1.0, 2.0], [3.0, -4.0]], np.float32)  # Dense (C_in=2, C_out=2)
    folded_kernel, folded_bias = fold_weights(
        "dense", kernel, bias=np.array([0.5, 0.5], np.float32),
        gamma=np.array([-2.0, 1.0], np.float32), beta=np.array([0.1, 0.2], np.float32),
        moving_mean=np.array([0.5, 1.5], np.float32),
        moving_variance=np.array([0.0, 3.0], np.float32), epsilon=1e-10,
    )
    scale_0 = -2.0 / np.sqrt(1e-10)  # a large, finite, negative scale: not abs(gamma)
    np.testing.assert_allclose(folded_kernel[:, 0], kernel[:, 0] * scale_0, rtol=1e-6)
    np.testing.assert_allclose(folded_kernel[:, 1], kernel[:, 1] / np.sqrt(3.0 + 1e-10), rtol=1e-6)
    np.testing.assert_allclose(folded_bias, [0.1, (0.5 - 1.5) / np.sqrt(3.0) + 0.2], rtol=1e-6)
    assert np.all(np.isfinite(folded_kernel)) and np.all(np.isfinite(folded_bias))
    assert np.all(np.sign(folded_kernel[:, 0]) == -np.sign(kernel[:, 0]))


def test_unfoldable_batch_norms_are_kept_with_a_reason():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization(name="input_bn")(inputs)
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="relu_conv")(x)
    x = keras.layers.BatchNormalization(name="after_relu_bn")(conv)
    branch = keras.layers.Conv2D(4, 1, name="branch")(x)
    y = keras.layers.BatchNormalization(name="branch_bn")(branch)
    outputs = keras.layers.Add()([branch, y])  # branch is used with and without its BN
    model = keras.Model(inputs, outputs)
    folded, report = fold_batch_norm(model)

    reasons = {k["bn"]: k["reason"] for k in report.kept}
    assert set(reasons) == {"input_bn", "after_relu_bn", "branch_bn"}
    assert "model input" in reasons["input_bn"]
    assert "relu" in reasons["after_relu_bn"]
    assert "also used" in reasons["branch_bn"]
    assert folded is model and report.folded == []


def test_sequential_model_folds_into_an_equal_functional_model():
    model = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8, name="hidden"),
        keras.layers.BatchNormalization(name="hidden_bn"), keras.layers.ReLU(),
        keras.layers.Dense(3, name="out"),
    ])
    _randomize_bn(model.get_layer("hidden_bn"), np.random.RandomState(2))
    folded, report = fold_batch_norm(model)
    inputs = np.random.RandomState(3).normal(0, 1, (10, 6)).astype(np.float32)
    assert report.folded == [{"bn": "hidden_bn", "into": "hidden"}]
    assert _max_relative_difference(model(inputs).numpy(), folded(inputs).numpy()) < 1e-4

"""The evaluation-time preprocessing every stage shares: crop, resize, normalize."""

from __future__ import annotations

import io as bytes_io

import numpy as np
import tensorflow as tf
from PIL import Image

import edgeline  # noqa: F401
from edgeline.common import preprocessing
from edgeline.models.io import Preprocessing


def _jpeg(pixels, fmt="JPEG"):
    buffer = bytes_io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, quality=100)
    return buffer.getvalue()


def test_center_crop_decodes_the_central_square_of_jpeg_and_png():
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, 20:60] = 255  # the central 40x40 square is white, the sides black
    for fmt in ("JPEG", "PNG"):
        crop = preprocessing.center_crop(tf.constant(_jpeg(pixels, fmt)), 1.0).numpy()
        assert crop.shape == (40, 40, 3)
        assert crop.mean() > 250, fmt
    assert preprocessing.center_crop(tf.constant(_jpeg(pixels)), 0.5).numpy().shape == (20, 20, 3)


def test_normalize_is_the_models_normalize_bit_for_bit():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    spec = Preprocessing(task="classification", input_size=(5, 7), mean=(0.4, 0.5, 0.6),
                         std=(0.2, 0.3, 0.1))
    ours = preprocessing.normalize(pixels, spec).numpy()
    np.testing.assert_array_equal(ours, spec.normalize(pixels).numpy())
    np.testing.assert_allclose(ours, (pixels / 255.0 - spec.mean) / spec.std, rtol=1e-5)
    assert ours.dtype == np.float32


def test_evaluation_image_crops_classification_and_keeps_detection_whole():
    pixels = np.random.default_rng(1).integers(0, 256, (30, 60, 3), dtype=np.uint8)
    encoded = tf.constant(_jpeg(pixels, "PNG"))
    spec = Preprocessing(task="classification", input_size=(15, 15), crop_fraction=1.0,
                         resize="area")
    cropped = preprocessing.evaluation_image(encoded, spec, crop=True).numpy()
    whole = preprocessing.evaluation_image(encoded, spec, crop=False).numpy()
    assert cropped.shape == whole.shape == (15, 15, 3) and cropped.dtype == np.float32
    # area resize by 2 of the central 30x30 square: the mean of each 2x2 block.
    expected = pixels[:, 15:45].reshape(15, 2, 15, 2, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_allclose(cropped, expected, atol=1e-4)
    assert not np.allclose(cropped, whole)


def test_evaluation_pixels_are_the_rounded_uint8_view():
    pixels = np.random.default_rng(2).integers(0, 256, (40, 80, 3), dtype=np.uint8)
    spec = Preprocessing(task="classification", input_size=(20, 20), crop_fraction=0.5,
                         resize="bilinear")
    out = preprocessing.evaluation_pixels(tf.constant(pixels), spec).numpy()
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    # A crop of side 20 resized to 20: the central square itself.
    np.testing.assert_array_equal(out, pixels[10:30, 30:50])
    float_view = preprocessing.resize(tf.constant(pixels[10:30, 30:50]), spec).numpy()
    np.testing.assert_array_equal(out, np.clip(np.round(float_view), 0, 255).astype(np.uint8))

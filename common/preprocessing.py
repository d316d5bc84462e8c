"""Evaluation-time preprocessing: how an encoded image becomes what a network sees.

One path for every stage that judges a model, so that the train stage's validation, the
evaluate stage and the export stage's parity gate see the same image:

    encoded bytes --decode--> (h, w, 3) uint8
        classification: the central square of side ``crop_fraction`` x the shorter side
        (the 224/256 = 0.875 center crop of Szegedy et al., "Going deeper with convolutions",
        2015); detection: the whole image (``crop_fraction`` 1.0), so normalized boxes stay
        valid
    --resize--> (H, W, 3) float32 in [0, 255], ``tf.image.resize`` with the model's method
    --normalize--> ``(pixels / 255 - mean) / std`` float32, what ``preprocessing.json``
        promises (unless the network normalizes inside)

``preprocessing`` is anything with ``input_size``, ``resize``, ``crop_fraction``, ``mean`` and
``std``: a Model's ``edgeline.models.io.Preprocessing`` or the train stage's ``DataOptions``.
``Preprocessing.normalize`` in ``models/io.py`` computes the same ops (``models`` may not
import this layer); the stages call :func:`normalize` here.

Two crops, on purpose. :func:`center_crop` decodes only the window of a JPEG (libjpeg's
cropped decode, fast on large photos); :func:`evaluation_pixels` slices the window out of the
whole decoded image. libjpeg's cropped decode upsamples chroma at the window's edge without
the pixels outside it, so the two differ by a few levels in some edge pixels (58 of 429
crops of the ImageNet sample and random JPEGs). Training and evaluate have always used the
first; the export gate the second, which gives the uint8 pixels an app's camera would.
"""

from __future__ import annotations

from typing import Any


def decode(encoded):
    """Any JPEG, PNG, GIF or BMP to uint8 RGB (grayscale and CMYK JPEGs become RGB)."""
    import tensorflow as tf

    return tf.io.decode_image(encoded, channels=3, expand_animations=False)  # (h, w, 3)


def image_shape(encoded):
    """(height, width, channels) without decoding a JPEG; other formats are decoded."""
    import tensorflow as tf

    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.extract_jpeg_shape(encoded),
        lambda: tf.shape(decode(encoded)),
    )


def decode_window(encoded, window):
    """Decodes only ``window`` = [y, x, height, width] of the image: (height, width, 3)."""
    import tensorflow as tf

    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.decode_and_crop_jpeg(encoded, window, channels=3),
        lambda: tf.slice(decode(encoded), [window[0], window[1], 0],
                         [window[2], window[3], 3]),
    )


def center_crop(encoded, crop_fraction: float):
    """Decodes the central square of side ``crop_fraction`` x the shorter side: (c, c, 3)."""
    import tensorflow as tf

    shape = image_shape(encoded)
    height, width = shape[0], shape[1]
    side = tf.cast(crop_fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    side = tf.maximum(side, 1)
    window = tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])
    return decode_window(encoded, window)


def resize(image, preprocessing: Any):
    """(h, w, 3) -> (H, W, 3) with the model's method: float32 in [0, 255] (``nearest``
    keeps the input's dtype)."""
    import tensorflow as tf

    return tf.image.resize(image, preprocessing.input_size, method=preprocessing.resize)


def normalize(pixels, preprocessing: Any):
    """``(pixels / 255 - mean) / std``, float32, on float or uint8 RGB pixels in [0, 255]."""
    import tensorflow as tf

    mean = tf.constant(preprocessing.mean, tf.float32)
    std = tf.constant(preprocessing.std, tf.float32)
    return (tf.cast(pixels, tf.float32) / 255.0 - mean) / std


def evaluation_image(encoded, preprocessing: Any, *, crop: bool):
    """The evaluation view of one encoded image before normalization: the center crop (when
    ``crop``, the classification convention) or the whole image, resized: (H, W, 3)."""
    image = center_crop(encoded, preprocessing.crop_fraction) if crop else decode(encoded)
    return resize(image, preprocessing)


def evaluation_pixels(image, preprocessing: Any):
    """The evaluation view of one decoded image as uint8 pixels, what a camera gives an app:
    the central square of side ``crop_fraction`` x the shorter side (none at 1.0), resized,
    rounded back to uint8: (H, W, 3) uint8."""
    import tensorflow as tf

    if float(preprocessing.crop_fraction) < 1.0:
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        shorter = tf.cast(tf.minimum(height, width), tf.float32)
        side = tf.maximum(tf.cast(float(preprocessing.crop_fraction) * shorter, tf.int32), 1)
        top, left = (height - side + 1) // 2, (width - side + 1) // 2
        image = image[top:top + side, left:left + side]  # (c, c, 3)
    resized = resize(image, preprocessing)  # (H, W, 3) float32
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

"""Content checks: what the bytes are decides, never the file name."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from edgeline.components.ingest.images import ImageRejected, prepare_image, read_jpeg_header


def _jpeg(image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo_bytes(shared_data) -> bytes:
    return (shared_data / "imagenet_sample/train/n01440764/n01440764_tench.JPEG").read_bytes()


def test_rgb_jpeg_passes_through_byte_for_byte(photo_bytes):
    prepared = prepare_image(photo_bytes)
    assert prepared.encoded is photo_bytes and prepared.fix is None
    assert (prepared.width, prepared.height) == Image.open(io.BytesIO(photo_bytes)).size


def test_progressive_rgb_jpeg_passes_through(photo_bytes):
    progressive = _jpeg(Image.open(io.BytesIO(photo_bytes)), progressive=True, quality=90)
    assert read_jpeg_header(progressive).sof_marker == 0xC2
    assert prepare_image(progressive).encoded == progressive


@pytest.mark.parametrize("mode, fix_word", [("CMYK", "4-channel (CMYK)"), ("L", "grayscale")])
def test_cmyk_and_grayscale_jpegs_become_rgb(photo_bytes, mode, fix_word):
    source = _jpeg(Image.open(io.BytesIO(photo_bytes)).convert(mode))
    prepared = prepare_image(source, quality=90)
    assert fix_word in prepared.fix
    decoded = Image.open(io.BytesIO(prepared.encoded))
    assert decoded.format == "JPEG" and decoded.mode == "RGB"
    assert decoded.size == (prepared.width, prepared.height) == (500, 375)


@pytest.mark.parametrize("image_format", ["PNG", "GIF", "BMP", "WEBP"])
def test_other_formats_named_jpeg_are_reencoded(photo_bytes, image_format):
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes)).save(buffer, format=image_format)
    prepared = prepare_image(buffer.getvalue())
    assert prepared.fix.startswith(f"{image_format} image")
    assert Image.open(io.BytesIO(prepared.encoded)).mode == "RGB"


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda b: b"", "empty file"),
        (lambda b: b"hello, I am text\n" * 10, "not an image"),
        (lambda b: b[: len(b) // 2], "truncated JPEG"),
        (lambda b: b[:300], "truncated JPEG"),
        (lambda b: b[:2], "corrupt JPEG"),
        (lambda b: b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image"),
    ],
)
def test_broken_files_are_rejected_with_a_reason(photo_bytes, make, reason):
    with pytest.raises(ImageRejected, match=reason):
        prepare_image(make(photo_bytes))


def test_truncated_png_is_rejected(photo_bytes):
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes)).save(buffer, format="PNG")
    with pytest.raises(ImageRejected, match="undecodable"):
        prepare_image(buffer.getvalue()[:-5000])


def test_corrupt_tables_are_rejected_without_verify_decode(photo_bytes):
    # A Huffman table whose code counts sum past 256 (T.81 B.2.4.2): the marker structure is
    # intact, libjpeg refuses it on decoding, and so does the walk of every JPEG passed through.
    table = photo_bytes.index(b"\xff\xc4")
    broken = photo_bytes[: table + 5] + b"\xff" * 16 + photo_bytes[table + 21 :]
    for verify_decode in (False, True):
        with pytest.raises(ImageRejected, match="Huffman table"):
            prepare_image(broken, verify_decode=verify_decode)


# -- every image written decodes in TensorFlow (issue 19, item 4) ---------------------------
def tf_decodes(data: bytes) -> bool:
    try:
        tf.io.decode_jpeg(data, channels=3)
    except tf.errors.InvalidArgumentError:
        return False
    return True


def random_bytes_inside(jpeg: bytes) -> bytes:
    """``jpeg`` with 256 random bytes written over the middle of its image data, the first
    such damage (by seed) that TensorFlow cannot decode; most damage only grays part of it."""
    middle = len(jpeg) // 2
    for seed in range(100):
        damaged = jpeg[:middle] + random.Random(seed).randbytes(256) + jpeg[middle + 256 :]
        if not tf_decodes(damaged):
            return damaged
    raise AssertionError("no damage that TensorFlow refuses in 100 seeds")


@pytest.mark.parametrize("case, reason", [
    ("header_claims_30000x30000", "too large for TensorFlow's JPEG decoder"),
    ("real_30000x30000", "too large for TensorFlow's JPEG decoder"),
    ("random_bytes_inside", "corrupt JPEG"),
])
def test_jpegs_tensorflow_cannot_decode_are_rejected_by_default(photo_bytes, ingest_helpers,
                                                                 case, reason):
    data = {
        "header_claims_30000x30000": lambda: ingest_helpers.with_frame_size(photo_bytes, 30000,
                                                                            30000),
        "real_30000x30000": lambda: ingest_helpers.flat_jpeg(30000, 30000),
        "random_bytes_inside": lambda: random_bytes_inside(photo_bytes),
    }[case]()
    assert not tf_decodes(data)
    with pytest.raises(ImageRejected, match=reason):
        prepare_image(data)


def test_an_image_too_wide_for_jpeg_is_rejected_not_a_crash():
    wide = Image.new("RGB", (70_000, 1), (10, 20, 30))  # JPEG holds at most 65535 a side
    buffer = io.BytesIO()
    wide.save(buffer, format="PNG")
    with pytest.raises(ImageRejected, match="cannot re-encode the 70000x1 image"):
        prepare_image(buffer.getvalue())


# -- conversions keep the picture (issue 19, item 3) ---------------------------------------
def pixels(data: bytes) -> np.ndarray:
    """The picture as TensorFlow reads the file, as training does: (H, W, 3) ints."""
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy().astype(int)


def assert_same_picture(source: bytes, prepared, max_mean_difference: float = 4.0) -> None:
    expected, written = pixels(source), pixels(prepared.encoded)
    assert written.shape == expected.shape == (prepared.height, prepared.width, 3)
    # Re-encoding (JPEG at quality 95, chroma at half resolution) moves pixels by one to three
    # levels on average, more on a dithered palette; a wrong conversion (clipped 16-bit
    # samples, lost palette colours, CMYK inverted) moves them by tens.
    assert np.abs(written - expected).mean() < max_mean_difference
    assert np.abs(written.mean(axis=(0, 1)) - expected.mean(axis=(0, 1))).max() < 1.5


@pytest.fixture(scope="module")
def photo(photo_bytes) -> Image.Image:
    return Image.open(io.BytesIO(photo_bytes)).convert("RGB")


def _encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def test_a_16_bit_grayscale_png_keeps_its_picture(photo):
    samples = np.asarray(photo.convert("L"), dtype=np.uint16) * 257  # (H, W), 0..65535
    source = _encoded(Image.fromarray(samples), "PNG")
    assert Image.open(io.BytesIO(source)).mode == "I;16"
    prepared = prepare_image(source)
    assert "I;16" in prepared.fix
    assert pixels(prepared.encoded).mean() == pytest.approx(samples.mean() / 257, abs=1.5)
    assert_same_picture(source, prepared)


def test_a_palette_png_keeps_its_colours(photo):
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    source = _encoded(palette, "PNG", transparency=0)  # one palette entry transparent
    prepared = prepare_image(source)
    assert "(P)" in prepared.fix
    assert_same_picture(source, prepared)


def test_alpha_is_dropped_and_the_colour_under_it_kept(photo):
    alpha = Image.linear_gradient("L").resize(photo.size)  # 0 (transparent) to 255 (opaque)
    rgba = photo.copy()
    rgba.putalpha(alpha)
    source = _encoded(rgba, "PNG")
    prepared = prepare_image(source)
    assert "(RGBA)" in prepared.fix
    assert_same_picture(source, prepared)  # what tf.io.decode_png(channels=3) reads


@pytest.mark.parametrize("adobe_marker", [True, False])
def test_a_cmyk_jpeg_keeps_its_picture(photo, ingest_helpers, adobe_marker):
    source = _encoded(photo.convert("CMYK"), "JPEG", quality=95)
    if not adobe_marker:  # plain CMYK: libjpeg inverts only when the Adobe APP14 marker says
        source = ingest_helpers.without_segments(source, 0xEE)
    assert (b"Adobe" in source) == adobe_marker
    prepared = prepare_image(source)
    assert "CMYK" in prepared.fix
    assert_same_picture(source, prepared)


def test_a_large_progressive_jpeg_is_decoded_once_and_passes_through():
    """Over 65538 blocks of a component between DC resets: only a decode shows whether the
    running DC sum overflows (jdphuff.c), so this one is decoded (at 1/8 scale), then kept."""
    noise = np.random.default_rng(0).integers(0, 256, (66, 66, 3), dtype=np.uint8)
    source = _encoded(Image.fromarray(noise).resize((2100, 2100)), "JPEG", quality=80,
                      progressive=True)
    from edgeline.components.ingest import jpeg

    assert jpeg.inspect(source).needs_decode
    prepared = prepare_image(source)
    assert prepared.encoded is source and (prepared.width, prepared.height) == (2100, 2100)

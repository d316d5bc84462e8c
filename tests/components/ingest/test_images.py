"""Content checks: what the bytes are decides, never the file name."""

from __future__ import annotations

import io

import pytest
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


def test_verify_decode_finds_corrupt_data_that_the_header_walk_cannot(photo_bytes):
    # A Huffman table whose code counts sum past 256 (T.81 B.2.4.2): the marker structure is
    # intact, so the header walk passes it; libjpeg refuses it on decoding.
    table = photo_bytes.index(b"\xff\xc4")
    broken = photo_bytes[: table + 5] + b"\xff" * 16 + photo_bytes[table + 21 :]
    assert prepare_image(broken).encoded == broken
    with pytest.raises(ImageRejected, match="undecodable"):
        prepare_image(broken, verify_decode=True)

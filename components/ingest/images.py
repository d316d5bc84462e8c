"""Content checks and fixes for image files, by what the bytes are, not by their names.

ImageNet is known to hold CMYK JPEGs, a PNG saved as ``.JPEG`` and grayscale JPEGs (the
tfds builder fixes a hard-coded list of 23 names). Here every file is looked at:

* a JPEG with three 8-bit components in Huffman coding (baseline, extended or progressive,
  SOF0/1/2) that TensorFlow decodes passes through **byte for byte**, its size read from the
  frame header;
* grayscale (1 component) and CMYK/YCCK (4 components) JPEGs, other JPEG codings, and any
  other format Pillow reads (PNG, GIF, BMP, TIFF, WebP) are decoded and re-encoded as an
  RGB JPEG;
* empty files, files that are no image, truncated or undecodable images are rejected with
  a reason.

Every image written decodes in TensorFlow. A JPEG passed through is walked segment by segment
to its end-of-image marker by :mod:`~edgeline.components.ingest.jpeg`, which refuses what
libjpeg-turbo (the decoder behind ``tf.io.decode_jpeg``) would stop at, and what is over
TensorFlow's decoded-size limit; only the rare file that the walk cannot settle is decoded
(at 1/8 scale). A re-encoded JPEG comes out of Pillow's encoder and gets the same walk. The
walk reads no image data, so it cannot see damage that libjpeg only warns about (it fills
that part with gray): neither can a decode. ``verify_decode=True`` also decodes every
passed-through JPEG in full with Pillow's libjpeg-turbo, at the cost of a full decode each.

Conversions keep the picture as TensorFlow reads the source (``tf.io.decode_png`` or
``decode_jpeg`` with ``channels=3``, and Keras' ``load_img``):

* 16-bit samples (PNG, TIFF) are scaled to 8 bits (``v * 255 / 65535``, rounded); Pillow's
  own conversion clips them at 255, which turns most of a 16-bit picture white;
* a palette image takes its palette's colours;
* alpha is dropped and the colour under it kept, as ``decode_png(channels=3)`` strips it and
  Keras' ``load_img`` (Pillow's ``convert("RGB")``) and tfds' ``png_to_jpeg`` drop it;
* a CMYK JPEG is inverted (Adobe's convention) only when its Adobe APP14 marker says so, as
  libjpeg and TensorFlow read it; Pillow assumes Adobe's convention for every CMYK JPEG.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

from edgeline.components.ingest import jpeg
from edgeline.components.ingest.jpeg import JpegFrame

JPEG_SOI = b"\xff\xd8\xff"
# Codings every libjpeg decodes (tf.io.decode_jpeg included): baseline, extended, progressive.
PASS_THROUGH_SOF = jpeg.HUFFMAN_8BIT_SOF
# Pillow's modes of 16-bit (and 32-bit integer) samples; 16-bit PNG and TIFF open as I;16.
WIDE_INTEGER_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})

# The walk of the decode guarantee, looked up at each call so that benchmarks/bench_ingest.py
# can time the pipeline with the header-only walk (the bytes-only work) in its place.
inspect_jpeg = jpeg.inspect


class ImageRejected(Exception):
    """The file cannot become a training image; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    encoded: bytes  # an RGB JPEG
    height: int
    width: int
    fix: str | None  # what was done to it, None when it passed through unchanged


def read_jpeg_header(data: bytes) -> JpegFrame:
    """The frame header from a walk up to the first scan (ITU-T T.81, Annex B); raises
    :class:`ImageRejected` when the structure is broken or the file ends early."""
    try:
        return jpeg.read_frame(data)
    except jpeg.JpegRefused as err:
        raise ImageRejected(str(err)) from None


def _decode_with_pillow(data: bytes, *, eighth_scale: bool = False):
    """Decode fully with Pillow; any failure becomes a rejection with Pillow's reason.

    ``eighth_scale`` decodes with libjpeg's 1/8 DCT scaling (``draft``), which still reads and
    Huffman-decodes every scan but computes one pixel per block: the check of
    :attr:`jpeg.JpegLayout.needs_decode`, for images TensorFlow's size limit allows even where
    Pillow's decompression-bomb warning would fire."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if eighth_scale else "error",
                                  Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format or "unknown"
            if eighth_scale:
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except UnidentifiedImageError:
        raise ImageRejected("not an image (content matches no known image format)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise ImageRejected(f"image too large to decode safely: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageRejected(f"undecodable image: {err}") from None
    return image, image_format


def _to_rgb(image, image_format: str):
    """``image`` as 8-bit RGB, keeping the picture (see the module docstring)."""
    from PIL import Image, ImageChops

    mode = image.mode
    if mode in WIDE_INTEGER_MODES:
        import numpy as np

        samples = np.asarray(image)  # (H, W) uint16 or int32
        low, high = int(samples.min()), int(samples.max())
        if low < 0 or high > 65535:
            raise ImageRejected(f"{mode} image with samples in [{low}, {high}]: no 16-bit range "
                                "to scale to 8 bits")
        gray = (samples.astype(np.uint32) * 255 + 32767) // 65535  # (H, W), rounded
        return Image.fromarray(gray.astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        raise ImageRejected("floating-point image (mode F): no range to scale to 8 bits")
    if mode == "CMYK" and image_format == "JPEG" and "adobe" not in image.info:
        # Pillow read it as Adobe's inverted CMYK ("CMYK;I"); without the Adobe marker the
        # samples are plain CMYK, as libjpeg (and so TensorFlow) reads them.
        image = ImageChops.invert(image)
    if mode in ("P", "PA"):
        image = image.convert("RGBA")  # the palette's colours (and its transparency, dropped)
    try:
        return image.convert("RGB")
    except ValueError as err:
        raise ImageRejected(f"cannot convert a {mode} image to RGB: {err}") from None


def _reencode(image, image_format: str, quality: int) -> bytes:
    """RGB JPEG bytes that TensorFlow decodes (walked as any passed-through JPEG is)."""
    buffer = io.BytesIO()
    try:
        _to_rgb(image, image_format).save(buffer, format="JPEG", quality=quality)
    except (OSError, ValueError) as err:  # e.g. over JPEG's 65535 pixels a side
        raise ImageRejected(f"cannot re-encode the {image.width}x{image.height} image as "
                            f"JPEG: {err}") from None
    encoded = buffer.getvalue()
    layout = _walk(encoded)
    _check_size(layout.frame)
    if layout.needs_decode:  # never for Pillow's baseline output; kept for the guarantee
        _decode_with_pillow(encoded, eighth_scale=True)
    return encoded


def _walk(data: bytes) -> jpeg.JpegLayout:
    try:
        return inspect_jpeg(data)
    except jpeg.JpegRefused as err:
        raise ImageRejected(str(err)) from None


def _check_size(frame: JpegFrame) -> None:
    if frame.decoded_bytes >= jpeg.TF_MAX_DECODED_BYTES:
        raise ImageRejected(
            f"image too large for TensorFlow's JPEG decoder: {frame.width}x{frame.height}x"
            f"{frame.components} is {frame.decoded_bytes} bytes decoded, the limit is "
            f"{jpeg.TF_MAX_DECODED_BYTES - 1} (tensorflow/core/lib/jpeg/jpeg_mem.cc)")


def _fix(data: bytes, what: str, quality: int) -> PreparedImage:
    image, image_format = _decode_with_pillow(data)
    fix = what.format(format=image_format, mode=image.mode)
    encoded = _reencode(image, image_format, quality)
    return PreparedImage(encoded, image.height, image.width, fix)


def prepare_image(data: bytes, *, quality: int = 95, verify_decode: bool = False) -> PreparedImage:
    """The JPEG to store for ``data``, or :class:`ImageRejected` with the reason."""
    if not data:
        raise ImageRejected("empty file")
    if not data.startswith(JPEG_SOI):
        if data[:2] == b"\xff\xd8":
            raise ImageRejected("corrupt JPEG (no marker after start-of-image)")
        return _fix(data, "{format} image ({mode}) re-encoded as RGB JPEG", quality)
    layout = _walk(data)
    header = layout.frame
    if header.precision != 8 or header.sof_marker not in PASS_THROUGH_SOF:
        return _fix(
            data,
            f"JPEG with coding SOF{header.sof_marker - 0xC0} and {header.precision}-bit samples "
            "re-encoded as baseline RGB JPEG",
            quality,
        )
    if header.components == 1:
        return _fix(data, "grayscale JPEG re-encoded as 3-channel RGB JPEG", quality)
    if header.components == 4:
        return _fix(data, "4-channel ({mode}) JPEG re-encoded as RGB JPEG", quality)
    if header.components != 3:
        return _fix(data, f"{header.components}-component JPEG re-encoded as RGB JPEG", quality)
    _check_size(header)
    if verify_decode:
        image, _ = _decode_with_pillow(data)
        if image.size != (header.width, header.height):
            raise ImageRejected("corrupt JPEG (decoded size differs from its frame header)")
    elif layout.needs_decode:
        _decode_with_pillow(data, eighth_scale=True)
    return PreparedImage(data, header.height, header.width, None)

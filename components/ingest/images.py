"""Content checks and fixes for image files, by what the bytes are, not by their names.

ImageNet is known to hold CMYK JPEGs, a PNG saved as ``.JPEG`` and grayscale JPEGs (the
tfds builder fixes a hard-coded list of 23 names). Here every file is looked at:

* a JPEG with three 8-bit components in Huffman coding (baseline, extended or progressive,
  SOF0/1/2) is complete when an end-of-image marker follows its first scan; it passes
  through **byte for byte**, its size read from the frame header, with no decode;
* grayscale (1 component) and CMYK/YCCK (4 components) JPEGs, other JPEG codings, and any
  other format Pillow reads (PNG, GIF, BMP, TIFF, WebP) are decoded and re-encoded as an
  RGB JPEG;
* empty files, files that are no image, truncated or undecodable images are rejected with
  a reason.

Without decoding, damage inside a complete-looking JPEG (a bad Huffman table, garbled
image data) goes unseen. ``verify_decode=True`` also decodes every passed-through JPEG, at
the cost of a full decode each, and rejects what libjpeg refuses; libjpeg only warns about
some damage in the image data (and fills it with gray), which no decoder-based check sees.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

JPEG_SOI = b"\xff\xd8\xff"
EOI = b"\xff\xd9"
SOS = 0xDA
# Start-of-frame markers: SOF0..SOF15 minus DHT (C4), JPG (C8) and DAC (CC).
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Codings every libjpeg decodes (tf.io.decode_jpeg included): baseline, extended, progressive.
PASS_THROUGH_SOF = frozenset({0xC0, 0xC1, 0xC2})
# Markers without a length field: TEM and RST0..RST7.
STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


class ImageRejected(Exception):
    """The file cannot become a training image; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class JpegHeader:
    sof_marker: int
    precision: int  # bits per sample
    height: int
    width: int
    components: int


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    encoded: bytes  # an RGB JPEG
    height: int
    width: int
    fix: str | None  # what was done to it, None when it passed through unchanged


def read_jpeg_header(data: bytes) -> JpegHeader:
    """Walk the marker segments from SOI to the first scan (ITU-T T.81, Annex B).

    Raises :class:`ImageRejected` when the structure is broken or the file ends early.
    """
    if not data.startswith(JPEG_SOI):
        raise ImageRejected("not a JPEG (no start-of-image marker)")
    header = None
    position = 2
    size = len(data)
    while True:
        if position >= size:
            raise ImageRejected("truncated JPEG (ends inside its header)")
        if data[position] != 0xFF:
            raise ImageRejected(f"corrupt JPEG (no marker at byte {position})")
        while position < size and data[position] == 0xFF:  # fill bytes
            position += 1
        if position >= size:
            raise ImageRejected("truncated JPEG (ends inside its header)")
        marker = data[position]
        position += 1
        if marker in STANDALONE_MARKERS:
            continue
        if marker == 0xD9:
            raise ImageRejected("corrupt JPEG (end-of-image marker before any scan)")
        if position + 2 > size:
            raise ImageRejected("truncated JPEG (ends inside its header)")
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2 or position + length > size:
            raise ImageRejected("truncated JPEG (a header segment runs past the end)")
        if marker in SOF_MARKERS:
            if length < 8:
                raise ImageRejected("corrupt JPEG (short frame header)")
            precision = data[position + 2]
            height = int.from_bytes(data[position + 3 : position + 5], "big")
            width = int.from_bytes(data[position + 5 : position + 7], "big")
            header = JpegHeader(marker, precision, height, width, data[position + 7])
        position += length
        if marker == SOS:
            break
    if header is None:
        raise ImageRejected("corrupt JPEG (no frame header before the first scan)")
    if header.width == 0 or header.height == 0:
        raise ImageRejected(f"corrupt JPEG (frame size {header.width}x{header.height})")
    # In entropy-coded data a 0xFF byte is always followed by 0x00 or RSTn, so FFD9 after the
    # first scan can only be the end-of-image marker: without it the file was cut short.
    if not data.endswith(EOI) and data.rfind(EOI, position) < 0:
        raise ImageRejected("truncated JPEG (no end-of-image marker after the image data)")
    return header


def _decode_with_pillow(data: bytes):
    """Decode fully with Pillow; any failure becomes a rejection with Pillow's reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format or "unknown"
            image.load()
    except UnidentifiedImageError:
        raise ImageRejected("not an image (content matches no known image format)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise ImageRejected(f"image too large to decode safely: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageRejected(f"undecodable image: {err}") from None
    return image, image_format


def _reencode(image, quality: int) -> bytes:
    """RGB JPEG bytes; alpha is dropped, as tfds' png_to_jpeg does for ImageNet's PNG."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _fix(data: bytes, what: str, quality: int) -> PreparedImage:
    image, image_format = _decode_with_pillow(data)
    fix = what.format(format=image_format, mode=image.mode)
    return PreparedImage(_reencode(image, quality), image.height, image.width, fix)


def prepare_image(data: bytes, *, quality: int = 95, verify_decode: bool = False) -> PreparedImage:
    """The JPEG to store for ``data``, or :class:`ImageRejected` with the reason."""
    if not data:
        raise ImageRejected("empty file")
    if not data.startswith(JPEG_SOI):
        if data[:2] == b"\xff\xd8":
            raise ImageRejected("corrupt JPEG (no marker after start-of-image)")
        return _fix(data, "{format} image ({mode}) re-encoded as RGB JPEG", quality)
    header = read_jpeg_header(data)
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
    if verify_decode:
        image, _ = _decode_with_pillow(data)
        if image.size != (header.width, header.height):
            raise ImageRejected("corrupt JPEG (decoded size differs from its frame header)")
    return PreparedImage(data, header.height, header.width, None)

"""The JPEG walk against TensorFlow's decoder itself: what it passes, TensorFlow decodes."""

from __future__ import annotations

import io
import random

import pytest
import tensorflow as tf
from PIL import Image

from edgeline.components.ingest import jpeg


def tf_decodes(data: bytes) -> bool:
    try:
        tf.io.decode_jpeg(data, channels=3)
    except (tf.errors.InvalidArgumentError, tf.errors.ResourceExhaustedError):
        return False
    return True


@pytest.fixture(scope="module")
def codings(shared_data) -> dict[str, bytes]:
    """One real photo coded the ways TensorFlow decodes: baseline, progressive, optimized
    tables, 4:4:4, restart markers."""
    photo = Image.open(shared_data / "imagenet_sample/train/n01440764/n01440764_tench.JPEG")
    photo = photo.resize((250, 188))
    options = {"baseline": {}, "progressive": {"progressive": True},
               "optimized_444": {"optimize": True, "subsampling": 0},
               "restarts": {"restart_marker_blocks": 5}}
    coded = {}
    for name, settings in options.items():
        buffer = io.BytesIO()
        photo.save(buffer, format="JPEG", quality=85, **settings)
        coded[name] = buffer.getvalue()
    return coded


def _damaged(data: bytes, rng: random.Random) -> bytes:
    """Random bytes written over, or put into, the file (its header half of the time), or the
    file cut short with an end-of-image marker put back."""
    header = data.index(b"\xff\xda") + 14
    position = rng.randrange(2, header if rng.random() < 0.5 else len(data) - 2)
    junk = rng.randbytes(rng.choice((1, 2, 8, 64, 256)))
    kind = rng.choice(("overwrite", "insert", "cut"))
    if kind == "overwrite":
        return data[:position] + junk + data[position + len(junk):]
    if kind == "insert":
        return data[:position] + junk + data[position:]
    return data[:position] + b"\xff\xd9"


def test_what_the_walk_passes_tensorflow_decodes(codings):
    """The decode guarantee, tried on 400 damaged files: none that the walk passes fails in
    tf.io.decode_jpeg, and most that TensorFlow refuses, the walk refuses too (the walk is
    stricter only in the two places its module docstring names)."""
    rng = random.Random(19)
    outcomes = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for coded in codings.values():
        assert jpeg.inspect(coded).scans >= 1 and tf_decodes(coded)
        for _ in range(100):
            damaged = _damaged(coded, rng)
            try:
                jpeg.inspect(damaged)
                passed = True
            except jpeg.JpegRefused:
                passed = False
            outcomes[passed, tf_decodes(damaged)] += 1
    assert outcomes[True, False] == 0, outcomes  # passed by the walk, refused by TensorFlow
    assert outcomes[False, False] >= 50 and outcomes[True, True] >= 150, outcomes
    assert outcomes[False, True] <= 20, outcomes


@pytest.mark.parametrize("damage, reason", [
    # Code counts summing past 256 (T.81 B.2.4.2): jdmarker.c get_dht stops.
    (lambda d, dht: d[: dht + 5] + b"\xff" * 16 + d[dht + 21 :], "Huffman table of 4080 codes"),
    # Two codes of 1 bit use up the code space (canonical codes, T.81 C.2): the same number of
    # codes, so the segment's length still agrees.
    (lambda d, dht: d[: dht + 5] + bytes([2, 0, sum(d[dht + 5 : dht + 21]) - 2, *[0] * 13])
     + d[dht + 21 :], "too many codes of 1 bits"),
    # Table index 5: jdmarker.c get_dht allows 0..3.
    (lambda d, dht: d[: dht + 4] + b"\x05" + d[dht + 5 :], "Huffman table index 5"),
])
def test_huffman_tables_libjpeg_refuses_are_refused(codings, damage, reason):
    baseline = codings["baseline"]
    broken = damage(baseline, baseline.index(b"\xff\xc4"))
    assert not tf_decodes(broken)
    with pytest.raises(jpeg.JpegRefused, match=reason):
        jpeg.inspect(broken)


def test_a_marker_formed_inside_the_image_data_is_read_as_libjpeg_reads_it(codings):
    """0xFF 0x37 in the entropy-coded data ends the scan for libjpeg, which then stops at the
    reserved marker; 0xFF 0x00 is a stuffed zero and changes nothing structurally."""
    baseline = codings["baseline"]
    middle = len(baseline) // 2
    reserved = baseline[:middle] + b"\xff\x37" + baseline[middle:]
    stuffed = baseline[:middle] + b"\xff\x00" + baseline[middle:]
    assert not tf_decodes(reserved) and tf_decodes(stuffed)
    with pytest.raises(jpeg.JpegRefused, match="unknown marker 0x37"):
        jpeg.inspect(reserved)
    assert jpeg.inspect(stuffed).scans == 1


def test_only_a_large_progressive_image_needs_a_decode(codings, ingest_helpers):
    progressive = codings["progressive"]
    assert not jpeg.inspect(progressive).needs_decode
    # 3000x3000 pixels: over 65537 blocks of one component between two DC resets.
    large = ingest_helpers.with_frame_size(progressive, 3000, 3000)
    assert jpeg.inspect(large).needs_decode
    assert not jpeg.inspect(ingest_helpers.with_frame_size(codings["baseline"], 3000, 3000)
                             ).needs_decode


def test_the_size_tensorflow_refuses_is_read_from_the_frame(ingest_helpers):
    small = ingest_helpers.flat_jpeg(48, 32)
    assert tf.reduce_all(tf.io.decode_jpeg(small, channels=3) == 128)  # a real JPEG
    large = ingest_helpers.flat_jpeg(30000, 30000)
    assert not tf_decodes(large)  # jpeg_mem.cc: "Image too large", before any decoding
    frame = jpeg.inspect(large).frame
    assert frame.decoded_bytes == 30000 * 30000 * 3 >= jpeg.TF_MAX_DECODED_BYTES

"""Whether TensorFlow decodes a JPEG, decided from its marker structure, without decoding it.

``tf.io.decode_jpeg``, ``decode_image`` and ``decode_and_crop_jpeg`` are libjpeg-turbo 2.1.4
behind tensorflow/core/lib/jpeg/jpeg_mem.cc. They refuse a file for one of three reasons:

1. its size: jpeg_mem.cc refuses an image of ``height * width * components >= 2**29`` bytes
   before decoding it ("Image too large"), and libjpeg one wider or taller than 65500
   (JPEG_MAX_DIMENSION);
2. the data runs out: jpeg_mem.cc's memory source fails with "Input file read error" when
   libjpeg asks for a byte past the end (no end-of-image marker, a segment longer than the
   file);
3. a fatal libjpeg error. In the decompressor these come from the marker reader and from scan
   set-up only (jdmarker.c, jdinput.c, jdhuff.c ``jpeg_make_d_derived_tbl``, jdphuff.c
   ``start_pass_phuff_decoder``, jdsample.c): a marker it does not know, a second SOI or
   frame header, a segment whose length disagrees with its content (SOF, DHT, DQT, DRI, DAC,
   SOS), a table index out of range, a Huffman table whose codes overflow their lengths or
   a DC table with a symbol over 15, a scan naming a component, Huffman table or quantization
   table that does not exist, progression parameters out of range, more than 10 blocks in an
   MCU, sampling factors that do not divide the largest, a second scan in a single-scan image.

Damage inside entropy-coded data only raises warnings (jdhuff.c: JWRN_HUFF_BAD_CODE,
JWRN_HIT_MARKER): libjpeg fills the rest of the scan with gray and the decode succeeds, unless
the damage forms a marker, which libjpeg then reads as one. So :func:`inspect` walks every
segment up to the end-of-image marker, finds the end of each scan the way libjpeg's entropy
decoder does (ITU-T T.81, B.1.1.5 and F.1.2.3: 0xFF00 is a stuffed zero byte, RSTn markers
belong to the scan, 0xFF fill bytes may precede a marker), and applies the checks above in
libjpeg's order. It costs a search for 0xFF bytes through the data: no Huffman decoding.

One fatal error does come from entropy decoding: jdphuff.c ``decode_mcu_DC_first`` stops with
JERR_BAD_DCT_COEF when the running DC value overflows an int, which needs more than
:data:`DC_SUM_SAFE_BLOCKS` (65538) blocks of one component between restarts in a progressive
DC scan (each DC difference is under 2**15). Only such files (progressive, over 4 megapixels,
few restart markers) get a decode: :attr:`JpegLayout.needs_decode`.

The walk is stricter than libjpeg in two places, both in damaged files: a segment length under
2 (libjpeg skips nothing and reads on), and a reserved marker code (0x02-0xBF) inside a scan
with restart markers, which libjpeg skips while it looks for the next restart marker
(jdmarker.c jpeg_resync_to_restart) when one follows, and stops at otherwise; telling the two
apart needs the MCU count, so the walk refuses both.
"""

from __future__ import annotations

import dataclasses
import functools
import re

SOI, EOI, SOS, DHT, DQT, DRI, DAC, DNL, COM, TEM = (
    0xD8, 0xD9, 0xDA, 0xC4, 0xDB, 0xDD, 0xCC, 0xDC, 0xFE, 0x01)
# Start-of-frame markers: SOF0..SOF15 minus DHT (C4), JPG (C8) and DAC (CC) (T.81, Table B.1).
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {DHT, 0xC8, DAC}
PROGRESSIVE_HUFFMAN = 0xC2
# Frames whose scans this module checks in full: 8-bit Huffman-coded, baseline, extended or
# progressive, the codings tf.io.decode_jpeg decodes. Other frames are walked for structure.
HUFFMAN_8BIT_SOF = frozenset({0xC0, 0xC1, PROGRESSIVE_HUFFMAN})
# Markers without a length field: TEM and RST0..RST7.
STANDALONE_MARKERS = frozenset({TEM, *range(0xD0, 0xD8)})
# Markers libjpeg skips by their length: APP0..APP15, COM, DNL.
SKIPPED_MARKERS = frozenset({*range(0xE0, 0xF0), COM, DNL})
# Markers with a length that jdmarker.c read_markers handles; any other code stops it.
KNOWN_MARKERS = SOF_MARKERS | SKIPPED_MARKERS | {DHT, DQT, DRI, DAC, SOS}

TF_MAX_DECODED_BYTES = 1 << 29  # jpeg_mem.cc: "Image too large" at height * width * components
JPEG_MAX_DIMENSION = 65500  # jmorecfg.h
MAX_BLOCKS_IN_MCU = 10  # D_MAX_BLOCKS_IN_MCU, jpeglib.h
# A DC difference is at most 2**15 - 1 (category 15), so an int (jdphuff.c) holds the running
# sum of this many of them at least.
DC_SUM_SAFE_BLOCKS = (2**31 - 1) // (2**15 - 1)

# The next marker: 0xFF followed by a byte that is neither a stuffed zero, a fill byte nor a
# restart marker (which libjpeg's decoder takes in its stride). A literal first byte lets the
# regex engine skip from 0xFF to 0xFF at C speed.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDARD_TABLE = "standard"  # jstdhuff.c: tables 0 and 1, set when a sequential decode starts


class JpegRefused(ValueError):
    """The JPEG is not one TensorFlow decodes; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class JpegFrame:
    sof_marker: int
    precision: int  # bits per sample
    height: int
    width: int
    components: int

    @property
    def decoded_bytes(self) -> int:
        """What jpeg_mem.cc compares with 2**29 before it decodes."""
        return self.height * self.width * self.components


@dataclasses.dataclass(frozen=True)
class JpegLayout:
    frame: JpegFrame
    scans: int
    needs_decode: bool  # only a decode can tell (a large progressive DC scan, see above)


def read_frame(data: bytes) -> JpegFrame:
    """The frame header, from a walk up to the first scan only (the old bytes-only check:
    the size without reading the image data); the file must hold an end-of-image marker."""
    return _Walk(data, whole_file=False).run().frame


def inspect(data: bytes) -> JpegLayout:
    """Walk every segment of ``data`` as libjpeg-turbo reads it when decoding; raise
    :class:`JpegRefused` with the reason for anything that stops libjpeg. Scans are checked
    in full for 8-bit Huffman frames; other frames only for their structure."""
    return _Walk(data, whole_file=True).run()


@functools.lru_cache(maxsize=512)
def huffman_table_problem(counts: bytes, symbols: bytes, is_dc: bool) -> str | None:
    """jdhuff.c jpeg_make_d_derived_tbl: canonical codes (T.81, C.2) are assigned length by
    length; at each length the next free code must still fit, and no code may be all ones.
    A DC table's symbols are difference categories, at most 15 at 8 bits (F.1.2.1)."""
    code = 0
    lengths = [length for length in range(1, 17) if counts[length - 1]]
    for length in range(lengths[0], lengths[-1] + 1) if lengths else ():
        code += counts[length - 1]
        if code >= 1 << length:
            return f"corrupt JPEG (Huffman table with too many codes of {length} bits)"
        code <<= 1
    if is_dc and symbols and max(symbols) > 15:
        return f"corrupt JPEG (DC Huffman table with symbol {max(symbols)}, at most 15)"
    return None


class _Walk:
    """The state libjpeg keeps while it reads markers: frame, tables, scans."""

    def __init__(self, data: bytes, *, whole_file: bool):
        self.data = data
        self.whole_file = whole_file
        self.frame: JpegFrame | None = None
        self.components: list[tuple[int, int, int, int]] = []  # (id, h, v, quant table)
        self.checked = False  # whether scans are checked (an 8-bit Huffman frame)
        self.dc_tables: dict[int, object] = {}  # slot -> (counts, symbols) or standard
        self.ac_tables: dict[int, object] = {}
        self.quant_tables: set[int] = set()
        self.latched: set[int] = set()  # components whose quantization table is fixed
        self.scans = 0
        self.multiple_scans = False
        self.restart_interval = 0
        self.needs_decode = False

    # -- the walk ---------------------------------------------------------------------------
    def run(self) -> JpegLayout:
        data = self.data
        size = len(data)
        if data[:2] != b"\xff\xd8":
            raise JpegRefused("not a JPEG (no start-of-image marker)")
        position = 2
        search = _NEXT_MARKER.search
        while True:
            # libjpeg's next_marker skips anything up to 0xFF followed by a marker code, with a
            # warning; inside a scan that is the entropy-coded data (RSTn markers included).
            found = search(data, position)
            if found is None:
                if not self.scans:
                    raise JpegRefused("truncated JPEG (ends inside its header)")
                raise JpegRefused("truncated JPEG (no end-of-image marker after the image data)")
            position = found.end()
            marker = data[position - 1]
            if marker in STANDALONE_MARKERS:
                continue
            if marker == EOI:
                if not self.scans:
                    raise JpegRefused("corrupt JPEG (end-of-image marker before any scan)")
                return JpegLayout(self.frame, self.scans, self.needs_decode)
            if marker == SOI:
                raise JpegRefused(
                    f"corrupt JPEG (a second start-of-image marker at byte {position - 2})")
            if marker not in KNOWN_MARKERS:  # DHP, EXP, JPG, JPGn, RESn: read_markers stops
                raise JpegRefused(f"corrupt JPEG (unknown marker 0x{marker:02X} at byte "
                                  f"{position - 2})")
            if position + 2 > size:
                raise JpegRefused("truncated JPEG (ends inside a segment header)")
            length = (data[position] << 8) | data[position + 1]
            end = position + length
            if length < 2:
                raise JpegRefused(f"corrupt JPEG (segment length {length} at byte {position})")
            if end > size:
                raise JpegRefused("truncated JPEG (a segment runs past the end of the file)")
            if not self.whole_file and marker == SOS:
                if self.frame is None:
                    raise JpegRefused("corrupt JPEG (no frame header before the first scan)")
                return self._header_only(end)
            if marker not in SKIPPED_MARKERS and (self.whole_file or marker in SOF_MARKERS):
                self._segment(marker, data[position + 2 : end], position - 2)
            position = end

    def _header_only(self, position: int) -> JpegLayout:
        # In entropy-coded data 0xFF is followed by 0x00 or RSTn, so FFD9 after the first
        # scan can only be the end-of-image marker: without it the file was cut short.
        data = self.data
        if not data.endswith(b"\xff\xd9") and data.rfind(b"\xff\xd9", position) < 0:
            raise JpegRefused("truncated JPEG (no end-of-image marker after the image data)")
        return JpegLayout(self.frame, self.scans, False)

    def _segment(self, marker: int, body: bytes, at: int) -> None:
        if marker in SOF_MARKERS:
            self._frame(marker, body, at)
        elif marker == DHT:
            self._huffman_tables(body)
        elif marker == DQT:
            self._quantization_tables(body)
        elif marker == DRI:
            if len(body) != 2:
                raise JpegRefused(f"corrupt JPEG (restart interval segment of {len(body) + 2} "
                                  "bytes, expected 4)")
            self.restart_interval = (body[0] << 8) | body[1]
        elif marker == DAC:
            self._arithmetic_conditioning(body)
        else:
            self._scan(body, at)

    # -- segments, as jdmarker.c reads them ---------------------------------------------------
    def _frame(self, marker: int, body: bytes, at: int) -> None:
        if self.frame is not None:
            raise JpegRefused(f"corrupt JPEG (a second frame header at byte {at})")
        if len(body) < 6:
            raise JpegRefused("corrupt JPEG (short frame header)")
        count = body[5]
        frame = JpegFrame(marker, body[0], (body[1] << 8) | body[2], (body[3] << 8) | body[4],
                          count)
        if frame.width == 0 or frame.height == 0 or count == 0:
            raise JpegRefused(f"corrupt JPEG (frame size {frame.width}x{frame.height}, "
                              f"{count} components)")
        if len(body) != 6 + 3 * count:
            raise JpegRefused(f"corrupt JPEG (frame header of {count} components is "
                              f"{len(body) + 2} bytes long)")
        self.frame = frame
        self.components = [(body[i], body[i + 1] >> 4, body[i + 1] & 15, body[i + 2])
                           for i in range(6, 6 + 3 * count, 3)]
        self.component_ids = bytes(body[6::3])
        self.horizontal = [c[1] for c in self.components]
        self.vertical = [c[2] for c in self.components]
        self.checked = marker in HUFFMAN_8BIT_SOF and frame.precision == 8

    def _huffman_tables(self, body: bytes) -> None:
        position, size = 0, len(body)
        while size - position > 16:
            index = body[position]
            counts = body[position + 1 : position + 17]
            count = sum(counts)
            position += 17
            if count > 256 or count > size - position:
                raise JpegRefused(f"corrupt JPEG (Huffman table of {count} codes in a segment "
                                  f"of {size + 2} bytes)")
            symbols = body[position : position + count]
            position += count
            tables = self.ac_tables if index & 0x10 else self.dc_tables
            index &= ~0x10
            if index >= 4:
                raise JpegRefused(f"corrupt JPEG (Huffman table index {index}, at most 3)")
            tables[index] = (counts, symbols)
        if position != size:
            raise JpegRefused("corrupt JPEG (Huffman table segment longer than its tables)")

    def _quantization_tables(self, body: bytes) -> None:
        position, size = 0, len(body)
        while position < size:
            precision, index = body[position] >> 4, body[position] & 15
            if index >= 4:
                raise JpegRefused(f"corrupt JPEG (quantization table index {index}, at most 3)")
            position += 1 + (128 if precision else 64)
            self.quant_tables.add(index)
        if position != size:
            raise JpegRefused("corrupt JPEG (quantization table segment length disagrees with "
                              "its tables)")

    def _arithmetic_conditioning(self, body: bytes) -> None:
        if len(body) % 2:
            raise JpegRefused("corrupt JPEG (arithmetic conditioning segment of odd length)")
        for position in range(0, len(body), 2):
            index, value = body[position], body[position + 1]
            if index >= 32 or (index < 16 and (value & 15) > (value >> 4)):
                raise JpegRefused(f"corrupt JPEG (arithmetic conditioning {index}={value})")

    def _scan(self, body: bytes, at: int) -> None:
        if self.frame is None:
            raise JpegRefused("corrupt JPEG (no frame header before the first scan)")
        count = body[0] if body else 0
        if len(body) != 4 + 2 * count or not 1 <= count <= 4:
            raise JpegRefused(f"corrupt JPEG (scan header of {count} components is "
                              f"{len(body) + 2} bytes long)")
        self.scans += 1
        if not self.checked:
            return
        members = self._scan_components(body, count)
        if self.scans == 1:
            self._first_scan(count)
        elif not self.multiple_scans:
            raise JpegRefused(f"corrupt JPEG (a second scan at byte {at} in an image coded "
                              "in one scan)")
        if count > 1 and sum(self.components[c][1] * self.components[c][2]
                             for c, _, _ in members) > MAX_BLOCKS_IN_MCU:
            raise JpegRefused(f"corrupt JPEG (more than {MAX_BLOCKS_IN_MCU} blocks in an MCU)")
        for component, _, _ in members:  # jdinput.c latch_quant_tables
            if component not in self.latched:
                table = self.components[component][3]
                if table not in self.quant_tables:
                    raise JpegRefused(f"corrupt JPEG (quantization table {table} is not "
                                      "defined before the scan that needs it)")
                self.latched.add(component)
        start, end, approximation = body[1 + 2 * count], body[2 + 2 * count], body[3 + 2 * count]
        if self.frame.sof_marker == PROGRESSIVE_HUFFMAN:
            self._progressive_scan(members, start, end, approximation >> 4, approximation & 15)
        else:
            for _, dc_table, ac_table in members:  # jdhuff.c start_pass_huff_decoder
                self._need_table(self.dc_tables, dc_table, True)
                self._need_table(self.ac_tables, ac_table, False)

    def _scan_components(self, body: bytes, count: int) -> list[tuple[int, int, int]]:
        """(frame index, DC table, AC table) of each scan component, matched as jdmarker.c
        get_sos does: scan slot i takes the first frame component at index >= i (of the first
        four) with that id, and no frame component twice."""
        members = []
        ids = self.component_ids[:4]
        for slot in range(count):
            component_id, tables = body[1 + 2 * slot], body[2 + 2 * slot]
            try:
                index = ids.index(component_id, slot)
            except ValueError:
                index = None
            if index is None or any(index == m[0] for m in members):
                raise JpegRefused(f"corrupt JPEG (scan names component {component_id}, which "
                                  "the frame header does not hold there)")
            members.append((index, tables >> 4, tables & 15))
        return members

    def _first_scan(self, count: int) -> None:
        """jdinput.c initial_setup, jdsample.c jinit_upsampler, jdhuff.c jinit_huff_decoder."""
        frame = self.frame
        if frame.height > JPEG_MAX_DIMENSION or frame.width > JPEG_MAX_DIMENSION:
            raise JpegRefused(f"image is {frame.width}x{frame.height}; libjpeg decodes at most "
                              f"{JPEG_MAX_DIMENSION} pixels a side")
        if frame.components > 10:
            raise JpegRefused(f"corrupt JPEG ({frame.components} components, at most 10)")
        largest_h, largest_v = max(self.horizontal), max(self.vertical)
        for h, v in zip(self.horizontal, self.vertical):
            if not (0 < h <= 4 and 0 < v <= 4) or largest_h % h or largest_v % v:
                raise JpegRefused(f"corrupt JPEG (sampling factors {h}x{v} with largest "
                                  f"{largest_h}x{largest_v})")
        progressive = frame.sof_marker == PROGRESSIVE_HUFFMAN
        self.multiple_scans = count < frame.components or progressive
        if not progressive:  # Motion-JPEG style files leave out the standard tables
            for tables in (self.dc_tables, self.ac_tables):
                tables.setdefault(0, _STANDARD_TABLE)
                tables.setdefault(1, _STANDARD_TABLE)

    def _progressive_scan(self, members, start: int, end: int, high: int, low: int) -> None:
        """jdphuff.c start_pass_phuff_decoder (T.81, G.1.1.1.1 and G.1.1.1.2)."""
        is_dc = start == 0
        bad = (end != 0) if is_dc else (start > end or end >= 64 or len(members) != 1)
        if bad or (high != 0 and low != high - 1) or low > 13:
            raise JpegRefused(f"corrupt JPEG (progressive scan Ss={start} Se={end} Ah={high} "
                              f"Al={low})")
        for component, dc_table, ac_table in members:
            if not is_dc:
                self._need_table(self.ac_tables, ac_table, False)
            elif high == 0:  # a DC refinement needs no table
                self._need_table(self.dc_tables, dc_table, True)
                if self._blocks_between_dc_resets(component, len(members)) > DC_SUM_SAFE_BLOCKS:
                    self.needs_decode = True

    def _blocks_between_dc_resets(self, component: int, count: int) -> int:
        """An upper bound on the blocks of ``component`` coded between two restarts (each
        restart resets the DC prediction, T.81 F.2.1.3.1)."""
        _, h, v, _ = self.components[component]
        frame = self.frame
        # Padding to whole MCUs adds at most one MCU row and column.
        blocks = (-(-frame.width // 8) + 4) * (-(-frame.height // 8) + 4)
        if self.restart_interval:
            blocks = min(blocks, self.restart_interval * (h * v if count > 1 else 1))
        return blocks

    def _need_table(self, tables: dict, index: int, is_dc: bool) -> None:
        table = tables.get(index)
        if table is None:
            kind = "DC" if is_dc else "AC"
            raise JpegRefused(f"corrupt JPEG (a scan uses {kind} Huffman table {index}, which "
                              "is not defined)")
        if table is not _STANDARD_TABLE:
            problem = huffman_table_problem(*table, is_dc)
            if problem:
                raise JpegRefused(problem)

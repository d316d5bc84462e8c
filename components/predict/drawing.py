"""Boxes with their label and score, drawn on a copy of the picture (PIL), as yolo predict's
annotated images are."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# Tableau 10: distinct colours, readable under white text.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
# Formats an annotated copy keeps; any other source is written as PNG.
KEPT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}


def draw_boxes(image: Image.Image,
               boxes: Sequence[tuple[Sequence[float], str, float, int]]) -> Image.Image:
    """A copy of ``image`` with each ``([x, y, w, h] in pixels, label, score, class index)``
    drawn: the box outlined in its class's colour, ``label 0.87`` on a filled tag above it."""
    annotated = image.convert("RGB")  # a copy; also makes grayscale, palette, CMYK drawable
    draw = ImageDraw.Draw(annotated)
    longest = max(annotated.size)
    line_width = max(1, round(longest / 300))
    font = ImageFont.load_default(size=max(10, round(longest / 45)))
    for (x, y, width, height), label, score, class_index in boxes:
        colour = PALETTE[class_index % len(PALETTE)]
        draw.rectangle([x, y, x + width, y + height], outline=colour, width=line_width)
        text = f"{label} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_height = bottom - top + 2 * line_width
        # Above the box when there is room, else inside its top edge.
        tag_top = y - tag_height if y - tag_height >= 0 else y
        draw.rectangle([x, tag_top, x + right - left + 2 * line_width, tag_top + tag_height],
                       fill=colour)
        draw.text((x + line_width - left, tag_top + line_width - top), text,
                  fill=(255, 255, 255), font=font)
    return annotated


def save_image(image: Image.Image, folder: Path, name: str, taken: set[str]) -> Path:
    """``image`` saved in ``folder`` under the source's name (its format kept when PIL writes
    it well, else PNG); names already ``taken`` in this run get ``_2``, ``_3``..."""
    source = Path(name)
    suffix = source.suffix.lower() if source.suffix.lower() in KEPT_FORMATS else ".png"
    candidate, count = f"{source.stem}{suffix}", 1
    while candidate in taken:
        count += 1
        candidate = f"{source.stem}_{count}{suffix}"
    taken.add(candidate)
    path = folder / candidate
    settings = {"quality": 95} if KEPT_FORMATS.get(suffix) == "JPEG" else {}
    image.save(path, format=KEPT_FORMATS.get(suffix, "PNG"), **settings)
    return path

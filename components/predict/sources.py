"""SOURCE arguments -> the image files to predict, in a stable order.

A SOURCE is an image file (taken whatever its name), a folder (every image file under it,
recursively, by extension: a folder of pictures often holds a README or an annotations file
too, which are not "given" images), or a glob pattern (``'photos/*.jpg'``, ``'**/*.png'``;
every file it matches). A SOURCE that names nothing is reported like an unreadable file, so
that predicted + skipped always equals what was given.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterable
from pathlib import Path

# What tf.io.decode_image reads (WebP since TF 2.17), in lower case.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


@dataclasses.dataclass(frozen=True)
class Given:
    """One image file to predict, or a SOURCE that names none (``missing`` says why)."""

    path: Path
    missing: str | None = None


def _folder_images(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def _one_source(source: str) -> list[Given]:
    path = Path(source)
    if path.is_file():
        return [Given(path)]
    if path.is_dir():
        images = _folder_images(path)
        return ([Given(p) for p in images] if images else
                [Given(path, f"a folder with no image file ({', '.join(IMAGE_SUFFIXES)})")])
    if glob.has_magic(source):
        matches = sorted(Path(m) for m in glob.glob(source, recursive=True))
        files = [m for m in matches if m.is_file()]
        for folder in (m for m in matches if m.is_dir()):
            files.extend(_folder_images(folder))
        return [Given(p) for p in files] or [Given(path, "the pattern matches no file")]
    return [Given(path, "no such file or directory")]


def expand_sources(sources: Iterable[str | os.PathLike]) -> list[Given]:
    """Every image the SOURCE arguments name, each once (the first time it is named)."""
    seen: set[Path] = set()
    given: list[Given] = []
    for source in sources:
        for item in _one_source(os.fspath(source)):
            key = item.path.resolve()
            if item.missing is None and key in seen:
                continue
            seen.add(key)
            given.append(item)
    return given

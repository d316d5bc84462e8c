"""What the pipeline moves around: references to input files, never their bytes.

A :class:`FileRef` says where an input's bytes are (a file, or a byte range of a tar: the
members of an uncompressed tar are stored contiguously, so a member of a per-class tar
inside ``ILSVRC2012_img_train.tar`` is just an offset and a size in the outer file). Only
these small references go through Beam's GroupByKey; each shard writer reads the bytes of
its own files (see beam_pipeline.py for why).

A unit of work (a class folder, a per-class tar, a validation tar, a chunk of COCO images)
lists its files as refs in a worker, so listing the 1.28M training files is parallel too.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Iterator
from typing import Any, NamedTuple


class FileRef(NamedTuple):
    split: str  # "train" | "validation"
    key: str  # unique within the split; decides the shard and the order within it
    display_path: str  # what rejected.jsonl names
    file_path: str  # the file to open
    offset: int = 0  # where the bytes start in file_path
    size: int = -1  # how many bytes (-1: the whole file)
    label: Any = None  # wnid (classification) or COCO image id (detection)
    reject: str | None = None  # set when listing already found the input unusable


def read_bytes(ref: FileRef) -> bytes:
    """The input's bytes; OSError when the file is gone or a tar ends early."""
    with open(ref.file_path, "rb") as f:
        if ref.size < 0:
            return f.read()
        f.seek(ref.offset)
        data = f.read(ref.size)
    if len(data) != ref.size:
        raise OSError(f"archive ends early ({len(data)} of {ref.size} bytes)")
    return data


class FileSlice(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes at ``start`` in an open file, so tarfile
    can read a per-class tar in place inside the outer tar (no extraction, no copy)."""

    def __init__(self, file: io.BufferedReader, start: int, size: int):
        super().__init__()
        self._file = file
        self._start = start
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        remaining = self._size - self._position
        if remaining <= 0:
            return 0
        self._file.seek(self._start + self._position)
        count = self._file.readinto(memoryview(buffer)[: min(len(buffer), remaining)])
        self._position += count
        return count


def unsafe_member_reason(name: str) -> str | None:
    """Why a tar member name is refused: absolute paths and '..' could escape any folder a
    tool extracts to (CVE-2007-4559); we never extract, but refuse them all the same."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"unsafe tar member path {name!r} (absolute path refused)"
    if ".." in name.replace("\\", "/").split("/"):
        return f"unsafe tar member path {name!r} ('..' refused)"
    return None


class TarEntry(NamedTuple):
    name: str  # normalized member name
    offset: int  # of its data in the file that was opened
    size: int
    reject: str | None  # why the member cannot be an input


def iter_tar(file: io.BufferedReader, start: int = 0, size: int | None = None) -> Iterator[TarEntry]:
    """Every non-directory member of the (uncompressed) tar at ``start`` in ``file``, with
    the absolute offset of its data. Unsafe names, links, devices and repeated names come
    back with a reason instead of being dropped."""
    if size is None:
        file.seek(0, io.SEEK_END)
        size = file.tell() - start
    view = io.BufferedReader(FileSlice(file, start, size), buffer_size=64 * 1024)
    seen: set[str] = set()
    with tarfile.open(fileobj=view, mode="r:") as archive:
        for member in archive:
            if member.isdir():
                continue
            name = member.name
            reason = unsafe_member_reason(name)
            normalized = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
            if reason is None and not member.isfile():
                reason = f"tar member {name!r} is not a regular file (link or device)"
            if reason is None and normalized in seen:
                reason = f"tar member {name!r} appears twice; the first copy was used"
            seen.add(normalized)
            yield TarEntry(normalized, start + member.offset_data, member.size, reason)


def display_member(tar_path: str, *members: str) -> str:
    """``/data/ILSVRC2012_img_train.tar:n01440764.tar/n01440764_10026.JPEG``"""
    return f"{tar_path}:{'/'.join(members)}"


def walk_files(directory: str) -> Iterator[str]:
    """Relative POSIX paths of every file below ``directory``, in sorted order."""
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        relative_root = os.path.relpath(root, directory)
        for name in sorted(files):
            rel = name if relative_root == "." else os.path.join(relative_root, name)
            yield rel.replace(os.sep, "/")

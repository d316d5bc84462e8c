"""What the pipeline moves around: references to input files, never their bytes.

A :class:`FileRef` says where an input's bytes are (a file, or a byte range of a tar: the
members of an uncompressed tar are stored contiguously, so a member of a per-class tar
inside ``ILSVRC2012_img_train.tar`` is just an offset and a size in the outer file). Only
these small references go through Beam's GroupByKey; each shard writer reads the bytes of
its own files (see beam_pipeline.py for why).

A unit of work (a class folder, a per-class tar, a validation tar, a chunk of COCO images)
lists its files as refs in a worker, so listing the 1.28M training files is parallel too.

Only regular files are read, and at most :data:`MAX_FILE_BYTES` of them: a named pipe would
block a reader forever and a device (``/dev/zero``) never ends. Symbolic links below the
layout folders are not followed (:class:`Scope` says why) and are listed with the reason, as
special files are. File names that are not UTF-8 (Python keeps their bytes as lone surrogates,
PEP 383) are named in the records and reports with ``\\xNN`` escapes.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
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


# The most bytes read for one input: a JPEG TensorFlow decodes holds under 2**29 bytes of pixels
# (jpeg_mem.cc), and Pillow refuses images of more than 2 * 89.5M pixels; no encoder needs more
# bytes than that to store them.
MAX_FILE_BYTES = 1 << 29


class InputRefused(Exception):
    """The input cannot be read as an image file; the message is the reason."""


def printable(name: str) -> str:
    """``name`` as valid UTF-8 text: bytes of a file name that are not UTF-8, which Python keeps
    as lone surrogates (PEP 383), become ``\\xNN`` escapes, as ``ls -b`` shows them."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to (from JSON)
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "folder"), (stat.S_ISLNK, "symbolic link")):
        if test(mode):
            return kind
    return "regular file" if stat.S_ISREG(mode) else "special file"


def read_bytes(ref: FileRef) -> bytes:
    """The input's bytes. :class:`InputRefused` for what is not a regular file or is too large
    (checked on the open file, so a file swapped for a pipe after listing is caught too);
    OSError when the file is gone or a tar ends early."""
    with ByteReader() as reader:
        return reader.read(ref)


class ByteReader:
    """Reads inputs' bytes as :func:`read_bytes` does, with one system call for the bytes
    (``pread`` into a new bytes object: no buffered reader in between, no seek) and the
    archive of the previous ref kept open: a shard's members of ILSVRC2012_img_train.tar are
    all in that one file, which is then opened and checked once, not once an image."""

    def __init__(self):
        self._path: str | None = None
        self._descriptor: int | None = None

    def _open(self, path: str) -> int:
        # O_NONBLOCK: opening a named pipe must not wait for a writer (no effect on files).
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            os.close(descriptor)
            raise InputRefused(f"not a regular file ({file_kind(mode)}), not read")
        return descriptor

    def read(self, ref: FileRef) -> bytes:
        if ref.size > MAX_FILE_BYTES:
            raise InputRefused(f"{ref.size} bytes, over the {MAX_FILE_BYTES} bytes read for one "
                               "image")
        if ref.size < 0:  # a file of its own
            descriptor = self._open(ref.file_path)
            try:
                size = os.fstat(descriptor).st_size
                if size > MAX_FILE_BYTES:
                    raise InputRefused(f"{size} bytes, over the {MAX_FILE_BYTES} bytes read "
                                       "for one image")
                return os.pread(descriptor, size, 0)  # a file that grows is read to its old size
            finally:
                os.close(descriptor)
        if ref.file_path != self._path:
            self.close()
            self._descriptor = self._open(ref.file_path)
            self._path = ref.file_path
        data = os.pread(self._descriptor, ref.size, ref.offset)
        if len(data) != ref.size:
            raise OSError(f"archive ends early ({len(data)} of {ref.size} bytes)")
        return data

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
        self._path = self._descriptor = None

    def __enter__(self) -> ByteReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
    members = _plain_tar_members(file.fileno(), start, size)
    if members is None:
        members = _tarfile_members(file, start, size)
    seen: set[str] = set()
    for name, offset, length, is_file in members:
        reason = unsafe_member_reason(name)
        normalized = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
        if reason is None and not is_file:
            reason = f"tar member {name!r} is not a regular file (link or device)"
        if reason is None and normalized in seen:
            reason = f"tar member {name!r} appears twice; the first copy was used"
        seen.add(normalized)
        yield TarEntry(normalized, start + offset, length, reason)


def _tarfile_members(file: io.BufferedReader, start: int, size: int):
    """(name, data offset in the tar, size, is a regular file) of each non-directory member,
    as the standard library reads them: every tar format and extension."""
    # tarfile reads a 512-byte header and seeks past the member's data: a buffer of 64 KiB
    # read most of each ~110 KB image to list it (the image is read again to write it); 4 KiB
    # listed ImageNet's members in 0.024 ms each instead of 0.032 (512 B: 0.029, more calls).
    view = io.BufferedReader(FileSlice(file, start, size), buffer_size=4096)
    with tarfile.open(fileobj=view, mode="r:") as archive:
        for member in archive:
            if not member.isdir():
                yield member.name, member.offset_data, member.size, member.isfile()


_BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(_BLOCK)
_PLAIN_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE)


def _plain_tar_members(descriptor: int, start: int, size: int) -> list | None:
    """:func:`_tarfile_members` of a tar made only of plain headers (regular files and
    directories, names under 100 bytes, octal sizes, a valid checksum, the end-of-archive
    block), read a header at a time; None for anything else, which tarfile then reads.

    The members of ImageNet's tars are all plain, and tarfile's general reader (a TarInfo
    per header, each field parsed, two checksums) took 0.025-0.028 ms per member, near a
    tenth of ingest's CPU time per image; this takes 0.006 (the ingest benchmark's 6,000
    members, page cache warm). Whatever it does not know, it leaves to tarfile from the
    start, so the two never disagree.
    """
    members, offset = [], 0
    while offset + _BLOCK <= size:
        header = os.pread(descriptor, _BLOCK, start + offset)
        if header == _ZERO_BLOCK:
            return members if offset else None  # the end-of-archive marker
        kind = header[156:157]
        if len(header) != _BLOCK or kind not in _PLAIN_TYPES or header[345] or header[124] & 0x80:
            return None  # a long-name, pax, link or special header, a ustar prefix, base-256
        try:
            length = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            checksum = int(header[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            return None
        if checksum != sum(header) - sum(header[148:156]) + 8 * 0x20:  # the field as spaces
            return None
        name = header[:100].split(b"\0", 1)[0].decode(tarfile.ENCODING, "surrogateescape")
        is_directory = kind == tarfile.DIRTYPE
        if name.endswith("/") != is_directory or (is_directory and length):
            return None  # tarfile's rules for slashes and a directory's data are its own
        data = offset + _BLOCK
        offset = data + -(-length // _BLOCK) * _BLOCK
        if offset > size:
            return None  # the data runs past the end: tarfile says how
        if not is_directory:
            members.append((name, data, length, True))
    return None


def display_member(tar_path: str, *members: str) -> str:
    """``/data/ILSVRC2012_img_train.tar:n01440764.tar/n01440764_10026.JPEG``"""
    return f"{tar_path}:{'/'.join(members)}"


def _within(path: str, folders: tuple[str, ...]) -> bool:
    return any(path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
               for folder in folders)


class Scope(NamedTuple):
    """The real paths of the folders a source's files may be read from: the layout folders
    the user named (SOURCE, its train/ and val/, a COCO image folder), links among them
    resolved. Below them no symbolic link is followed: one pointing out of the scope would read
    files the user did not give, and one pointing into it would make one file two examples
    (perhaps under two labels, or in both splits), which workers listing their own folders
    cannot see; such links are listed with the reason instead."""

    roots: tuple[str, ...]

    @classmethod
    def of(cls, *folders: str | None) -> Scope:
        return cls(tuple(os.path.realpath(folder) for folder in folders if folder))

    def link_problem(self, link: str) -> str:
        """Why the symbolic link ``link`` is not followed."""
        target = os.path.realpath(link)
        shown = printable(target)
        if not os.path.exists(target):
            return f"broken symbolic link (to {shown})"
        if not _within(target, self.roots):
            return f"symbolic link to {shown}, outside the source (not followed)"
        return (f"symbolic link to {shown} (not followed: inside the source a link could make "
                "one file two examples)")

    def path_problem(self, path: str) -> tuple[str, str | None]:
        """For a path named by the input (a COCO file_name): (the file to read, why it is not
        read or None). A link may lead anywhere inside the scope: each name is one input."""
        try:
            target = os.path.realpath(path)
            info = os.stat(target)
        except (OSError, ValueError):  # missing, or a name with a NUL byte
            return path, "file not found"
        if not _within(target, self.roots):
            return path, (f"resolves to {printable(target)} through a symbolic link, outside the "
                          "images folder (not read)")
        if not stat.S_ISREG(info.st_mode):
            return path, f"not a regular file ({file_kind(info.st_mode)}), not read"
        return target, None


class Listed(NamedTuple):
    name: str  # relative POSIX path below the listed folder (may hold surrogates)
    path: str  # the file to read
    reject: str | None  # why it is not read


def list_files(directory: str, scope: Scope, *, top_only: bool = False) -> Iterator[Listed]:
    """Every entry below ``directory`` (only those directly in it with ``top_only``, folders
    left out), each folder's in sorted order. Special files and symbolic links come back with
    the reason they are not read (see :class:`Scope`) instead of being dropped."""
    pending = [("", directory)]  # (name prefix, folder): a stack, not recursion, for any depth
    while pending:
        prefix, folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as err:
            yield Listed(prefix.rstrip("/") or ".", folder,
                         f"unreadable folder: {err.strerror or err}")
            continue
        below = []
        for entry in entries:
            name = prefix + entry.name
            if top_only and entry.is_dir():  # folders, linked or not, are units of their own
                continue
            if entry.is_symlink():
                yield Listed(name, entry.path, scope.link_problem(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                below.append((name + "/", entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield Listed(name, entry.path, None)
            else:
                kind = file_kind(entry.stat(follow_symlinks=False).st_mode)
                yield Listed(name, entry.path, f"not a regular file ({kind}), not read")
        pending += reversed(below)

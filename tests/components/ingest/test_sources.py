"""Tar members read in place, and unsafe members refused."""

from __future__ import annotations

import io
import posixpath
import tarfile

from edgeline.components.ingest.sources import (
    FileRef,
    iter_tar,
    read_bytes,
    unsafe_member_reason,
)


def test_members_of_a_tar_inside_a_tar_are_byte_ranges_of_the_outer_file(tmp_path,
                                                                          ingest_helpers):
    inner = ingest_helpers.tar_bytes({"a.JPEG": b"alpha" * 1000, "b.JPEG": b"beta"})
    outer = tmp_path / "outer.tar"
    outer.write_bytes(ingest_helpers.tar_bytes({"readme.txt": b"x" * 700, "n01.tar": inner}))
    with open(outer, "rb") as f:
        outer_entries = {e.name: e for e in iter_tar(f)}
        inner_entry = outer_entries["n01.tar"]
        entries = list(iter_tar(f, inner_entry.offset, inner_entry.size))
    assert [e.name for e in entries] == ["a.JPEG", "b.JPEG"]
    read = [read_bytes(FileRef("train", e.name, e.name, str(outer), e.offset, e.size))
            for e in entries]
    assert read == [b"alpha" * 1000, b"beta"]


def test_unsafe_links_and_repeated_members_come_back_with_a_reason(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in ("ok.JPEG", "/etc/passwd", "../escape.JPEG", "a/../../b.JPEG", "ok.JPEG"):
            info = tarfile.TarInfo(name)
            info.size = 3
            archive.addfile(info, io.BytesIO(b"abc"))
        link = tarfile.TarInfo("link.JPEG")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        archive.addfile(link)
    path = tmp_path / "x.tar"
    path.write_bytes(buffer.getvalue())
    with open(path, "rb") as f:
        reasons = [(e.name, e.reject) for e in iter_tar(f)]
    assert reasons[0] == ("ok.JPEG", None)
    assert "absolute path refused" in reasons[1][1]
    assert "'..' refused" in reasons[2][1] and "'..' refused" in reasons[3][1]
    assert "appears twice" in reasons[4][1]
    assert "not a regular file" in reasons[5][1]


def test_unsafe_member_reason():
    assert unsafe_member_reason("n01440764/n01440764_1.JPEG") is None
    assert unsafe_member_reason("C:/x.JPEG") is not None
    assert unsafe_member_reason("a\\..\\x.JPEG") is not None


def test_a_tar_that_ends_early_is_unreadable(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"12345")
    ref = FileRef("train", "k", "k", str(path), offset=2, size=10)
    try:
        read_bytes(ref)
    except OSError as err:
        assert "ends early" in str(err)
    else:
        raise AssertionError("expected OSError")


def test_listing_names_what_it_will_not_read(tmp_path):
    import os

    from edgeline.components.ingest.sources import Scope, list_files

    root = tmp_path / "n01440764"
    deep = root / "d" / "d" / "d"
    deep.mkdir(parents=True)
    (deep / "x.JPEG").write_bytes(b"x")
    os.mkfifo(root / "pipe.JPEG")
    (root / "link.JPEG").symlink_to(deep / "x.JPEG")
    (tmp_path / "elsewhere.JPEG").write_bytes(b"y")
    (root / "out.JPEG").symlink_to(tmp_path / "elsewhere.JPEG")
    listed = {item.name: item.reject for item in list_files(str(root), Scope.of(str(root)))}
    assert listed == {
        "d/d/d/x.JPEG": None,
        "pipe.JPEG": "not a regular file (named pipe), not read",
        "link.JPEG": listed["link.JPEG"],
        "out.JPEG": f"symbolic link to {os.path.realpath(tmp_path / 'elsewhere.JPEG')}, outside "
                    "the source (not followed)",
    }
    assert "one file two examples" in listed["link.JPEG"]


def _archive(format_: int, members: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """A tar of (name, data or None for a directory, type) members in ``format_``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format_) as archive:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "target.JPEG"
            info.size = len(data) if data is not None else 0
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


_PLAIN = [("n01/a.JPEG", b"a" * 700, tarfile.REGTYPE), ("n01/", None, tarfile.DIRTYPE),
          ("n01/b.JPEG", b"", tarfile.REGTYPE), ("c.JPEG", b"c" * 512, tarfile.REGTYPE),
          ("n01/a.JPEG", b"again", tarfile.REGTYPE), ("\u00e9t\u00e9.JPEG", b"e", tarfile.REGTYPE)]


def test_plain_tars_are_listed_as_tarfile_lists_them_and_the_rest_by_tarfile(tmp_path):
    from edgeline.components.ingest.sources import _plain_tar_members, _tarfile_members

    long_name = "n02/" + "x" * 120 + ".JPEG"  # a GNU long-name header, or a pax one
    cases = {
        "plain, GNU": (_archive(tarfile.GNU_FORMAT, _PLAIN), True),
        "plain, ustar": (_archive(tarfile.USTAR_FORMAT, _PLAIN), True),
        "long name, GNU": (_archive(tarfile.GNU_FORMAT, [*_PLAIN, (long_name, b"l",
                                                                 tarfile.REGTYPE)]), False),
        "long name, pax": (_archive(tarfile.PAX_FORMAT, [(long_name, b"l", tarfile.REGTYPE)]),
                           False),
        "ustar prefix": (_archive(tarfile.USTAR_FORMAT, [("d" * 90 + "/" + "y" * 60, b"p",
                                                          tarfile.REGTYPE)]), False),
        "a link": (_archive(tarfile.GNU_FORMAT, [("l.JPEG", None, tarfile.SYMTYPE)]), False),
        "empty": (_archive(tarfile.GNU_FORMAT, []), False),
    }
    corrupt = bytearray(cases["plain, GNU"][0])
    corrupt[512 + 1024 + 100] ^= 1  # the second header's mode: its checksum fails
    cases["a bad checksum"] = bytes(corrupt), False
    cases["cut inside a member"] = cases["plain, GNU"][0][:600], False
    for case, (data, plain) in cases.items():
        path = tmp_path / "x.tar"
        path.write_bytes(data)
        with open(path, "rb") as f:
            listed = _plain_tar_members(f.fileno(), 0, len(data))
            assert (listed is not None) == plain, case
            try:
                expected = list(_tarfile_members(f, 0, len(data)))
            except tarfile.ReadError as err:
                expected = err
            if plain:
                assert listed == expected, case
            try:
                entries = list(iter_tar(f))
            except tarfile.ReadError as err:
                assert isinstance(expected, tarfile.ReadError), case
                assert str(err) == str(expected), case
                continue
            assert [(e.name, e.offset, e.size) for e in entries] == [
                (posixpath.normpath(n).lstrip("/"), o, s) for n, o, s, _ in expected], case


def test_the_members_of_a_plain_tar_inside_a_tar_are_found_without_tarfile(tmp_path):
    from edgeline.components.ingest.sources import _plain_tar_members

    inner = _archive(tarfile.GNU_FORMAT, _PLAIN)
    outer = _archive(tarfile.GNU_FORMAT, [("readme.txt", b"x" * 700, tarfile.REGTYPE),
                                          ("n01.tar", inner, tarfile.REGTYPE)])
    path = tmp_path / "outer.tar"
    path.write_bytes(outer)
    with open(path, "rb") as f:
        (_, _, _, _), (_, start, size, _) = _plain_tar_members(f.fileno(), 0, len(outer))
        members = _plain_tar_members(f.fileno(), start, size)
        assert [(name, size) for name, _, size, _ in members] == [
            (name, len(data)) for name, data, _ in _PLAIN if data is not None]
        assert [e.reject for e in iter_tar(f, start, size)][3] == (
            "tar member 'n01/a.JPEG' appears twice; the first copy was used")

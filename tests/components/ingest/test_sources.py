"""Tar members read in place, and unsafe members refused."""

from __future__ import annotations

import io
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

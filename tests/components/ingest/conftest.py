"""Small ingest inputs built from the real ImageNet sample (../shared/data/imagenet_sample)."""

from __future__ import annotations

import io
import tarfile
import types
from pathlib import Path

import pytest
from PIL import Image

# Real sample images: two RGB, one grayscale (per manifest_all_1000.csv).
RGB_FILES = ("n01440764/n01440764_tench.JPEG", "n01443537/n01443537_goldfish.JPEG")


def imagenet_sample(shared_data: Path) -> Path:
    return shared_data / "imagenet_sample" / "train"


def grayscale_sample(shared_data: Path) -> Path:
    for path in sorted(imagenet_sample(shared_data).glob("*/*.JPEG")):
        if Image.open(path).mode == "L":
            return path
    raise AssertionError("the ImageNet sample has no grayscale image")


def write_fault_set(root: Path, shared_data: Path) -> dict[str, str]:
    """train/<wnid>/ with two clean real JPEGs and one file of each fault; returns
    {file name: expected outcome} ("pass", "fixed" or "rejected")."""
    sample = imagenet_sample(shared_data)
    tench = (sample / RGB_FILES[0]).read_bytes()
    goldfish = (sample / RGB_FILES[1]).read_bytes()
    photo = Image.open(io.BytesIO(tench))
    wnid_a, wnid_b = "n01440764", "n01443537"
    files = {
        (wnid_a, "clean_a.JPEG"): (tench, "pass"),
        (wnid_b, "clean_b.JPEG"): (goldfish, "pass"),
        (wnid_a, "cmyk.JPEG"): (_encode(photo.convert("CMYK"), "JPEG"), "fixed"),
        (wnid_b, "png.JPEG"): (_encode(photo, "PNG"), "fixed"),
        (wnid_a, "gray.JPEG"): (grayscale_sample(shared_data).read_bytes(), "fixed"),
        (wnid_b, "truncated.JPEG"): (goldfish[: len(goldfish) // 2], "rejected"),
        (wnid_a, "empty.JPEG"): (b"", "rejected"),
        (wnid_b, "text.JPEG"): (b"this is a text file, not a picture\n", "rejected"),
    }
    outcomes = {}
    for (wnid, name), (data, outcome) in files.items():
        folder = root / "train" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        outcomes[name] = outcome
    return outcomes


def _encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def flat_jpeg(width: int, height: int) -> bytes:
    """A real baseline JPEG of ``width`` x ``height`` flat gray pixels, built without holding
    them: Pillow encodes one 16x16 MCU (4:2:0) whose entropy-coded data is 4 bytes (each DC
    difference 0, each block ended at once, with the tables of T.81 Annex K), and that MCU is
    repeated for the whole frame. 30000x30000 pixels take 14 MB."""
    data = _encode(Image.new("RGB", (16, 16), (128, 128, 128)), "JPEG", quality=50,
                   subsampling=2)
    frame = data.index(b"\xff\xc0")
    scan = data.index(b"\xff\xda")
    scan_data = scan + 2 + int.from_bytes(data[scan + 2 : scan + 4], "big")
    mcu = data[scan_data:-2]
    assert mcu == b"\x28\xa2\x8a\x00", mcu.hex()
    header = bytearray(data[:scan_data])
    header[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(header) + mcu * (-(-width // 16) * -(-height // 16)) + b"\xff\xd9"


def segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment before the first scan's data."""
    found, position = [], 2
    while True:
        marker = jpeg[position + 1]
        end = position + 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
        found.append((marker, position, end))
        if marker == 0xDA:
            return found
        position = end


def without_segments(jpeg: bytes, marker: int) -> bytes:
    """``jpeg`` without its header segments of type ``marker`` (0xEE: Adobe's APP14)."""
    found = segments(jpeg)
    kept = b"".join(jpeg[start:end] for code, start, end in found if code != marker)
    return jpeg[:2] + kept + jpeg[found[-1][2] :]


def with_frame_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header claiming another size (the data stays as it was)."""
    frame = next(start for marker, start, _ in segments(jpeg) if marker in (0xC0, 0xC1, 0xC2))
    patched = bytearray(jpeg)
    patched[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(patched)


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pack_ilsvrc_train_tar(train_dir: Path, tar_path: Path) -> None:
    """The official layout: a tar of per-class tars ``<wnid>.tar`` of flat JPEGs."""
    inner = {}
    for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        files = {f.name: f.read_bytes() for f in sorted(class_dir.iterdir())}
        inner[f"{class_dir.name}.tar"] = _tar_bytes(files)
    tar_path.write_bytes(_tar_bytes(inner))


def pack_flat_tar(files: dict[str, bytes], tar_path: Path) -> None:
    tar_path.write_bytes(_tar_bytes(files))


@pytest.fixture
def fault_set(tmp_path: Path, shared_data: Path):
    root = tmp_path / "faults"
    outcomes = write_fault_set(root, shared_data)
    return root, outcomes


@pytest.fixture(scope="session")
def ingest_helpers():
    """The builders above, for test modules (importlib mode cannot import conftest)."""
    return types.SimpleNamespace(
        imagenet_sample=imagenet_sample,
        grayscale_sample=grayscale_sample,
        write_fault_set=write_fault_set,
        pack_ilsvrc_train_tar=pack_ilsvrc_train_tar,
        pack_flat_tar=pack_flat_tar,
        tar_bytes=_tar_bytes,
        encode=_encode,
        flat_jpeg=flat_jpeg,
        with_frame_size=with_frame_size,
        segments=segments,
        without_segments=without_segments,
    )

"""Typed artifacts: a directory with a small ``artifact.json``, published atomically.

As in TFX, stages meet only through artifacts. An artifact is content-addressed by its
fingerprint (the step's resolved config + its inputs' fingerprints + the package version),
so a second run of the same config finds it and skips the work. ``artifact.json`` also lists
every file with its size and sha256, so a truncated or edited file in a published artifact is
detected instead of silently used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import edgeline

ARTIFACT_FILE = "artifact.json"


@dataclasses.dataclass
class Artifact:
    """A published stage output. ``uri`` is its directory."""

    uri: str
    type: str
    producer: str  # "<step>:<stage>"
    fingerprint: str
    inputs: dict[str, str]  # input step name -> fingerprint
    properties: dict[str, Any]
    metrics: dict[str, Any]
    files: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    created: float = 0.0
    version: str = edgeline.__version__

    @property
    def path(self) -> Path:
        return Path(self.uri)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, uri: str | os.PathLike) -> Artifact:
        with open(Path(uri) / ARTIFACT_FILE, encoding="utf-8") as f:
            data = json.load(f)
        data["uri"] = str(uri)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_digest(payload: Any, length: int = 64) -> str:
    """The first ``length`` hex digits of the sha256 of ``payload``'s canonical JSON.

    The one way edgeline names something by what decides it: a step's fingerprint (all 64
    digits), and the cache directories where a stage keeps state across attempts (the train
    stage's work directory, the rl stage's checkpoints), which are shorter for readable paths.
    Equal payloads give equal digests whatever their key order.
    """
    if not 1 <= length <= 64:
        raise ValueError(f"Received: length={length}; a sha256 has 1 to 64 hex digits")
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:length]


def fingerprint(
    stage: str,
    options: Mapping[str, Any],
    inputs: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
) -> str:
    """sha256 over what determines a step's output (ARCHITECTURE.md, Artifacts)."""
    payload = {
        "stage": stage,
        "options": options,
        "inputs": dict(sorted(inputs.items())),
        "extra": extra or {},
        "version": edgeline.__version__,
    }
    return content_digest(payload)


def path_identity(path: str | os.PathLike) -> str:
    """sha256 over the names, sizes and mtimes of ``path`` (a file, or every file below a
    folder): the identity of data outside the pipeline (an ingest source, a command's input
    folder, a starting model), so an unchanged source is a cache hit and a touched or added
    file is not. Contents are not read: a terabyte source costs one ``stat`` per file."""
    path = os.fspath(path)
    digest = hashlib.sha256()
    if os.path.isfile(path):
        info = os.stat(path)
        digest.update(f"{os.path.basename(path)}\t{info.st_size}\t{info.st_mtime_ns}".encode(
            "utf-8", "surrogateescape"))
        return digest.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                info = os.stat(full)
            except OSError:  # a dangling link: its name still counts
                info = None
            rel = os.path.relpath(full, path)
            stamp = f"{info.st_size}\t{info.st_mtime_ns}" if info else "missing"
            # surrogateescape: a file name that is not UTF-8 hashes as its bytes (PEP 383).
            digest.update(f"{rel}\t{stamp}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def manifest(directory: Path) -> dict[str, dict[str, Any]]:
    """size and sha256 of every file below ``directory`` except artifact.json."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != ARTIFACT_FILE:
            rel = path.relative_to(directory).as_posix()
            files[rel] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    return files


def verify(artifact: Artifact) -> str | None:
    """None when every listed file is present and intact, else what is wrong."""
    root = artifact.path
    for rel, info in artifact.files.items():
        path = root / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != info["size"]:
            return f"{rel} has {path.stat().st_size} bytes, expected {info['size']}"
        if file_sha256(path) != info["sha256"]:
            return f"{rel} does not match its sha256"
    return None


def verify_input(path: str | os.PathLike | None, label: str) -> None:
    """Refuse a damaged input artifact before a standalone command reads it, as the runner
    does for its cached ones: every file ``artifact.json`` lists must be there with its size
    and SHA-256 (a shard cut between records would otherwise be read short without a word, one
    cut inside a record end in a TensorFlow DataLossError). A path that is not an artifact
    directory (a .tflite file, a folder of one's own TFRecords) has nothing to check."""
    from edgeline.pipeline.errors import UserError

    if path is None:
        return
    directory = Path(path)
    if not (directory / ARTIFACT_FILE).is_file():
        return
    try:
        artifact = Artifact.load(directory)
    except (OSError, ValueError, TypeError, KeyError):
        raise UserError(f"{label}: {directory / ARTIFACT_FILE} is unreadable; the artifact "
                        "cannot be checked (rebuild it)") from None
    problem = verify(artifact)
    if problem:
        raise UserError(f"{label}: the artifact {str(directory)!r} is damaged: {problem} "
                        "(rebuild it: rerun the step that made it)")


@contextlib.contextmanager
def writing_output(output: Path, flag: str = "--output") -> Iterator[Path]:
    """The staging folder beside a standalone command's ``output`` that its result is written
    into (:func:`place_at_output`), then renamed.

    Whatever fails inside removes it, so the previous ``output`` stays as it was; a full or
    read-only disk becomes a :class:`StorageError` naming ``flag`` and the folder (one line,
    not the tracebacks of every library that met it).
    """
    from edgeline.pipeline.errors import storage_errors

    with storage_errors(lambda problem: f"{flag} {str(output)!r}: {problem}; nothing was "
                        "written there (rerun once it can be written, or choose another "
                        "folder)"):
        staging = staging_dir(output)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def staging_dir(final_dir: Path) -> Path:
    """A fresh directory beside ``final_dir`` to write into before publication.

    Beside, not in /tmp, so that the final rename stays on one file system and is atomic.
    """
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final_dir)
    # The writer's pid in the name: a sweep removes only directories whose writer is gone, so
    # a second process on the same runs directory never deletes a run in progress.
    tmp = final_dir.parent / f".{final_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def publish(
    tmp_dir: Path,
    final_dir: Path,
    *,
    type: str,
    producer: str,
    fingerprint: str,
    inputs: Mapping[str, str],
    properties: Mapping[str, Any],
    metrics: Mapping[str, Any],
    replace: bool = False,
) -> Artifact:
    """Write artifact.json into ``tmp_dir`` and rename it to ``final_dir`` in one step.

    A reader sees either no artifact or a whole one: a crash before the rename leaves only a
    hidden ``.tmp-`` directory, which :func:`sweep_stale` removes. ``replace`` swaps out what
    ``final_dir`` holds (a damaged artifact the runner rebuilds, an output given with
    --overwrite). Without it, a ``final_dir`` that another writer published meanwhile (the
    same step run by two processes at once) is used when it is this artifact's twin: the same
    fingerprint, every file intact; this one is then discarded.
    """
    artifact = Artifact(
        uri=str(final_dir),
        type=type,
        producer=producer,
        fingerprint=fingerprint,
        inputs=dict(inputs),
        properties=json.loads(canonical_json(properties)),
        metrics=json.loads(canonical_json(metrics)),
        files=manifest(tmp_dir),
        created=time.time(),
    )
    data = artifact.to_json()
    data.pop("uri")
    with open(tmp_dir / ARTIFACT_FILE, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    return _rename_into_place(tmp_dir, final_dir, artifact, replace)


def _rename_into_place(tmp_dir: Path, final_dir: Path, artifact: Artifact,
                       replace: bool) -> Artifact:
    """The last step of :func:`publish` and :func:`place_at_output`: ``tmp_dir`` (holding
    ``artifact``'s files and artifact.json) renamed to ``final_dir``."""
    fingerprint = artifact.fingerprint
    if replace and final_dir.exists():
        # An earlier artifact being replaced: a corrupted copy the runner rebuilds, or a CLI
        # output given with --overwrite (check_output_dir has made sure it is edgeline's).
        # Moved aside first, deleted only once the new one is in place, so a failure between
        # the two renames never leaves the user with neither.
        old = final_dir.parent / f".{final_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-old"
        os.rename(final_dir, old)
        os.rename(tmp_dir, final_dir)
        shutil.rmtree(old, ignore_errors=True)
        return artifact
    try:
        os.rename(tmp_dir, final_dir)  # atomic; refuses a final_dir that holds anything
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        twin = published_twin(final_dir, fingerprint)
        if twin is None:
            from edgeline.pipeline.errors import UserError

            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise UserError(f"{final_dir} was written by another process while this one ran; "
                            "it was left as it is (nothing of this run replaced it)") from None
        shutil.rmtree(tmp_dir, ignore_errors=True)
        return twin
    return artifact


def place_at_output(artifact: Artifact, output: Path, *, replace: bool,
                    flag: str = "--output") -> Artifact:
    """A published ``artifact`` (in a runs directory) placed at a standalone command's
    ``output``, atomically as :func:`publish` does: its files hard-linked into a staging folder
    beside ``output`` (copied where ``output`` is on another file system), then renamed.

    Links cost no space and no time, even for an ImageNet's shards; a file edited in place
    under ``output`` would also change the runs directory's copy, which the runner then finds
    damaged by its checksum and rebuilds. ``output`` already holding this very artifact, whole
    (a rerun with --overwrite), is left as it is.
    """
    if published_twin(output, artifact.fingerprint) is not None:
        return Artifact.load(output)
    source = artifact.path
    with writing_output(output, flag) as staging:
        for rel in [*artifact.files, ARTIFACT_FILE]:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source / rel, target)
            except OSError as err:
                if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copy2(source / rel, target)
        placed = dataclasses.replace(artifact, uri=str(output))
        return _rename_into_place(staging, output, placed, replace and output.exists())


def published_twin(directory: Path, fingerprint: str) -> Artifact | None:
    """The artifact in ``directory`` if it is a whole one with ``fingerprint``, else None."""
    try:
        artifact = Artifact.load(directory)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if artifact.fingerprint != fingerprint or verify(artifact) is not None:
        return None
    return artifact


def check_output_dir(output: Path, overwrite: bool, *, flag: str = "--output") -> None:
    """Refuse an output folder whose contents edgeline would destroy.

    An output folder belongs to the user. It may be missing or empty; with ``overwrite`` it may
    also hold an earlier edgeline artifact (its ``artifact.json`` says edgeline wrote it), which
    :func:`publish` then swaps out only once the new artifact is complete. Any other non-empty
    folder (a checkout, a home directory, ``--output .``) is refused, with or without
    ``overwrite``: edgeline never deletes a folder it did not create.
    """
    from edgeline.pipeline.errors import UserError

    if output.exists() and not output.is_dir():
        raise UserError(f"{flag} must be a folder, received a file: {str(output)!r}")
    if not output.is_dir() or not any(output.iterdir()):
        return
    if not (output / ARTIFACT_FILE).is_file():
        raise UserError(f"{flag} folder is not empty and holds no edgeline artifact: "
                        f"{str(output)!r}; edgeline writes only into a new or empty folder, or "
                        f"replaces an earlier edgeline output with --overwrite")
    if not overwrite:
        raise UserError(f"{flag} folder holds an earlier edgeline output: {str(output)!r} (pass "
                        f"--overwrite to replace it once the new one is complete)")


def remove_stale_staging(final_dir: Path) -> None:
    """Remove the staging folders of earlier writers of ``final_dir`` whose process is gone
    (killed: a writer that ends in any other way removes its own), so that a standalone
    command rerun after a kill leaves nothing hidden behind; a live writer's folder stays."""
    import glob

    for path in final_dir.parent.glob(glob.escape(f".{final_dir.name}.tmp-") + "*"):
        if path.is_dir() and not path.is_symlink() and not _writer_alive(path.name):
            shutil.rmtree(path, ignore_errors=True)


def sweep_stale(directory: Path) -> None:
    """Remove half-written ``.tmp-`` directories left by a killed run (their writer's pid is
    no longer alive; directories of live writers are left alone)."""
    if not directory.exists():
        return
    for path in directory.glob("*/.*.tmp-*"):
        if not _writer_alive(path.name):
            shutil.rmtree(path, ignore_errors=True)


def _writer_alive(staging_name: str) -> bool:
    """Whether the process named in ``.<name>.tmp-<pid>-<hex>`` still runs (older names
    without a pid count as stale)."""
    pid_text = staging_name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
    if not pid_text.isdigit() or "-" not in staging_name.rsplit(".tmp-", 1)[1]:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process is starting a run: nothing of its own is in flight yet
    return process_alive(pid)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (signal 0 checks, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True

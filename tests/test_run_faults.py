"""`edgeline run` end to end through the real CLI: reproducible, and safe against faults.

Issue 8. Each test starts the CLI in a subprocess on a tiny pipeline (built-in shapes data,
a small CNN at 32x32 for 3 epochs, evaluate, a float32 and an int8 TFLite export) and
checks what a user would see: byte-identical outputs from the same config and seed, a run
killed with SIGKILL inside ingest, train or export that a rerun completes from its cache and
its training checkpoint, a damaged artifact that is detected and rebuilt instead of used, and
a failing stage that stops the run with the documented exit code and one line naming it.

The built-in classification set has a fixed size (10 classes, 120 train and 30 validation
images each, 72x72): ``IngestOptions`` has no option for the counts (``demo_data`` takes
``train_per_class``, but ``builtin_source`` calls it with the defaults), so ingest works on
those 1,500 images; everything else is made small here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeline.pipeline.artifacts import ARTIFACT_FILE, Artifact, verify

pytestmark = pytest.mark.slow

CONFIG_TEXT = """\
name: run_faults
seed: 7
deterministic: true
runs_dir: runs
steps:
  images:
    stage: ingest
    format: imagenet
    source: builtin:classification
    train_shards: 2
    val_shards: 1
    workers: 2                     # Beam's multi-processing mode: worker subprocesses
  classifier:
    stage: train
    inputs: [images]
    model: cnn
    model_options: {stage_widths: [8, 16]}
    epochs: 3
    batch_size: 64
    data: {input_size: [32, 32], crop_fraction: 1.0, augmentation: {random_resized_crop: false}}
    optimizer: {name: adam, learning_rate: 0.005}
    schedule: {name: constant}
    tensorboard: false
    progress: epoch
  evaluate:
    stage: evaluate
    inputs: [images, classifier]
    plots: false
  export_float:
    stage: export
    inputs: [classifier, images]
    quantize: none
    parity_size: 64
    measure_latency: false
  export_int8:
    stage: export
    inputs: [classifier, images]
    quantize: int8
    representative_size: 32
    parity_size: 64
    max_metric_drop: 1.0
    measure_latency: false
"""

STEPS = ("images", "classifier", "evaluate", "export_float", "export_int8")
EXPORT_STEPS = ("export_float", "export_int8")
# Wall-clock figures: they measure the machine, not the result, so they differ between two
# runs of the same config. Everything else in the metrics must be equal.
WALL_CLOCK_METRICS = {
    "images": ("seconds", "files_per_second", "shard_writer_seconds"),
    "evaluate": ("images_per_second",),
}
RUN_TIMEOUT_SECONDS = 300
STEP_STATUS = re.compile(r"^\[\d+/\d+\] (\S+) \((\w+)\): (cached|running|done)")
RUN_DETAILS = re.compile(r"^details: edgeline runs show (\S+) --runs-dir (\S+)$", re.MULTILINE)


# -- running the CLI ---------------------------------------------------------------------------


def write_config(directory: Path) -> Path:
    path = directory / "run_faults.yaml"
    path.write_text(CONFIG_TEXT, encoding="utf-8")
    return path


def edgeline_command(config: Path, runs_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgeline", "run", str(config), "--runs-dir", str(runs_dir),
            *extra]


def child_environment() -> dict[str, str]:
    # Unbuffered, so that the watcher below sees each line when it is printed.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_edgeline(config: Path, runs_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(edgeline_command(config, runs_dir, *extra), capture_output=True,
                          text=True, env=child_environment(), timeout=RUN_TIMEOUT_SECONDS)


def step_statuses(stderr: str) -> dict[str, list[str]]:
    """step -> the runner's progress words for it, in order ("running", "done", "cached")."""
    statuses: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        match = STEP_STATUS.match(line)
        if match:
            statuses.setdefault(match.group(1), []).append(match.group(3))
    return statuses


def listed_artifacts(stdout: str) -> dict[str, Artifact]:
    """The artifacts of the run a finished ``edgeline run`` names in its closing line
    (``details: edgeline runs show RUN --runs-dir DIR``), as ``runs show --json`` lists them."""
    match = RUN_DETAILS.search(stdout)
    assert match, stdout
    shown = subprocess.run([sys.executable, "-m", "edgeline", "runs", "show", match.group(1),
                            "--runs-dir", match.group(2), "--json"],
                           capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    return {a["step"]: Artifact.load(a["path"]) for a in json.loads(shown.stdout)["artifacts"]}


def assert_completed(result: subprocess.CompletedProcess) -> dict[str, Artifact]:
    assert result.returncode == 0, result.stderr[-4000:]
    artifacts = listed_artifacts(result.stdout)
    assert sorted(artifacts) == sorted(STEPS), result.stdout
    for step, artifact in artifacts.items():
        assert verify(artifact) is None, (step, verify(artifact))
    return artifacts


# -- what is on disk ---------------------------------------------------------------------------


def published_dirs(runs_dir: Path) -> list[Path]:
    """Every directory where readers look for artifacts: artifacts/<stage>/<fingerprint>."""
    return sorted(p for p in (runs_dir / "artifacts").glob("*/*")
                  if p.is_dir() and not p.name.startswith("."))


def staging_dirs(runs_dir: Path) -> list[Path]:
    return sorted((runs_dir / "artifacts").glob("*/.*.tmp-*"))


def assert_every_published_artifact_verifies(runs_dir: Path,
                                             checked: set[Path] | None = None) -> None:
    """Each published directory holds a whole artifact: artifact.json and every file it lists,
    with the listed size and sha256. ``checked`` skips directories already hashed (they are
    never rewritten in place, only replaced by a rename)."""
    for directory in published_dirs(runs_dir):
        if checked is not None and directory in checked:
            continue
        assert (directory / ARTIFACT_FILE).is_file(), f"{directory} is published half-written"
        problem = verify(Artifact.load(directory))
        assert problem is None, f"{directory}: {problem}"
        if checked is not None:
            checked.add(directory)


def tfrecord_bytes(artifact: Artifact) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(artifact.path.glob("*.tfrecord"))}


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return value, position


def without_proto_field(data: bytes, field_number: int) -> bytes:
    """A serialized protobuf message without one (varint or length-delimited) field: enough
    wire format to drop the random ``uuid`` (field 7) of a SavedModel's fingerprint.pb
    (tensorflow/core/protobuf/fingerprint.proto) without importing TensorFlow here."""
    kept, position = bytearray(), 0
    while position < len(data):
        start = position
        key, position = _varint(data, position)
        wire_type = key & 7
        if wire_type == 0:
            _, position = _varint(data, position)
        elif wire_type == 2:
            length, position = _varint(data, position)
            position += length
        else:
            raise AssertionError(f"unexpected wire type {wire_type} in fingerprint.pb")
        if key >> 3 != field_number:
            kept += data[start:position]
    return bytes(kept)


def model_contents(artifact: Artifact, *, graph: bool = True) -> dict[str, bytes]:
    """A Model artifact's bytes that must be reproducible.

    Left out, because they hold values that are not results: the ``date_saved`` of
    model.keras's metadata.json (the wall-clock time of the save, tf_keras saving_lib) and the
    ``uuid`` of the SavedModel's fingerprint.pb (random on each save). ``graph=False`` also
    leaves out saved_model.pb and fingerprint.pb: a traced function's name carries TF's
    process-wide counter (``__inference_signature_wrapper_serve_3107``), so the same model
    saved by a process that traced a different number of functions before (a resumed training)
    has other names in its graph. The weights (model.keras's h5, the SavedModel variables) and
    the Keras config are compared bit for bit in every case.
    """
    contents = {}
    with zipfile.ZipFile(artifact.path / "model.keras") as keras_file:
        for name in keras_file.namelist():
            data = keras_file.read(name)
            if name == "metadata.json":
                metadata = json.loads(data)
                assert "date_saved" in metadata, metadata
                del metadata["date_saved"]
                data = json.dumps(metadata, sort_keys=True).encode()
            contents[f"model.keras/{name}"] = data
    saved_model = artifact.path / "saved_model"
    for path in sorted((saved_model / "variables").iterdir()):
        contents[path.relative_to(artifact.path).as_posix()] = path.read_bytes()
    if graph:
        contents["saved_model.pb"] = (saved_model / "saved_model.pb").read_bytes()
        contents["fingerprint.pb"] = without_proto_field(
            (saved_model / "fingerprint.pb").read_bytes(), field_number=7)
    return contents


def result_metrics(artifact: Artifact, step: str) -> dict:
    """The artifact's metrics without its wall-clock figures (named in WALL_CLOCK_METRICS)."""
    excluded = WALL_CLOCK_METRICS.get(step, ())
    missing = [name for name in excluded if name not in artifact.metrics]
    assert not missing, f"{step}: wall-clock metrics {missing} renamed? {artifact.metrics}"
    return {k: v for k, v in artifact.metrics.items() if k not in excluded}


def assert_same_results(artifacts: dict[str, Artifact], reference: dict[str, Artifact], *,
                        graph: bool = True) -> None:
    """The outputs that matter are equal: shards, the model (see :func:`model_contents` for
    ``graph``), metrics, and the exported files' bytes."""
    assert tfrecord_bytes(artifacts["images"]) == tfrecord_bytes(reference["images"])
    assert artifacts["images"].properties["splits"] == reference["images"].properties["splits"]
    assert model_contents(artifacts["classifier"], graph=graph) == model_contents(
        reference["classifier"], graph=graph)
    for step in STEPS:
        assert result_metrics(artifacts[step], step) == result_metrics(reference[step], step)
    for step in EXPORT_STEPS:
        produced = (artifacts[step].path / "model.tflite").read_bytes()
        assert produced == (reference[step].path / "model.tflite").read_bytes(), step


def lineage_rows(runs_dir: Path, query: str) -> list[tuple]:
    """Read-only look into the lineage database (opening a RunStore would sweep staging
    directories, which must not happen while a run is live)."""
    with sqlite3.connect(f"file:{runs_dir / 'lineage.sqlite'}?mode=ro", uri=True) as db:
        return db.execute(query).fetchall()


# -- kill -9 -----------------------------------------------------------------------------------


def process_table() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, parent pid, process group) of every process, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the last ')'.
        state, ppid, pgrp = text.rsplit(")", 1)[1].split()[:3]
        table[int(stat.parent.name)] = (state, int(ppid), int(pgrp))
    return table


def process_tree(root: int) -> set[int]:
    """``root`` and every live process descending from it (Beam's SDK workers)."""
    table = process_table()
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (_, ppid, _) in table.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    return {pid for pid in tree if pid in table and table[pid][0] != "Z"}


def still_running(pids: set[int], group: int) -> set[int]:
    """Which of ``pids``, or of the members of ``group``, still run (zombies excluded)."""
    table = process_table()
    return {pid for pid, (state, _, pgrp) in table.items()
            if state != "Z" and (pid in pids or pgrp == group)}


class WatchedRun:
    """``edgeline run`` in its own session (Beam's workers join its process group), its
    merged stdout/stderr collected line by line by a thread."""

    def __init__(self, command: list[str]):
        self.lines: list[str] = []
        self.processes_at_kill: set[int] = set()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=child_environment(), start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill_group(self) -> None:
        """SIGKILL to the whole process group; then no process of the run may be left."""
        self.processes_at_kill = process_tree(self.process.pid)
        os.killpg(self.process.pid, signal.SIGKILL)  # the session leader's pid is the group id
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)
        deadline = time.monotonic() + 30
        while still_running(self.processes_at_kill, self.process.pid):
            assert time.monotonic() < deadline, (
                f"survived the SIGKILL: {still_running(self.processes_at_kill, self.process.pid)}")
            time.sleep(0.1)

    def wait(self) -> subprocess.CompletedProcess:
        """Until it ends by itself; stdout and stderr both hold the merged output."""
        self.process.wait(timeout=RUN_TIMEOUT_SECONDS)
        self._reader.join(timeout=30)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode,
                                           self.output, self.output)

    def stop_if_running(self) -> None:
        if self.process.poll() is None:
            self.kill_group()


def kill_when(command: list[str], runs_dir: Path, inside: Callable[[WatchedRun], bool],
              where: str) -> WatchedRun:
    """Start ``command``, wait until ``inside(run)`` holds, then SIGKILL its process group.

    At every poll, each published artifact directory must verify: no reader ever sees a
    half-written artifact.
    """
    run = WatchedRun(command)
    checked: set[Path] = set()
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while not inside(run):
            assert run.process.poll() is None, f"the run ended before {where}:\n{run.output}"
            assert time.monotonic() < deadline, f"never reached {where}:\n{run.output}"
            assert_every_published_artifact_verifies(runs_dir, checked)
            time.sleep(0.02)
        run.kill_group()
    finally:
        run.stop_if_running()
    assert run.process.returncode == -signal.SIGKILL, run.output[-3000:]
    return run


def inside_ingest(runs_dir: Path) -> Callable[[WatchedRun], bool]:
    """Beam is writing shards: a TFRecord exists in ingest's staging directory."""
    return lambda run: any((runs_dir / "artifacts" / "ingest").glob(".*.tmp-*/*.tfrecord"))


def inside_train(runs_dir: Path) -> Callable[[WatchedRun], bool]:
    """An epoch finished and BackupAndRestore wrote its checkpoint; training goes on."""
    return lambda run: any((runs_dir / "cache" / "train").glob("*/backup-*/chief/checkpoint"))


def inside_int8_export(runs_dir: Path) -> Callable[[WatchedRun], bool]:
    """export_float is published and export_int8 is calibrating its converter."""
    return lambda run: "export: calibrating int8" in run.output


KILL_POINTS = {"ingest": inside_ingest, "train": inside_train, "export": inside_int8_export}


# -- the shared uninterrupted run --------------------------------------------------------------


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("config"))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, config_path):
    """One uninterrupted run: the results every other run here must reproduce."""
    runs_dir = tmp_path_factory.mktemp("reference") / "runs"
    result = run_edgeline(config_path, runs_dir)
    artifacts = assert_completed(result)
    return runs_dir, result, artifacts


def copy_of(reference_run, tmp_path: Path) -> Path:
    """A copy of the reference runs directory (artifacts are relocatable: artifact.json holds
    no absolute path), to damage without touching the original."""
    runs_dir = tmp_path / "runs"
    shutil.copytree(reference_run[0], runs_dir)
    return runs_dir


# -- 1. determinism ----------------------------------------------------------------------------


def test_same_config_and_seed_give_identical_shards_metrics_and_tflite(
        reference_run, config_path, tmp_path):
    _, first, reference = reference_run
    assert "5 step(s) built, 0 cached" in first.stdout
    second = run_edgeline(config_path, tmp_path / "runs")
    artifacts = assert_completed(second)
    assert "5 step(s) built, 0 cached" in second.stdout  # a separate store: nothing shared

    assert {s: a.fingerprint for s, a in artifacts.items()} == {
        s: a.fingerprint for s, a in reference.items()}
    shards = tfrecord_bytes(artifacts["images"])
    assert sorted(shards) == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
                              "validation-00000-of-00001.tfrecord"]
    assert all(shards.values())
    assert shards == tfrecord_bytes(reference["images"])
    evaluate_metrics = result_metrics(artifacts["evaluate"], "evaluate")
    assert {"top1", "top5", "num_images"} <= set(evaluate_metrics)
    assert evaluate_metrics == result_metrics(reference["evaluate"], "evaluate")
    for step in EXPORT_STEPS:
        tflite = (artifacts[step].path / "model.tflite").read_bytes()
        assert tflite[4:8] == b"TFL3"  # the FlatBuffer file identifier
        assert tflite == (reference[step].path / "model.tflite").read_bytes(), step
    assert_same_results(artifacts, reference)


# -- 2. kill -9 --------------------------------------------------------------------------------
#
# One runs directory, the same command started four times: the first attempt is killed inside
# ingest, the second (the rerun) inside train, the third inside export, the fourth completes.
# Each rerun must find what the killed attempt had finished as cache hits and redo the step it
# died in; chaining them costs one pipeline's work instead of three (the suite's time budget).


@dataclasses.dataclass
class Attempt:
    where: str  # where the attempt was killed ("" for the last one, which completes)
    output: str  # stdout and stderr
    published_steps: list[str]  # steps with a published artifact right after the attempt
    staging: list[Path]  # hidden staging directories right after the attempt
    staged_shards: list[Path]  # TFRecord files in them (a killed ingest's half-written shards)
    run_statuses: list[tuple]  # the lineage database's runs.status rows after the attempt
    processes_at_kill: int = 0  # the CLI and its descendants when SIGKILL was sent


def published_steps(runs_dir: Path) -> list[str]:
    return sorted(Artifact.load(d).producer.split(":")[0] for d in published_dirs(runs_dir))


def snapshot(where: str, output: str, runs_dir: Path) -> Attempt:
    staging = staging_dirs(runs_dir)
    return Attempt(where=where, output=output, published_steps=published_steps(runs_dir),
                   staging=staging,
                   staged_shards=[p for d in staging for p in d.glob("*.tfrecord")],
                   run_statuses=lineage_rows(
                       runs_dir, "SELECT status FROM runs ORDER BY started"))


@pytest.fixture(scope="module")
def interrupted_runs(config_path, tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("interrupted") / "runs"
    command = edgeline_command(config_path, runs_dir)
    attempts = []
    for where, inside in KILL_POINTS.items():
        killed = kill_when(command, runs_dir, inside(runs_dir), where=f"inside {where}")
        assert_every_published_artifact_verifies(runs_dir)
        attempts.append(dataclasses.replace(snapshot(where, killed.output, runs_dir),
                                            processes_at_kill=len(killed.processes_at_kill)))
    final = run_edgeline(config_path, runs_dir)
    attempts.append(snapshot("", final.stderr + final.stdout, runs_dir))
    return runs_dir, attempts, final


def assert_rerun_statuses(rerun: Attempt, cached: tuple[str, ...], rebuilt: str) -> None:
    statuses = step_statuses(rerun.output)
    for step in cached:
        assert statuses.get(step) == ["cached"], (step, rerun.output[-3000:])
    assert statuses.get(rebuilt) == ["running", "done"], (rebuilt, rerun.output[-3000:])


def test_a_run_killed_inside_ingest_leaves_nothing_published_and_is_redone(interrupted_runs):
    _, attempts, _ = interrupted_runs
    killed, rerun = attempts[0], attempts[1]
    assert killed.published_steps == []  # Beam was writing shards: nothing visible
    # workers: 2 runs Beam's SDK workers as subprocesses; all died with the CLI (kill_when).
    assert killed.processes_at_kill >= 3, killed.processes_at_kill
    assert killed.staged_shards, "expected the killed ingest's shards in its staging directory"
    assert killed.run_statuses == [("running",)]  # SIGKILL: the run never recorded its end
    assert_rerun_statuses(rerun, cached=(), rebuilt="images")
    assert not any(d.exists() for d in killed.staging), "the rerun did not sweep them"


def test_a_run_killed_inside_train_resumes_from_its_epoch_checkpoint(interrupted_runs):
    _, attempts, _ = interrupted_runs
    killed, rerun = attempts[1], attempts[2]
    assert killed.published_steps == ["images"]
    assert_rerun_statuses(rerun, cached=("images",), rebuilt="classifier")
    # Resumed from the checkpoint of the finished epoch(s), not started over.
    assert re.search(r"train: resuming phase \w+ at epoch [23] ", rerun.output), \
        rerun.output[-3000:]


def test_a_run_killed_inside_export_completes_with_the_earlier_steps_cached(interrupted_runs):
    runs_dir, attempts, final = interrupted_runs
    killed, rerun = attempts[2], attempts[3]
    assert killed.published_steps == ["classifier", "evaluate", "export_float", "images"]
    assert_rerun_statuses(rerun, cached=("images", "classifier", "evaluate", "export_float"),
                          rebuilt="export_int8")
    assert_completed(final)
    assert "1 step(s) built, 4 cached" in final.stdout
    assert rerun.staging == []
    assert not list((runs_dir / "cache" / "train").glob("*/backup-*"))  # state cleaned up
    # The three killed runs never recorded their end; the next run's store saw their
    # processes gone and marked them, so `edgeline runs list` does not show them running.
    assert rerun.run_statuses == [("interrupted",)] * 3 + [("complete",)]


def test_interrupted_runs_reproduce_the_uninterrupted_results(interrupted_runs, reference_run):
    _, _, final = interrupted_runs
    artifacts, reference = assert_completed(final), reference_run[2]
    assert tfrecord_bytes(artifacts["images"]) == tfrecord_bytes(reference["images"])
    # Training was killed after an epoch and resumed: the same weights, bit for bit.
    assert model_contents(artifacts["classifier"], graph=False) == model_contents(
        reference["classifier"], graph=False)
    for step in ("images", "classifier", "evaluate", "export_float"):
        assert result_metrics(artifacts[step], step) == result_metrics(reference[step], step)
    assert (artifacts["export_float"].path / "model.tflite").read_bytes() == \
        (reference["export_float"].path / "model.tflite").read_bytes()


def test_interrupted_runs_reproduce_the_uninterrupted_int8_export(interrupted_runs,
                                                                  reference_run):
    _, _, final = interrupted_runs
    artifacts, reference = assert_completed(final), reference_run[2]
    assert result_metrics(artifacts["export_int8"], "export_int8") == \
        result_metrics(reference["export_int8"], "export_int8")
    assert (artifacts["export_int8"].path / "model.tflite").read_bytes() == \
        (reference["export_int8"].path / "model.tflite").read_bytes()


# -- 3. a damaged artifact ---------------------------------------------------------------------


def without_wall_clock(metrics_file: Path) -> dict:
    """evaluate's metrics.json (per-class accuracy, confusion matrix...) minus its timings."""
    report = json.loads(metrics_file.read_text())
    for name in ("inference_seconds", "images_per_second"):
        assert name in report, f"{metrics_file}: no {name}, renamed?"
        del report[name]
    return report


def test_a_damaged_artifact_is_detected_and_rebuilt(reference_run, config_path, tmp_path):
    reference = reference_run[2]
    runs_dir = copy_of(reference_run, tmp_path)

    def copied(step: str) -> Artifact:
        return Artifact.load(runs_dir / "artifacts" / reference[step].path.parent.name /
                             reference[step].path.name)

    classifier, evaluation = copied("classifier"), copied("evaluate")
    model_file = classifier.path / "model.keras"
    original_model = model_file.read_bytes()
    with open(model_file, "r+b") as f:  # truncated, as by a full disk or an interrupted copy
        f.truncate(len(original_model) // 2)
    metrics_file = evaluation.path / "metrics.json"
    edited = bytearray(metrics_file.read_bytes())
    edited[len(edited) // 2] ^= 0x01  # same size, one bit flipped: only the sha256 tells
    metrics_file.write_bytes(bytes(edited))
    assert "bytes, expected" in verify(classifier)
    assert "does not match its sha256" in verify(evaluation)

    rerun_process = WatchedRun(edgeline_command(config_path, runs_dir))
    try:
        # Meanwhile, someone lists the runs: the store that command opens sweeps stale staging
        # directories, and must leave the live run's alone.
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while not (live := staging_dirs(runs_dir)):
            assert rerun_process.process.poll() is None, rerun_process.output[-3000:]
            assert time.monotonic() < deadline, rerun_process.output[-3000:]
            time.sleep(0.05)
        listing = subprocess.run([sys.executable, "-m", "edgeline", "runs", "list",
                                  "--runs-dir", str(runs_dir)], capture_output=True, text=True,
                                 env=child_environment(), timeout=120)
        assert listing.returncode == 0, listing.stderr
        assert re.search(r"run_faults\s+running", listing.stdout), listing.stdout
        assert all(d.is_dir() for d in live), "a reader swept the live run's staging directory"
        rerun = rerun_process.wait()
    finally:
        rerun_process.stop_if_running()
    artifacts = assert_completed(rerun)
    damaged_lines = [line for line in rerun.stderr.splitlines()
                     if "published artifact is damaged" in line]
    assert damaged_lines == [
        f"[2/5] classifier (train): published artifact is damaged (model.keras has "
        f"{len(original_model) // 2} bytes, expected {len(original_model)}); rebuilding",
        "[3/5] evaluate (evaluate): published artifact is damaged (metrics.json does not match "
        "its sha256); rebuilding",
    ], rerun.stderr[-3000:]
    statuses = step_statuses(rerun.stderr)
    assert statuses == {"images": ["cached"], "classifier": ["running", "done"],
                        "evaluate": ["running", "done"], "export_float": ["cached"],
                        "export_int8": ["cached"]}
    assert_every_published_artifact_verifies(runs_dir)
    # Rebuilt into the same place (same fingerprint), from scratch, to the same results.
    assert artifacts["classifier"].path == classifier.path
    assert len(model_file.read_bytes()) == len(original_model)
    assert without_wall_clock(metrics_file) == without_wall_clock(
        reference["evaluate"].path / "metrics.json")
    # Rebuilt by a process that had not run ingest: compare weights, not traced names.
    assert_same_results(artifacts, reference, graph=False)


# -- 4. a failing stage ------------------------------------------------------------------------


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("edgeline: error:")]


def assert_earlier_artifacts_intact(runs_dir: Path, reference: dict[str, Artifact],
                                    steps: tuple[str, ...]) -> None:
    assert_every_published_artifact_verifies(runs_dir)
    assert not staging_dirs(runs_dir)
    for step in steps:
        copy = Artifact.load(runs_dir / "artifacts" / reference[step].path.parent.name /
                             reference[step].path.name)
        assert copy.files == reference[step].files, step


def test_a_stage_failing_its_parity_gate_stops_the_run_with_exit_code_1(
        reference_run, config_path, tmp_path):
    reference = reference_run[2]
    runs_dir = copy_of(reference_run, tmp_path)
    # A float32 export matches Keras to ~1e-7, never to 1e-12: the gate refuses it.
    result = run_edgeline(config_path, runs_dir, "--set", "export_float.float_tolerance=1.0e-12")
    assert result.returncode == 1, result.stderr[-3000:]
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith("edgeline: error: step 'export_float' failed: ParityGateFailed")
    assert "max_abs_difference" in errors[0] and "1e-12" in errors[0]
    statuses = step_statuses(result.stderr)
    assert statuses == {"images": ["cached"], "classifier": ["cached"], "evaluate": ["cached"],
                        "export_float": ["running"]}  # export_int8 never started
    assert_earlier_artifacts_intact(runs_dir, reference, ("images", "classifier", "evaluate"))
    # Nothing of the refused export is published, and the lineage records why.
    export_fingerprints = {reference[s].path.name for s in EXPORT_STEPS}
    assert {d.name for d in published_dirs(runs_dir) if d.parent.name == "export"} == \
        export_fingerprints
    run_status, run_error = lineage_rows(
        runs_dir, "SELECT status, error FROM runs ORDER BY started DESC LIMIT 1")[0]
    assert run_status == "failed" and "export_float" in run_error
    failed = lineage_rows(runs_dir, "SELECT step, error FROM executions WHERE status='failed'")
    assert len(failed) == 1 and failed[0][0] == "export_float"
    assert failed[0][1].startswith("ParityGateFailed: export refused")


@pytest.fixture(scope="module")
def bad_split_run(reference_run, config_path, tmp_path_factory):
    """The evaluate step pointed at a split the Examples do not have: bad input."""
    runs_dir = copy_of(reference_run, tmp_path_factory.mktemp("bad_split"))
    result = run_edgeline(config_path, runs_dir, "--set", "evaluate.split=test")
    return runs_dir, result


def test_a_stage_given_bad_input_stops_the_run_with_exit_code_2(reference_run, bad_split_run):
    runs_dir, result = bad_split_run
    assert result.returncode == 2, result.stderr[-3000:]
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr[-3000:]
    assert "split='test'" in errors[0] and "no test-" in errors[0]
    assert "Traceback" not in result.stderr  # bad input: one line, no traceback
    statuses = step_statuses(result.stderr)
    assert statuses == {"images": ["cached"], "classifier": ["cached"],
                        "evaluate": ["running"]}
    assert_earlier_artifacts_intact(runs_dir, reference_run[2], ("images", "classifier"))
    failed = lineage_rows(runs_dir, "SELECT step, error FROM executions WHERE status='failed'")
    assert [step for step, _ in failed] == ["evaluate"]


def test_a_bad_input_error_names_the_failing_step(bad_split_run):
    _, result = bad_split_run
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "'evaluate'" in errors[0], errors


# -- 5. Ctrl-C and SIGTERM ---------------------------------------------------------------------
#
# A user's Ctrl-C (SIGINT to the whole foreground process group) and a scheduler's SIGTERM (to
# the CLI's process) stop a run inside train: one line, the documented exit code, no
# traceback, nothing half-published, the run recorded as interrupted (it read "failed"), and
# a rerun completes from the cache and the epoch checkpoint.


@pytest.mark.parametrize("how, exit_code, line", [
    ("SIGINT to the group", 130, "edgeline: interrupted"),
    ("SIGTERM to the process", 128 + signal.SIGTERM, "edgeline: terminated"),
])
def test_a_signal_inside_train_ends_the_run_as_interrupted(reference_run, config_path,
                                                          tmp_path, how, exit_code, line):
    runs_dir = copy_of(reference_run, tmp_path)
    for artifact in published_dirs(runs_dir):  # keep ingest's, so that train starts at once
        if Artifact.load(artifact).producer.split(":")[0] != "images":
            shutil.rmtree(artifact)
    run = WatchedRun(edgeline_command(config_path, runs_dir))
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while not inside_train(runs_dir)(run):
            assert run.process.poll() is None and time.monotonic() < deadline, run.output
            time.sleep(0.02)
        if how.startswith("SIGINT"):
            os.killpg(run.process.pid, signal.SIGINT)
        else:
            run.process.send_signal(signal.SIGTERM)
        result = run.wait()
    finally:
        run.stop_if_running()
    assert result.returncode == exit_code, result.stdout[-3000:]
    assert line in result.stdout.splitlines() and "Traceback" not in result.stdout
    assert not staging_dirs(runs_dir)
    assert_every_published_artifact_verifies(runs_dir)
    assert lineage_rows(runs_dir, "SELECT status FROM runs ORDER BY started")[-1] == (
        "interrupted",)
    executions = lineage_rows(runs_dir, "SELECT step, status FROM executions "
                                        "WHERE step='classifier' ORDER BY started")
    assert executions[-1] == ("classifier", "interrupted")
    rerun = run_edgeline(config_path, runs_dir)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert step_statuses(rerun.stderr)["images"] == ["cached"]


def test_ctrl_c_inside_ingest_is_one_line_and_no_worker_traceback(reference_run, config_path,
                                                                  tmp_path):
    """Ctrl-C reaches Beam's worker processes too (one process group): they and the threads
    serving them printed 4 tracebacks around the CLI's line. Now their output goes aside."""
    runs_dir = copy_of(reference_run, tmp_path)
    for artifact in published_dirs(runs_dir):  # every step from ingest on is rebuilt
        shutil.rmtree(artifact)
    run = WatchedRun(edgeline_command(config_path, runs_dir))
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while not inside_ingest(runs_dir)(run):
            assert run.process.poll() is None and time.monotonic() < deadline, run.output
            time.sleep(0.02)
        os.killpg(run.process.pid, signal.SIGINT)
        result = run.wait()
    finally:
        run.stop_if_running()
    assert result.returncode == 130, result.stdout[-3000:]
    assert "Traceback" not in result.stdout and "Error" not in result.stdout, result.stdout
    assert result.stdout.splitlines()[-1] == "edgeline: interrupted"
    assert not staging_dirs(runs_dir) and not published_dirs(runs_dir)
    assert lineage_rows(runs_dir, "SELECT status FROM runs ORDER BY started")[-1] == (
        "interrupted",)
    rerun = run_edgeline(config_path, runs_dir, "--only", "images")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert tfrecord_bytes(listed_artifacts(rerun.stdout)["images"]) == tfrecord_bytes(
        reference_run[2]["images"])


# -- 6. storage: a full disk, a read-only folder, a file for a folder ---------------------------
# A small disk is a tmpfs mounted for the test (CI runs as root, as this machine does).


@contextlib.contextmanager
def small_disk(directory: Path, size_bytes: int):
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs",
                              str(directory)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a small disk is a tmpfs mount, refused here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def remount(directory: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(directory)], check=True)


def disk_usage(directory: Path) -> int:
    """Bytes the files take on disk (whole blocks: the demo images are small files)."""
    return sum(p.stat().st_blocks * 512 for p in directory.rglob("*") if p.is_file())


def leave_free(disk: Path, free_bytes: int) -> None:
    """Resizes the mounted disk to what it holds plus ``free_bytes``."""
    remount(disk, f"size={shutil.disk_usage(disk).used + free_bytes}")


def fill(directory: Path) -> None:
    """Writes a file until the disk refuses: nothing is left."""
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    with contextlib.suppress(OSError):  # what the last partial block left
        with open(directory / "filler-tail", "wb") as f:
            while True:
                f.write(b"\0" * 512)
                f.flush()


def assert_one_error_line(result: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and all(p in errors[0] for p in phrases), result.stderr[-3000:]
    assert errors[0] == result.stderr.strip().splitlines()[-1]


def runs_list(runs_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeline", "runs", "list", "--runs-dir",
                           str(runs_dir)], capture_output=True, text=True,
                          env=child_environment(), timeout=120)


def test_a_full_disk_inside_a_step_is_one_line_and_the_rerun_completes(reference_run,
                                                                       config_path, tmp_path):
    """Ingest's shards do not fit: the step fails with one line, the run is recorded as
    failed, nothing is half-published, `runs list` works, and once there is room the rerun
    writes the same bytes as a clean run."""
    reference = reference_run[2]
    images = reference["images"]
    assert disk_usage(images.path) > 2 << 20  # the shards cannot fit in the 1 MB left
    with small_disk(tmp_path / "disk", 2 * disk_usage(reference_run[0]) + (64 << 20)) as disk:
        runs_dir = copy_of(reference_run, disk)
        shutil.rmtree(runs_dir / "artifacts" / images.path.parent.name / images.path.name)
        leave_free(disk, 1 << 20)
        result = run_edgeline(config_path, runs_dir, "--only", "images")
        assert_one_error_line(result, 2, "step 'images' (ingest)",
                              "no space left on the device", str(runs_dir))
        assert not staging_dirs(runs_dir)
        assert_earlier_artifacts_intact(runs_dir, reference, ("classifier", "evaluate"))
        assert lineage_rows(runs_dir, "SELECT status FROM runs ORDER BY started")[-1] == (
            "failed",)
        listed = runs_list(runs_dir)
        assert listed.returncode == 0 and "failed" in listed.stdout.splitlines()[0]

        leave_free(disk, 64 << 20)
        rerun = run_edgeline(config_path, runs_dir, "--only", "images")
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert tfrecord_bytes(listed_artifacts(rerun.stdout)["images"]) == tfrecord_bytes(images)


def test_a_full_disk_before_the_run_starts_is_one_line_and_runs_list_still_works(
        reference_run, config_path, tmp_path):
    with small_disk(tmp_path / "disk", 2 * disk_usage(reference_run[0]) + (64 << 20)) as disk:
        runs_dir = copy_of(reference_run, disk)
        leave_free(disk, 1 << 20)
        fill(disk)
        result = run_edgeline(config_path, runs_dir, "--force")
        assert_one_error_line(result, 2, "no space left on the device", str(runs_dir))
        listed = runs_list(runs_dir)
        assert listed.returncode == 0, listed.stderr[-3000:]
        assert [line.split()[2] for line in listed.stdout.splitlines()] == ["complete"]

        for filler in disk.glob("filler*"):
            filler.unlink()
        rerun = run_edgeline(config_path, runs_dir)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert set(step_statuses(rerun.stderr)) == set(STEPS)
        assert all(words == ["cached"] for words in step_statuses(rerun.stderr).values())


def test_a_read_only_runs_directory_is_one_line_and_can_still_be_read(reference_run,
                                                                     config_path, tmp_path):
    with small_disk(tmp_path / "disk", 2 * disk_usage(reference_run[0]) + (64 << 20)) as disk:
        runs_dir = copy_of(reference_run, disk)
        before = {p: p.read_bytes() for p in runs_dir.rglob("*") if p.is_file()}
        remount(disk, "ro")
        result = run_edgeline(config_path, runs_dir)
        assert_one_error_line(result, 2, "the file system is read-only", str(runs_dir))
        listed = runs_list(runs_dir)
        assert listed.returncode == 0 and "complete" in listed.stdout, listed.stderr[-3000:]
        shown = subprocess.run([sys.executable, "-m", "edgeline", "runs", "show", "--runs-dir",
                                str(runs_dir)], capture_output=True, text=True,
                               env=child_environment(), timeout=120)
        assert shown.returncode == 0 and "export_int8" in shown.stdout, shown.stderr[-3000:]
        report = subprocess.run([sys.executable, "-m", "edgeline", "runs", "report",
                                 "--runs-dir", str(runs_dir)], capture_output=True, text=True,
                                env=child_environment(), timeout=120)
        assert_one_error_line(report, 2, "the report cannot be written",
                              "the file system is read-only")
        remount(disk, "rw")
        assert {p: p.read_bytes() for p in runs_dir.rglob("*") if p.is_file()} == before
        rerun = run_edgeline(config_path, runs_dir)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert all(words == ["cached"] for words in step_statuses(rerun.stderr).values())


def test_a_runs_directory_that_is_a_file_is_one_line(config_path, tmp_path):
    not_a_folder = tmp_path / "runs"
    not_a_folder.write_text("mine\n")
    result = run_edgeline(config_path, not_a_folder)
    assert_one_error_line(result, 2, "is a file, not a folder", str(not_a_folder))
    assert not_a_folder.read_text() == "mine\n"


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_standalone_ingest_onto_a_full_or_read_only_disk_is_one_line(reference_run,
                                                                       tmp_path, fault):
    """`edgeline ingest --output` on a full disk printed 17 tracebacks (its Beam workers'
    among them); now one line, and nothing is left in the folder."""
    [source] = (reference_run[0] / "cache").glob("builtin-classification-*")
    with small_disk(tmp_path / "disk", 64 << 20) as disk:
        if fault == "full":
            fill(disk)
        else:
            remount(disk, "ro")
        output = disk / "examples"
        result = subprocess.run(
            [sys.executable, "-m", "edgeline", "ingest", "imagenet", str(source), "--output",
             str(output), "--workers", "2", "--no-progress"],
            capture_output=True, text=True, env=child_environment(), timeout=RUN_TIMEOUT_SECONDS)
        problem = ("no space left on the device" if fault == "full"
                   else "the file system is read-only")
        assert_one_error_line(result, 2, f"--output {str(output)!r}", problem)
        assert not output.exists() and not list(disk.glob(".examples.tmp-*"))

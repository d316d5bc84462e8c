"""Issue 17, a console people like reading: edgeline's own lines only, progress bars in a
terminal and plain lines elsewhere, an end-of-run table, one clear line for a failure."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from edgeline.pipeline import console

# Dependency noise as a user sees it: TensorFlow/absl/glog prefixes ("I0000 00:00:17...
# port.cc:153]"), Python and C++ warnings, the oneDNN and CUDA notes, Beam's loggers.
NOISE = re.compile(r"^[IWEF]\d{4}|WARNING|Warning:|oneDNN|cuda|apache_beam")

# The demo's first steps, shrunk: its ingest, a classifier of a few steps and its int8 export
# (the gate opened wide: a few steps give an untrained model, which is not what is tested).
SHRINK = ["--set", "classifier.epochs=1", "--set", "classifier.steps_per_epoch=4",
          "--set", "classifier.validation_steps=2",
          "--set", "export_classifier_int8.max_metric_drop=1.0",
          "--set", "export_classifier_int8.parity_size=32",
          "--set", "export_classifier_int8.representative_size=16"]
FIRST_STEPS = ["--only", "images", "--only", "classifier", "--only", "export_classifier_int8"]


def _edgeline(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "edgeline", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, **kwargs)


def _noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if NOISE.search(line)]


# -- progress: a bar in a terminal, plain lines in a log ------------------------------------

PROGRESS_SCRIPT = textwrap.dedent("""
    from edgeline.pipeline import console
    with console.quiet():
        with console.progress(20, "demo work", "item") as progress:
            for step in range(20):
                progress.update(1, loss=1.0 / (step + 1))
        console.log("done")
""")


def test_without_a_terminal_progress_is_plain_periodic_lines():
    result = subprocess.run([sys.executable, "-c", PROGRESS_SCRIPT], capture_output=True,
                            text=True, check=True)
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr
    # A line at every tenth of the work, with the figures so far; then edgeline's own line.
    assert lines[0] == "demo work: 2/20 item, loss 0.5"
    assert lines[-2] == "demo work: 20/20 item, loss 0.05"
    assert len(lines) == 11 and lines[-1] == "done"


def test_in_a_terminal_progress_is_a_bar():
    import fcntl
    import pty
    import struct
    import termios

    primary, secondary = pty.openpty()
    # A terminal 120 columns wide, as a user's window reports its size.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([sys.executable, "-c", PROGRESS_SCRIPT], stdout=secondary,
                               stderr=secondary, stdin=subprocess.DEVNULL)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the pty closed: the process is gone
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert process.wait() == 0
    text = output.decode("utf-8", "replace")
    # tqdm redraws one line with carriage returns: a bar at 100%, the live figure beside it.
    assert "\r" in text
    assert re.search(r"demo work: 100%\|[^|]*\| 20/20 .*loss 0\.05", text), text[-500:]
    assert "demo work: 2/20 item" not in text  # no plain lines in a terminal
    assert "done" in text


def test_edgelines_own_warnings_still_show_when_dependencies_are_quiet():
    script = textwrap.dedent("""
        import warnings
        from edgeline.pipeline import console
        with console.quiet():
            warnings.warn_explicit("a dependency's note", DeprecationWarning, "x.py", 1,
                                   module="tensorflow.python.framework")
            warnings.warn_explicit("edgeline's own", UserWarning, "y.py", 1,
                                   module="edgeline.pipeline.config")
    """)
    result = subprocess.run([sys.executable, "-W", "always", "-c", script],
                            capture_output=True, text=True, check=True)
    assert "edgeline's own" in result.stderr
    assert "a dependency's note" not in result.stderr


def test_native_log_lines_are_dropped_and_everything_else_passes():
    # What TensorFlow's and LiteRT's C++ code writes to file descriptor 2, beside a line that
    # is not a log line (a crash report would be one): only the log lines go.
    script = textwrap.dedent("""
        import os
        from edgeline.pipeline import console
        with console.quiet():
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called "
                        b"are written to STDERR\\n")
            os.write(2, b"I0000 00:00:1796234538.512011   22257 port.cc:153] oneDNN custom\\n")
            os.write(2, b"E0000 00:00:1796234542.025162   22257 cuda_platform.cc:52] cuInit\\n")
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
            os.write(2, b"Fatal Python error: a line that is not a log line\\n")
            console.log("edgeline: its own line")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    # (In either order: the native lines pass through the filter's thread.)
    assert sorted(result.stderr.splitlines()) == [
        "Fatal Python error: a line that is not a log line", "edgeline: its own line"]
    verbose = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             check=True, env={**os.environ, console.VERBOSE_ENV: "1"})
    assert len(verbose.stderr.splitlines()) == 6


def test_table_and_figures_read_as_a_person_writes_them():
    assert console.table(("step", "time"), [("images", "1.0s"), ("classifier", "1m 02s")]) == [
        "step        time", "----------  ------", "images      1.0s", "classifier  1m 02s"]
    assert [console.format_figure(v) for v in (4004, 0.26601, True, None, 1234.5)] == [
        "4,004", "0.266", "yes", "-", "1,234"]
    assert [console.duration(s) for s in (12.34, 62, 3725)] == ["12.3s", "1m 02s", "1h 02m"]


def test_verbose_flag_is_taken_before_and_after_the_command():
    from edgeline.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "runs", "list"]).verbose
    assert parser.parse_args(["runs", "list", "--verbose"]).verbose
    assert parser.parse_args(["export", "tflite", "m", "--output", "o", "-v"]).verbose
    assert not hasattr(parser.parse_args(["runs", "list"]), "verbose")


# -- a demo-like run through the CLI --------------------------------------------------------


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory, repo_root):
    runs = tmp_path_factory.mktemp("console") / "runs"
    result = _edgeline("run", str(repo_root / "configs" / "demo.yaml"), *FIRST_STEPS, *SHRINK,
                       "--runs-dir", str(runs))
    assert result.returncode == 0, result.stderr[-3000:]
    return result, runs


@pytest.mark.slow
def test_a_fresh_run_prints_no_dependency_noise_and_v_brings_it_back(quiet_run, repo_root):
    """Acceptance 1: the demo's ingest, a one-epoch classifier and its int8 export, run in a
    new runs directory, print 0 lines of dependency noise; with -v they show."""
    result, runs = quiet_run
    assert _noise(result.stdout + result.stderr) == []
    assert "[1/12] images (ingest): running" in result.stderr  # edgeline's own lines stay
    assert "train: epoch 1/1: loss " in result.stderr
    assert "export: calibrating: 16/16 image" in result.stderr
    verbose = _edgeline("run", str(repo_root / "configs" / "demo.yaml"), *FIRST_STEPS, *SHRINK,
                        "--runs-dir", str(runs), "--force", "--only", "images", "-v")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    noise = _noise(verbose.stdout + verbose.stderr)
    assert any("oneDNN" in line for line in noise), noise
    assert any(re.match(r"^[IWEF]\d{4}", line) for line in noise), noise


@pytest.mark.slow
def test_the_run_ends_with_a_table_of_its_steps(quiet_run):
    """Acceptance 3: a row per step with its status, time and headline figure; then where the
    report and the .tflite are; `runs show` prints the same table, --json as before."""
    result, runs = quiet_run
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == [
        "step", "stage", "status", "time", "headline"])
    rows = {line.split()[0]: line.strip() for line in lines[header + 2:header + 5]}
    assert re.match(r"images +ingest +built +\d+\.\ds +train examples 4,004, "
                    r"validation examples 500, classes 10$", rows["images"])
    assert re.match(r"classifier +train +built +[\dms .]+ +top-1 0\.\d+$", rows["classifier"])
    assert re.match(r"export_classifier_int8 +export +built +[\dms .]+ +bytes [\d,]+, "
                    r"latency ms \(1 thread\) [\d.]+, parity passed yes$",
                    rows["export_classifier_int8"])
    after = lines[header + 5:]
    assert after[0] == "" and after[1].startswith("report: ") and "report.html" in after[1]
    assert after[2].startswith("tflite: ") and "model.tflite" in after[2]
    assert after[3].startswith("details: edgeline runs show ")
    assert "3 step(s) built, 0 cached" in result.stdout

    shown = _edgeline("runs", "show", "--runs-dir", str(runs))
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"classifier +train +built +[\dms .]+ +top-1 0\.\d+", shown.stdout)
    as_json = _edgeline("runs", "show", "--json", "--runs-dir", str(runs))
    assert {a["step"] for a in __import__("json").loads(as_json.stdout)["artifacts"]} == {
        "images", "classifier", "export_classifier_int8"}


@pytest.mark.slow
def test_a_corrupt_saved_model_given_to_export_is_one_clear_line(quiet_run, tmp_path):
    """Acceptance 4: a dependency's failure (TensorFlow cannot read the SavedModel) still ends
    in one clear line that names the problem and points at -v; exit 2 (bad input) or 1."""
    _, runs = quiet_run
    [model] = [p.parent for p in (runs / "artifacts" / "train").glob("*/artifact.json")]
    broken = tmp_path / "broken_model"
    shutil.copytree(model, broken)
    (broken / "artifact.json").unlink()  # a folder of files, not the published artifact
    (broken / "saved_model" / "saved_model.pb").write_bytes(b"\x08\x01garbage, not a proto")
    result = _edgeline("export", "tflite", str(broken), "--source", "saved_model",
                       "--no-latency", "--no-parity-check", "--output", str(tmp_path / "out"))
    assert result.returncode in (1, 2), result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgeline: ")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0]
    assert "saved_model" in errors[0]
    assert "Traceback" not in result.stderr and _noise(result.stderr) == []
    if result.returncode == 1:  # not recognized as bad input: the details are one flag away
        assert console.VERBOSE_HINT in errors[0]

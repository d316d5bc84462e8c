"""What edgeline prints: its own lines, progress bars, tables; its dependencies' noise kept out.

Every stage and command writes through this module, so a user reads one voice:

    quiet(verbose)    the CLI's session: dependency logging silenced at its source (Python
                      loggers and warnings scoped to the dependency's modules; the native
                      libraries' lines, which no setting reaches, filtered off file descriptor
                      2), or everything as the dependencies print it with ``-v``
    progress(...)     a bar in a terminal (tqdm, on stderr), plain periodic lines otherwise
                      (CI logs, pipes), with the figures a step has so far (loss, return)
    log(message)      one of edgeline's lines, printed above any live bar
    table(...)        a plain aligned text table (the end-of-run summary, ``runs show``)

Why a filter on file descriptor 2: TensorFlow 2.21, LiteRT and gRPC log through Abseil's C++
logging, which writes every message to stderr until ``absl::InitializeLog()`` is called (it
never is) and ignores ``TF_CPP_MIN_LOG_LEVEL`` for those; LiteRT's minimal logger ("INFO:
Created TensorFlow Lite XNNPACK delegate") has no setting at all. Those lines have fixed
prefixes, and only lines with those prefixes are dropped; anything else a library writes to
the descriptor (a crash report) passes through.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import edgeline

VERBOSE_ENV = edgeline.VERBOSE_ENV
VERBOSE_HINT = "run with -v for the details"

# Modules whose warnings are dependency noise (a warning's ``module`` is where it was raised).
# edgeline's own warnings (module edgeline.*) are not among them, so they still show.
DEPENDENCY_MODULES = (
    r"(tensorflow|tf_keras|keras|tf_agents|tensorflow_model_optimization|"
    r"tensorflow_probability|tensorflow_datasets|tensorflow_metadata|absl|apache_beam|gym|"
    r"ai_edge_litert|google|h5py|flatbuffers|numpy\.core\._multiarray_umath|jax|ml_dtypes|"
    r"tf2onnx|pygame|ale_py)(\..*)?$"
)
# Python loggers of the dependencies: only their errors are printed in the quiet mode.
DEPENDENCY_LOGGERS = ("tensorflow", "absl", "apache_beam", "tf_keras", "keras", "h5py",
                      "matplotlib", "PIL", "jax", "gym", "tensorflow_model_optimization",
                      "tf_agents", "google", "grpc", "urllib3")
# Autograph's generated code is compiled from a temporary file, so its SyntaxWarnings carry
# that file's module name ("__autograph_generated_file..."), not TensorFlow's.
# warnings.filterwarnings matches the module regex at the start of a compile-time warning's
# module, which is the file's path ("/tmp/__autograph_generated_file...").
AUTOGRAPH_MODULE = r".*__autograph_generated_file.*"
# Native log lines: Abseil/glog ("I0000 00:00:1796234538.512011   22257 port.cc:153] ..."),
# the line Abseil prints before its first one, and LiteRT's minimal logger ("INFO: ...").
NATIVE_NOISE = re.compile(
    rb"^([IWEF]\d{4} \d+:\d+:\d+\.\d+ +\d+ [\w.\-/]+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    # gym's import-time notice (gym/__init__.py prints it to stderr; Gymnasium is out, see
    # pyproject.toml)
    rb"|Gym has been unmaintained since 2022|Please upgrade to Gymnasium, the maintained"
    rb"|See the migration guide at https://gymnasium\.farama\.org"
    rb"|INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite|TfLite)"
    rb"|WARNING: Logging before InitGoogleLogging)"
)


def verbose() -> bool:
    """Whether the user asked for everything (``-v`` sets the variable for child processes)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def is_terminal() -> bool:
    """Whether edgeline's stderr is a terminal (bars) or a log or pipe (plain lines). With the
    native filter in place, fd 2 is a pipe: the answer is the original descriptor's."""
    if _filter is not None:
        return _filter.terminal
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# -- quiet by default -------------------------------------------------------------------------


class NativeStderrFilter:
    """File descriptor 2 as a pipe; a thread forwards what arrives to the original descriptor
    but for :data:`NATIVE_NOISE` lines. ``sys.stderr`` (when it is the process's own) writes to
    a copy of the original descriptor, so edgeline's lines and bars do not pass through it."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.original = os.dup(2)
        self.terminal = os.isatty(self.original)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        self._thread = threading.Thread(target=self._forward, daemon=True,
                                        name="edgeline-stderr-filter")
        self._thread.start()
        self._previous_stderr = None
        if sys.stderr is sys.__stderr__ and sys.stderr is not None:
            self._previous_stderr = sys.stderr
            sys.stderr = open(os.dup(self.original), "w", buffering=1, encoding="utf-8",
                              errors="replace", closefd=True)

    def _forward(self) -> None:
        pending = b""
        while chunk := os.read(self._read, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not NATIVE_NOISE.match(line))
            # A bar redrawn with carriage returns (a child process's, or one written while
            # Beam's workers hold the descriptor) is shown as it comes, not at its newline.
            if b"\r" in pending and not NATIVE_NOISE.match(pending):
                kept, pending = kept + pending, b""
            if kept:
                os.write(self.original, kept)
        if pending and not NATIVE_NOISE.match(pending):
            os.write(self.original, pending)

    def close(self) -> None:
        if self._previous_stderr is not None:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = self._previous_stderr
        os.dup2(self.original, 2)  # closes the pipe's last writer: the thread reads its end
        self._thread.join(timeout=2.0)  # a child still holding the pipe may keep it open
        if not self._thread.is_alive():
            os.close(self._read)
        os.close(self.original)


_filter: NativeStderrFilter | None = None


def _silence_gym_notice() -> None:
    """gym prints a notice to stderr when it is first imported, from ``gym_notices`` (keyed by
    gym's version; Gymnasium is out, see pyproject.toml). tf-agents imports gym wherever its
    agents are imported, so the notice is emptied at its source; -v leaves it."""
    try:
        from gym_notices import notices
    except ImportError:
        return
    notices.notices.clear()


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def _quiet_python() -> contextlib.ExitStack:
    """Dependency loggers at ERROR and their warnings off, until the returned stack closes."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    for category in (Warning,):
        warnings.filterwarnings("ignore", category=category, module=DEPENDENCY_MODULES)
    warnings.filterwarnings("ignore", category=SyntaxWarning, module=AUTOGRAPH_MODULE)
    levels = {name: logging.getLogger(name).level for name in DEPENDENCY_LOGGERS}
    for name in DEPENDENCY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
        # A level alone does not hold: parsing absl's flags (tf-agents' policy saver does)
        # sets the absl logger back to WARNING.
        logging.getLogger(name).addFilter(_errors_only)

    def restore() -> None:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).removeFilter(_errors_only)

    stack.callback(restore)
    return stack


@contextlib.contextmanager
def quiet(verbose_requested: bool = False) -> Iterator[None]:
    """A command's session: quiet unless ``verbose_requested`` or EDGELINE_VERBOSE is set.

    Must be entered before the dependencies are imported (their import-time lines are the
    first noise): the CLI enters it before it runs a command, which imports them lazily.
    """
    global _filter
    if verbose_requested:
        os.environ[VERBOSE_ENV] = "1"  # child processes (Beam workers, tools) see it too
    if verbose():
        for name in edgeline.QUIETED_ENV:  # the defaults edgeline set, not the user's
            os.environ.pop(name, None)
        yield
        return
    if "TF_CPP_MIN_LOG_LEVEL" in edgeline.QUIETED_ENV:  # edgeline's default, not the user's
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    _silence_gym_notice()
    nested = _filter is not None
    with _quiet_python():
        if not nested:
            _filter = NativeStderrFilter()
        try:
            yield
        finally:
            if not nested:
                active, _filter = _filter, None
                active.close()


# -- edgeline's lines and progress ------------------------------------------------------------

_bars: list[Any] = []


def _terminal_columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def log(message: str) -> None:
    """One of edgeline's lines on stderr, above a live bar if there is one."""
    if _bars:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


def _figures_text(figures: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {format_figure(v)}" for k, v in figures.items() if v is not None)


class Progress:
    """Progress of one phase of work: a tqdm bar in a terminal, else a plain line at every
    tenth of ``total`` (and at the end), so a CI log gets about ten lines, not thousands.

    ``figures`` (loss, the latest evaluation return) are shown beside the count; ``lines``
    False keeps the plain mode silent but for what :meth:`line` prints (a training run prints
    one line per epoch itself).
    """

    def __init__(self, total: int | None, description: str, unit: str = "it", *,
                 bar: bool | None = None, lines: bool = True, initial: int = 0):
        self.total = total
        self.description = description
        self.unit = unit
        self.done = initial
        self.figures: dict[str, Any] = {}
        self.lines = lines
        self._bar = None
        if bar if bar is not None else is_terminal():
            from tqdm import tqdm

            # A terminal that reports no width (a fresh pty) would get an empty bar.
            width = {} if _terminal_columns() else {"ncols": 100}
            self._bar = tqdm(total=total, desc=description, unit=unit, initial=initial,
                             file=sys.stderr, dynamic_ncols=not width, leave=True, **width)
            _bars.append(self._bar)
        self._step = max(1, (total or 0) // 10)
        self._printed = initial

    @property
    def is_bar(self) -> bool:
        return self._bar is not None

    def update(self, n: int = 1, **figures: Any) -> None:
        """``n`` more done; ``figures`` replace the ones shown."""
        self.done += n
        self.figures.update(figures)
        if self._bar is not None:
            if figures:
                self._bar.set_postfix_str(_figures_text(self.figures), refresh=False)
            self._bar.update(n)
        elif self.lines and self.done - self._printed >= self._step:
            self._plain_line()

    def set(self, done: int, **figures: Any) -> None:
        """The count is ``done`` now (a counter read from elsewhere)."""
        if done != self.done or figures:
            self.update(done - self.done, **figures)

    def line(self, message: str) -> None:
        log(message)

    def iterate(self, items: Iterable[Any]) -> Iterator[Any]:
        """Each of ``items``, counted once the caller is done with it (or skips it)."""
        for item in items:
            yield item
            self.update(1)

    def describe(self, description: str) -> None:
        """A new label (the epoch a bar is in)."""
        self.description = description
        if self._bar is not None:
            self._bar.set_description_str(description, refresh=False)

    def _plain_line(self) -> None:
        self._printed = self.done
        of = f"/{self.total}" if self.total else ""
        figures = _figures_text(self.figures)
        log(f"{self.description}: {self.done}{of} {self.unit}" + (f", {figures}" if figures
                                                                   else ""))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            _bars.remove(self._bar)
            self._bar = None
        elif self.lines and self.done != self._printed:
            self._plain_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int | None, description: str, unit: str = "it", **kwargs: Any) -> Progress:
    return Progress(total, description, unit, **kwargs)


# -- tables -----------------------------------------------------------------------------------


def format_figure(value: Any) -> str:
    """A figure as a person reads it: 4 significant decimals, thousands separated, yes/no."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> list[str]:
    """Lines of a plain text table: a header, a rule, the rows; columns padded to fit."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def render(row: Sequence[str]) -> str:
        return indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()

    rule = indent + "  ".join("-" * w for w in widths)
    return [render(cells[0]), rule, *(render(row) for row in cells[1:])]


def duration(seconds: float | None) -> str:
    """``12.3s``, ``4m 05s``, ``1h 02m``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"

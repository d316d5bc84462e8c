"""Errors that the CLI turns into one clear line and exit code 2."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterator


class UserError(Exception):
    """Bad input or config: the message names the problem and the value received.

    The CLI prints it as one line and exits with code 2; no traceback is shown, because the
    fix is on the user's side.
    """


class ConfigError(UserError):
    """A config key is unknown, has the wrong type, or names a path that does not exist."""


class StageFailed(Exception):
    """A stage raised; carries the step name so the runner can say which stage failed."""

    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"step '{step}' failed: {type(cause).__name__}: {cause}")
        self.step = step
        self.cause = cause


class StorageError(UserError):
    """The storage refused a write: a full disk, a read-only or forbidden folder, a file where
    a folder should be. Not a bug to trace: one line naming the path and the cause (exit code
    2), and what was finished before it stays published."""

    @staticmethod
    def in_runs_dir(runs_dir, problem: str, step: str | None = None) -> str:
        """The message for a runs directory that refused a write (of ``step``, if given)."""
        where = f"step {step}: " if step else ""
        return (f"{where}runs directory {str(runs_dir)!r}: {problem}; rerun once it can be "
                "written, or pass another --runs-dir (finished steps are kept)")


# errno -> what the storage said, in words a user acts on.
_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file stands where a folder is needed",
}
# The same causes as other layers word them: SQLite, TensorFlow's file system, Beam workers
# (which re-raise a worker's OSError as text).
_STORAGE_MESSAGES = (
    ("database or disk is full", _STORAGE_ERRNOS[errno.ENOSPC]),
    ("no space left on device", _STORAGE_ERRNOS[errno.ENOSPC]),
    ("disk quota exceeded", _STORAGE_ERRNOS[errno.EDQUOT]),
    ("attempt to write a readonly database", _STORAGE_ERRNOS[errno.EROFS]),
    ("read-only file system", _STORAGE_ERRNOS[errno.EROFS]),
)


def storage_problem(err: BaseException | None) -> str | None:
    """What the storage said, if ``err`` or an exception it was raised from or while
    handling is a full disk, a read-only or forbidden folder, or a file in a folder's place;
    otherwise None. Follows ``__cause__``/``__context__``, because libraries wrap the OSError
    (Beam in a RuntimeError, TensorFlow in its own errors)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:
            where = f" ({err.filename})" if err.filename else ""
            return _STORAGE_ERRNOS[err.errno] + where
        text = str(err).lower()
        for needle, problem in _STORAGE_MESSAGES:
            if needle in text:
                return problem
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def storage_errors(message: Callable[[str], str]) -> Iterator[None]:
    """Re-raises a failure that :func:`storage_problem` recognizes as a :class:`StorageError`
    whose text is ``message(problem)``: one line where the user sees it, in place of the
    tracebacks of every library that met the full or read-only disk."""
    try:
        yield
    except BaseException as err:
        problem = None if isinstance(err, UserError) else storage_problem(err)
        if problem is None:
            raise
        raise StorageError(message(problem)) from err

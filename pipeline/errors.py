"""Errors that the CLI turns into one clear line and exit code 2."""


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

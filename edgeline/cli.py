"""The one entry point, ``edgeline``.

Each stage ships its own subcommands in ``edgeline/components/<stage>/cli.py`` (a
``register(subparsers)`` function) and its pipeline binding in ``.../<stage>/stage.py`` (a
``STAGES`` tuple). Both are imported lazily so that ``edgeline --help`` does not pay for
importing TensorFlow.

Exit codes: 0 success, 2 bad input or config (one line naming the problem), 1 internal failure.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time

import edgeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TF)

# predict is a command, not a stage: it has a cli module and no stage module.
COMPONENTS = ("ingest", "train", "rl", "evaluate", "compress", "export", "predict")
# Commands whose whole process is what users time (against pycocotools, for coco-eval): when
# one is the command, its module alone is registered, so it pays for no other stage's imports
# (the full parser imports every stage's options, about a fifth of a second).
STANDALONE_COMMANDS = {"coco-eval": "edgeline.components.evaluate.coco_cli"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), as the contract asks; and
    every command and subcommand takes -v/--verbose, before or after its arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand's parser does not reset what `edgeline -v run` set.
        self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="show everything the dependencies print (TensorFlow, Beam, "
                          "absl logs and warnings) and full tracebacks; also EDGELINE_VERBOSE=1")

    def error(self, message: str) -> None:  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _component_module(component: str, module: str):
    name = f"edgeline.components.{component}.{module}"
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def stage_registry():
    """Every stage the installed components provide, and the view of each artifact type
    (how the run report shows it), registered with the runner."""
    from edgeline.common import artifact_types
    from edgeline.pipeline.stage import StageRegistry

    registry = StageRegistry()
    for component in COMPONENTS:
        module = _component_module(component, "stage")
        for stage in getattr(module, "STAGES", ()) if module else ():
            registry.register(stage)
    for view in artifact_types.VIEWS:
        registry.register_view(view.type_name, view)
    return registry


def _cmd_run(args: argparse.Namespace) -> int:
    from edgeline.pipeline import summary
    from edgeline.pipeline.config import load_pipeline_config
    from edgeline.pipeline.runner import run_pipeline

    registry = stage_registry()
    config = load_pipeline_config(args.config, registry.options_types(), args.set)

    def end_of_run(outcome) -> None:  # failed or not: the table, then where things are
        sys.stderr.flush()
        print("\n" + "\n".join(summary.end_of_run_lines(outcome, registry.views())),
              flush=True)

    run_pipeline(
        config,
        registry,
        only=args.only or (),
        start=args.start,
        force=args.force,
        runs_dir=args.runs_dir,
        on_end=end_of_run,
    )
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    import os

    from edgeline.pipeline.errors import UserError
    from edgeline.pipeline.store import RunStore

    if not os.path.isdir(args.runs_dir):
        raise UserError(f"no runs directory at {args.runs_dir!r} (pass --runs-dir)")
    if args.output and args.action != "report":
        raise UserError(f"--output is for 'edgeline runs report' (received action "
                        f"{args.action!r})")
    if args.action == "report":
        from edgeline.pipeline.report import write_report

        html_path, md_path = write_report(args.runs_dir, args.run or "latest", args.output,
                                          views=stage_registry().views())
        print(html_path)
        print(md_path)
        return 0
    store = RunStore(args.runs_dir, read_only=True)
    try:
        if args.action == "list":
            runs = store.list_runs()
            if args.json:
                print(json.dumps(runs, indent=2))
            for run in [] if args.json else runs:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started"]))
                print(f"{run['id']}  {run['pipeline']:<24} {run['status']:<9} {when}")
            return 0
        run_id = store.resolve_run(args.run)
        info = store.show_run(run_id)
        if args.json:
            print(json.dumps(info, indent=2, default=str))
            return 0
        from edgeline.pipeline import report, summary

        entries = report.step_artifacts(store, info)
        print("\n".join(summary.run_lines(info, entries, stage_registry().views())))
        return 0
    finally:
        store.close()


def _cmd_models(args: argparse.Namespace) -> int:
    from edgeline.models import registry

    for name in registry.names():
        print(name)
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``edgeline`` parser; with ``command`` one of STANDALONE_COMMANDS, that command's
    subparser alone."""
    parser = _Parser(
        prog="edgeline",
        description=(
            "From raw data to a phone: ingest (Beam) -> train (Keras, tf-agents) -> "
            "evaluate -> compress (TF-MOT) -> export (TFLite). Run a whole pipeline with "
            "'edgeline run CONFIG', or any stage alone with its own command."
        ),
    )
    parser.add_argument("--version", action="version", version=edgeline.__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    if command in STANDALONE_COMMANDS:
        importlib.import_module(STANDALONE_COMMANDS[command]).register(sub)
        return parser

    run = sub.add_parser(
        "run",
        help="run a pipeline config end to end (cached steps are skipped)",
        description=(
            "Run the steps of a pipeline config in order. A step whose fingerprint (its "
            "options, its inputs' fingerprints, the seed and the edgeline version) is "
            "already published is a cache hit and does no work."
        ),
    )
    run.add_argument("config", help="a pipeline YAML file, e.g. configs/demo.yaml")
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3 (repeatable)",
    )
    run.add_argument(
        "--only", action="append", metavar="STEP",
        help="run only this step or stage (repeatable); its inputs must be published",
    )
    run.add_argument("--from", dest="start", metavar="STEP",
                     help="run this step or stage and everything after it")
    run.add_argument("--force", action="store_true",
                     help="rebuild the selected steps even when cached")
    run.add_argument("--runs-dir", help="where artifacts and lineage go (default: the "
                     "config's runs_dir)")
    run.set_defaults(func=_cmd_run)

    runs = sub.add_parser(
        "runs", help="list runs, show one run's artifacts and lineage, or render its report",
        description=(
            "list: every run in the runs directory. show RUN: its steps, artifacts and "
            "metrics. report RUN: (re)write its self-contained HTML report and the same as "
            "Markdown (by default into <runs-dir>/runs/<run id>/, where 'edgeline run' "
            "writes them)."
        ),
    )
    runs.add_argument("action", nargs="?", choices=("list", "show", "report"), default="list")
    runs.add_argument("run", nargs="?", help="a run id or unique prefix (default: latest)")
    runs.add_argument("--output", metavar="DIR",
                      help="report: where report.html and report.md go (default: the run's "
                      "folder)")
    runs.add_argument("--runs-dir", default="runs", help="the runs directory (default: runs)")
    runs.add_argument("--json", action="store_true", help="machine-readable output")
    runs.set_defaults(func=_cmd_runs)

    models = sub.add_parser("models", help="the model registry")
    models.add_argument("action", choices=("list",))
    models.set_defaults(func=_cmd_models)

    for component in COMPONENTS:
        module = _component_module(component, "cli")
        if module is not None:
            module.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler stopping the job, ``kill``): unwound like Ctrl-C, so staging
    folders are removed and the run is recorded as interrupted, then exit code 143."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    previous = signal.getsignal(signal.SIGTERM)
    if threading_is_main():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        if args.command in STANDALONE_COMMANDS:
            # Nothing it imports prints (numpy and the command's own engine): no dependency
            # to quiet, so no stderr filter thread, and the console is imported only to
            # report a failure. -v still shows a failure's whole traceback.
            if getattr(args, "verbose", False):
                os.environ[edgeline.VERBOSE_ENV] = "1"
            return _run_command(args)
        # Quiet from here: the command imports TensorFlow, Beam and the rest lazily, inside.
        from edgeline.pipeline import console

        with console.quiet(getattr(args, "verbose", False)):
            return _run_command(args)
    finally:
        if threading_is_main():
            signal.signal(signal.SIGTERM, previous)


def _run_command(args: argparse.Namespace) -> int:
    """The command, its failures as one line each: exit 2 for bad input, 1 for a failure
    (a stage's, or edgeline's own), 130/143 for Ctrl-C and SIGTERM."""
    import signal

    from edgeline.pipeline.errors import StageFailed, UserError

    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"edgeline: error: {err}", file=sys.stderr)
        return 2
    except StageFailed as err:
        print(f"edgeline: error: {one_line(str(err))}", file=sys.stderr)
        return 1
    except Terminated:
        print("edgeline: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("edgeline: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 (a bug or a dependency's failure: one line)
        from edgeline.pipeline import console

        if console.verbose():
            raise
        print(f"edgeline: error: {one_line(f'{type(err).__name__}: {err}')}", file=sys.stderr)
        return 1


def one_line(message: str) -> str:
    """A failure's first line, and how to see the rest: dependencies' messages run to many
    lines (TensorFlow's op traces, a Beam worker's traceback), the first says what failed."""
    from edgeline.pipeline import console

    lines = [line for line in message.strip().splitlines() if line.strip()] or [""]
    if console.verbose():
        return lines[0] if len(lines) == 1 else "\n".join(lines)
    more = f"; {len(lines) - 1} more line(s)" if len(lines) > 1 else ""
    return f"{lines[0].rstrip()} ({console.VERBOSE_HINT}{more})"


def console_main() -> None:
    """The ``edgeline`` executable and ``python -m edgeline``: :func:`main`, then the exit.

    A standalone command (``coco-eval``) leaves the process without tearing the interpreter
    down: its output is flushed and the exit handlers run, but the objects are not freed one
    by one. For ``coco-eval`` on 500,000 detections that teardown (the engine's columns, its
    copy of the file, numpy's modules) took about 60 ms of wall time and 90 ms of CPU, as
    long as edgeline's input checks, for memory the kernel reclaims at once anyway. mypy
    ends its runs the same way (``mypy.util.hard_exit``). Not for the other commands: they
    may leave threads (Beam's, TensorFlow's) whose work Python's shutdown waits for.
    """
    argv = sys.argv[1:]
    code = main(argv)
    if argv and argv[0] in STANDALONE_COMMANDS:
        _exit_without_teardown(code)
    sys.exit(code)


def _exit_without_teardown(code: int) -> None:
    """Flush, run the exit handlers, and leave; or return (the normal exit follows) when a
    thread of Python's is still running or the output cannot be flushed."""
    import atexit
    import threading

    if threading.active_count() > 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the normal exit reports it as usual
        return
    atexit._run_exitfuncs()  # what the normal exit runs first (coverage, profilers)
    os._exit(code)


def threading_is_main() -> bool:
    """Signal handlers can only be set from the main thread (tests call main() elsewhere)."""
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    console_main()

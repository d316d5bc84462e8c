"""The Beam pipeline: units of work -> file refs -> GroupByKey(shard) -> shard writers.

    Create(units) | ListFiles (a unit lists its inputs as refs, batched by (split, shard))
                  | GroupByKey
                  | WriteShards (each writer reads, checks and writes its own files)

Only the refs (a few hundred bytes each, batched per unit and shard) cross the GroupByKey;
the image bytes are read inside the shard writer. While planning, a version that carried the image bytes through the
shuffle managed ~400 images/s on the multi-processing DirectRunner (every byte is pickled
and sent to the runner and back over gRPC); shuffling keys only was several times faster.

Locally the DirectRunner runs it with ``--workers N`` processes (multi-processing mode);
any other Beam option (``--runner DataflowRunner --project ...``) is passed through. The
workers read sources and write shards through the local file system, so a remote runner
needs SOURCE and the output on a file system every worker mounts, and edgeline installed
where its workers run (README, "Scaling out").

On Beam's DaskRunner (``--runner DaskRunner --dask_client_address tcp://HOST:PORT``) the
graph becomes dask bags (apache_beam/runners/dask/transform_evaluator.py): ``Create`` is
split into ``--dask_npartitions`` partitions and ``GroupByKey`` keeps that many, so the
partitions bound how many workers list and write at once. Beam's default is 128 units a
partition (one partition for all of ImageNet's 1001 units); here it defaults to one unit a
partition, up to the number of shards.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from edgeline.components.ingest.plan import load_plan
from edgeline.components.ingest.shards import shard_of, write_shard
from edgeline.pipeline.errors import UserError

COUNTER_NAMESPACE = "edgeline.ingest"
DIRECT_RUNNERS = ("DirectRunner", "direct", "SwitchingDirectRunner")
# Runners that Beam's create_runner does not know by their short name: Beam 2.77's
# StandardOptions.ALL_KNOWN_RUNNERS lists no DaskRunner, so ``--runner DaskRunner`` alone is
# "Unexpected pipeline runner".
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
RUNNER_PATHS = {"daskrunner": DASK_RUNNER, "dask": DASK_RUNNER}
EXTRAS = {DASK_RUNNER: "edgeline[dask]"}


def resolve_runner(runner: str) -> str:
    """``runner`` as Beam's ``--runner`` takes it, its module imported: importing it defines
    the runner's own PipelineOptions (the DaskRunner's ``--dask_client_address``), which the
    flag check below must see. A runner that is not installed is one line naming the extra."""
    from apache_beam.runners.runner import create_runner

    path = RUNNER_PATHS.get(runner.lower(), runner)
    try:
        create_runner(path)
    except ImportError as err:
        extra = EXTRAS.get(path, "apache-beam with the runner's extra")
        raise UserError(f"runner {runner!r} is not installed ({err}); install {extra}") from None
    except ValueError as err:
        raise UserError(f"--runner {runner!r}: {err}") from None
    return path


def unknown_beam_flags(flags: Sequence[str]) -> list[str]:
    """Arguments no PipelineOptions class takes (Beam would only log and drop them): unknown
    flags, their values, and stray words."""
    try:  # the parser Beam's own get_all_options uses (private, so with a fallback)
        from apache_beam.options.pipeline_options import _BeamArgumentParser as Parser
    except ImportError:  # pragma: no cover - a later Beam
        from argparse import ArgumentParser as Parser

    parser = Parser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(flags))
    return unknown


def pipeline_options(workers: int, runner: str, beam_args: Sequence[str] = ()) -> PipelineOptions:
    """PipelineOptions for ``runner``; a misspelt Beam flag is an error, not a warning."""
    runner_path = resolve_runner(runner)
    unknown = unknown_beam_flags(beam_args)
    if unknown:
        raise UserError(f"unknown argument {unknown[0]!r}: neither an edgeline option nor a "
                        "Beam pipeline option (see Beam's PipelineOptions for each runner's)")
    flags = [*beam_args, "--runner", runner_path]
    from edgeline.pipeline import console

    if not console.verbose() and not any(f.startswith("--default_sdk_harness_log_level")
                                         for f in flags):
        # Quiet worker processes: a worker's failure reaches this process as the pipeline's
        # exception (with the worker's traceback in its text), which the CLI reports once;
        # logged by each worker as well, a full disk printed 17 tracebacks.
        flags += ["--default_sdk_harness_log_level", "CRITICAL"]
    options = PipelineOptions(flags)
    if runner in DIRECT_RUNNERS:
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = workers
        # One worker runs in this process (no gRPC hop per bundle); more run as subprocesses.
        direct.direct_running_mode = "multi_processing" if workers > 1 else "in_memory"
    return options


class ListFiles(beam.DoFn):
    """A unit of work -> ((split, shard), refs): its inputs, a batch per shard they go to.

    A batch, not an element per file: Beam's cost is per element (encoding it, a bundle's
    bookkeeping, a gRPC hop between worker processes). With an element per image, 2 workers
    of the multi-processing DirectRunner gave 1.30x one; batched, 2.49x (benchmarks/
    bench_ingest.py). The writer sorts a shard's refs itself, so how they are batched does
    not change a byte.
    """

    def __init__(self, plan_path: str):
        self.plan_path = plan_path
        self.listed = Metrics.counter(COUNTER_NAMESPACE, "files_listed")

    def setup(self):
        self.plan = load_plan(self.plan_path)

    def process(self, unit):
        batches: dict[tuple[str, int], list] = {}
        for ref in unit.list_refs(self.plan):
            key = ref.split, shard_of(ref.key, self.plan.shard_counts[ref.split])
            batches.setdefault(key, []).append(ref)
        for key, refs in batches.items():
            self.listed.inc(len(refs))
            yield key, refs


class WriteShards(beam.DoFn):
    """((split, shard), refs) -> the shard file and its report on disk."""

    def __init__(self, plan_path: str):
        self.plan_path = plan_path
        self.written = Metrics.counter(COUNTER_NAMESPACE, "images_written")
        self.fixed = Metrics.counter(COUNTER_NAMESPACE, "images_fixed")
        self.rejected = Metrics.counter(COUNTER_NAMESPACE, "files_rejected")
        self.shards = Metrics.counter(COUNTER_NAMESPACE, "shards_written")

    def setup(self):
        self.plan = load_plan(self.plan_path)

    def process(self, element):
        (split, shard), batches = element
        report = write_shard(self.plan, split, shard, itertools.chain.from_iterable(batches))
        self.written.inc(report["written"])
        self.fixed.inc(len(report["fixed"]))
        self.rejected.inc(len(report["rejected"]))
        self.shards.inc()
        yield split, shard


@contextlib.contextmanager
def _quiet_beam_loggers():
    """Beam's own logging, off for the pipeline's run. The local job service relays every
    worker's start-up warnings (unparsed internal flags, no semi-persistent directory), which
    say nothing about the run; on Ctrl-C it relays each worker's KeyboardInterrupt traceback as
    CRITICAL, and the data plane and worker handlers of this process log theirs as ERRORs
    while they shut down. Nothing is lost: a worker's failure reaches this process as the
    pipeline's exception, which the CLI reports as one line (and -v shows all of Beam's)."""
    silent = dict.fromkeys(("apache_beam", "apache_beam.runners.portability.local_job_service",
                            "apache_beam.options.pipeline_options"), logging.CRITICAL + 1)
    levels = {name: logging.getLogger(name).level for name in silent}
    for name, level in silent.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _worker_stderr_aside(enabled: bool):
    """Beam's worker subprocesses write to the stderr they inherit: a traceback per failed
    bundle (sdk_worker.py prints it, so no log level stops it; a full disk gave 17), and on
    Ctrl-C each worker and the threads that served it print theirs, around the one line the
    CLI prints. For the pipeline's run, file descriptor 2 points at a scratch file that the
    workers inherit and Beam's threads report to, while this process's ``sys.stderr`` keeps
    the terminal. Nothing is lost: a worker's failure reaches this process as the pipeline's
    exception, with the worker's traceback in its text."""
    if not enabled:
        yield
        return
    import sys
    import tempfile
    import time
    import traceback

    sys.stderr.flush()
    terminal_fd = os.dup(2)
    terminal = os.fdopen(terminal_fd, "w", buffering=1, encoding="utf-8", errors="replace")
    previous_stderr, previous_hook = sys.stderr, threading.excepthook
    with tempfile.TemporaryFile("w+") as scratch:

        def to_scratch(args):
            traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback,
                                      file=scratch)

        os.dup2(scratch.fileno(), 2)
        sys.stderr, threading.excepthook = terminal, to_scratch
        try:
            yield
        except BaseException:
            # Interrupted or failed: Beam's threads fail in turn as their workers stop (within
            # milliseconds). They get a second, so that their reports land here too (its gRPC
            # server threads never end, so there is nothing to join).
            time.sleep(1.0)
            raise
        finally:
            terminal.flush()
            os.dup2(terminal_fd, 2)
            sys.stderr, threading.excepthook = previous_stderr, previous_hook
            terminal.close()


class ShardProgress:
    """The console's progress over finished shards, with the images written so far in each
    split, read from the reports the writers leave behind (a post-write count: it works
    whatever process or runner wrote them). A bar in a terminal, plain lines otherwise."""

    def __init__(self, report_dir: str, total: int, enabled: bool):
        self.report_dir = report_dir
        self.total = total
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _count(self) -> tuple[int, dict[str, int]]:
        """(finished shards, images written per split), from ``{split}-{shard}.json``."""
        import json

        try:
            names = [n for n in os.listdir(self.report_dir) if n.endswith(".json")]
        except FileNotFoundError:
            return 0, {}
        written: dict[str, int] = {}
        for name in sorted(names):
            split = name.rsplit("-", 1)[0]
            try:
                with open(os.path.join(self.report_dir, name), encoding="utf-8") as f:
                    count = int(json.load(f).get("written", 0))
            except (OSError, ValueError):  # replaced or removed meanwhile: counted next time
                continue
            written[split] = written.get(split, 0) + count
        return len(names), written

    def _watch(self) -> None:
        from edgeline.pipeline import console

        with console.progress(self.total, "ingest", "shard") as progress:
            while not self._stop.wait(0.5):
                shards, written = self._count()
                progress.set(shards, **{f"{split} images": n for split, n in written.items()})
            shards, written = self._count()
            progress.set(shards, **{f"{split} images": n for split, n in written.items()})

    def __enter__(self) -> ShardProgress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()


def _dask_partitions(options: PipelineOptions, units: int, shards: int) -> None:
    """Unless the flags say otherwise, one unit of work a dask partition, up to one a shard (see
    the module docstring)."""
    from apache_beam.runners.dask.dask_runner import DaskOptions

    dask = options.view_as(DaskOptions)
    if dask.npartitions is None and dask.partition_size is None:
        dask.npartitions = max(1, min(units, shards))


def _finish(result) -> None:
    """Wait for the pipeline; then close the dask client that Beam's DaskRunner opened and
    never closes (DaskRunnerResult keeps it), or each run leaves a connection behind."""
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()


def run_pipeline(
    units: Sequence,
    plan_path: str,
    *,
    report_dir: str,
    total_shards: int,
    workers: int,
    runner: str = "DirectRunner",
    beam_args: Sequence[str] = (),
    progress: bool = False,
) -> None:
    """Run the ingest pipeline to completion (shards and reports are on disk after)."""
    from edgeline.pipeline import console

    options = pipeline_options(workers, runner, beam_args)
    # -v: the workers' output and Beam's warnings as Beam prints them.
    quiet = not console.verbose()
    if resolve_runner(runner) == DASK_RUNNER:
        _dask_partitions(options, len(units), total_shards)
    worker_processes = runner in DIRECT_RUNNERS and workers > 1
    with _worker_stderr_aside(worker_processes and quiet), \
            _quiet_beam_loggers() if quiet else contextlib.nullcontext(), \
            ShardProgress(report_dir, total_shards, progress):
        pipeline = beam.Pipeline(options=options)
        _ = (
            pipeline
            | "Units" >> beam.Create(list(units))
            | "ListFiles" >> beam.ParDo(ListFiles(plan_path))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(WriteShards(plan_path))
        )
        _finish(pipeline.run())

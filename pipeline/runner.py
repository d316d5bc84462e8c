"""The runner: chains the configured steps in order, with caching and lineage.

For each step it computes the fingerprint (resolved options + input fingerprints + package
version + seed), publishes into the store only what a stage wrote completely, and skips a step
whose artifact is already published and intact. A failing step leaves every earlier artifact
in place and is reported by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NoReturn

from edgeline.pipeline.artifacts import (
    ARTIFACT_FILE,
    Artifact,
    fingerprint,
    publish,
    staging_dir,
)
from edgeline.pipeline.config import PipelineConfig, StepConfig
from edgeline.pipeline.errors import (
    ConfigError,
    StageFailed,
    StorageError,
    UserError,
    storage_problem,
)
from edgeline.pipeline.stage import Stage, StageContext, StageRegistry
from edgeline.pipeline.store import RunStore


@dataclasses.dataclass
class StepOutcome:
    step: str
    stage: str
    artifact: Artifact | None  # None for a failed step
    cached: bool
    seconds: float
    failed: bool = False

    @property
    def status(self) -> str:
        return "failed" if self.failed else "cached" if self.cached else "built"


@dataclasses.dataclass
class RunOutcome:
    run_id: str
    runs_dir: Path
    steps: list[StepOutcome]
    report: Path | None = None  # runs/<run_id>/report.html (report.md beside it)
    seconds: float = 0.0  # the whole run's

    def artifact(self, step: str) -> Artifact:
        for outcome in self.steps:
            if outcome.step == step and outcome.artifact is not None:
                return outcome.artifact
        raise KeyError(step)


def select_steps(
    config: PipelineConfig, only: Iterable[str] = (), start: str | None = None
) -> set[str]:
    """Which steps to execute. ``only`` and ``start`` take step or stage names."""
    names = [s.name for s in config.steps]
    stages = {s.name: s.stage for s in config.steps}

    def matches(token: str) -> list[str]:
        found = [n for n in names if n == token or stages[n] == token]
        if not found:
            known = sorted(set(names) | set(stages.values()))
            raise ConfigError(f"unknown step or stage {token!r}; known: {', '.join(known)}")
        return found

    selected = set(names)
    if only:
        selected = {n for token in only for n in matches(token)}
    if start:
        first = min(names.index(n) for n in matches(start))
        selected &= set(names[first:])
    return selected


def run_pipeline(
    config: PipelineConfig,
    registry: StageRegistry,
    *,
    only: Iterable[str] = (),
    start: str | None = None,
    force: bool = False,
    runs_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    given: Mapping[str, Artifact] | None = None,
    on_end: Callable[[RunOutcome], None] | None = None,
) -> RunOutcome:
    """Run the selected steps of ``config``.

    Steps outside the selection are not executed, but a selected step still needs its
    inputs: those must already be published (a cache hit), or the run says which to run.
    ``given`` names artifacts made outside this config (a standalone command's --examples),
    which its steps may list as inputs. ``on_end`` sees how the run ended, failed steps
    included, before a failure is raised (the CLI prints its end-of-run table there).
    """
    from edgeline.pipeline import console

    log = log or console.log
    started = time.time()
    selected = select_steps(config, only, start)  # a bad --only is refused before any record
    store = RunStore(runs_dir or config.runs_dir)
    run_id = store.start_run(config.name, config.source_path, config.resolved())
    run = _Run(config, registry, store, run_id, selected, force, log)
    run.published.update(given or {})
    try:
        for index, step in enumerate(config.steps, start=1):
            run.execute(index, step)
        store.finish_run(run_id, "complete")
    except BaseException as err:
        report = run.end_failed(err, say_where=on_end is None)
        if on_end is not None and not isinstance(err, KeyboardInterrupt):
            on_end(RunOutcome(run_id, Path(store.root), run.outcomes, report,
                              time.time() - started))
        raise
    report = _write_report(store, run_id, run.outcomes, registry, log, on_end is None)
    store.close()
    outcome = RunOutcome(run_id, Path(store.root), run.outcomes, report, time.time() - started)
    if on_end is not None:
        on_end(outcome)
    return outcome


def step_fingerprint(config: PipelineConfig, stage: Stage, step: StepConfig,
                     inputs: Mapping[str, Artifact]) -> str:
    """What names ``step``'s artifact: its options, its inputs' fingerprints, the seed, the
    determinism, what it reads from outside the pipeline, and the edgeline version."""
    extra = {"seed": config.seed, "deterministic": config.deterministic}
    if stage.external_fingerprint is not None:
        extra["external"] = stage.external_fingerprint(step.options)
    input_fps = {name: artifact.fingerprint for name, artifact in inputs.items()}
    return fingerprint(stage.name, step.raw, input_fps, extra)


@dataclasses.dataclass
class _Run:
    """One run in progress: each step is reused from the store, built, or skipped, in order."""

    config: PipelineConfig
    registry: StageRegistry
    store: RunStore
    run_id: str
    selected: set[str]
    force: bool
    log: Callable[[str], None]
    outcomes: list[StepOutcome] = dataclasses.field(default_factory=list)
    published: dict[str, Artifact] = dataclasses.field(default_factory=dict)

    def execute(self, index: int, step: StepConfig) -> None:
        """Step ``index`` of the config: a cache hit, a build, or nothing when it was not
        selected and cannot or need not run."""
        stage = self.registry.get(step.stage)
        selected = step.name in self.selected
        if not selected and any(n not in self.published for n in step.inputs):
            return  # not asked for, and its inputs were not built either
        inputs = self._inputs(step)
        input_fps = {name: a.fingerprint for name, a in inputs.items()}
        fp = step_fingerprint(self.config, stage, step, inputs)
        prefix = f"[{index}/{len(self.config.steps)}] {step.name} ({stage.name})"
        existing, problem = self.store.find(stage.name, fp)
        if not selected and existing is None:
            # Not asked for and never built: a later selected step that needs it stops with
            # a clear message (_inputs).
            return
        if existing is not None and (not selected or not self.force):
            self._reuse(step, stage, existing, input_fps, fp, prefix)
            return
        if problem:
            self.log(f"{prefix}: published artifact is damaged ({problem}); rebuilding")
        self._build(step, stage, inputs, fp, problem, prefix)

    def _inputs(self, step: StepConfig) -> dict[str, Artifact]:
        for name in step.inputs:
            if name not in self.published:
                raise UserError(
                    f"step '{step.name}' needs the artifact of '{name}', which is not "
                    f"published yet; run '{name}' first (drop --only/--from)"
                )
        return {name: self.published[name] for name in step.inputs}

    def _reuse(self, step: StepConfig, stage: Stage, existing: Artifact,
               input_fps: dict[str, str], fp: str, prefix: str) -> None:
        self.log(f"{prefix}: cached ({existing.uri})")
        ex = self.store.start_execution(self.run_id, step.name, stage.name)
        self.store.finish_execution(ex, "cached", cached=True, inputs=input_fps, output=fp)
        self.published[step.name] = existing
        self.outcomes.append(StepOutcome(step.name, stage.name, existing, True, 0.0))

    def _build(self, step: StepConfig, stage: Stage, inputs: dict[str, Artifact], fp: str,
               problem: str | None, prefix: str) -> None:
        """Runs the stage into a staging folder and publishes it atomically."""
        input_fps = {name: a.fingerprint for name, a in inputs.items()}
        self.log(f"{prefix}: running")
        ex = self.store.start_execution(self.run_id, step.name, stage.name)
        final_dir = self.store.artifact_dir(stage.name, fp)
        tmp = staging_dir(final_dir)
        started = time.time()
        context = StageContext(
            step=step.name,
            options=step.options,
            inputs=inputs,
            output_dir=tmp,
            seed=self.config.seed,
            deterministic=self.config.deterministic,
            cache_dir=self.store.cache_dir,
        )
        try:
            result = stage.run(context)
            artifact = publish(
                tmp,
                final_dir,
                type=stage.artifact_type,
                producer=f"{step.name}:{stage.name}",
                fingerprint=fp,
                inputs=input_fps,
                properties=result.properties,
                metrics=result.metrics,
                # A damaged copy (or a folder without artifact.json) is rebuilt in place;
                # an artifact another run published meanwhile is used as it is.
                replace=problem is not None or not (final_dir / ARTIFACT_FILE).is_file(),
            )
        except BaseException as err:
            # Removed first: on a full disk this frees the space the lineage row needs.
            shutil.rmtree(tmp, ignore_errors=True)
            self.outcomes.append(StepOutcome(step.name, stage.name, None, False,
                                             time.time() - started, failed=True))
            _step_failed(self.store, ex, step.name, stage.name, input_fps, err)
        self.store.record_artifact(artifact)
        seconds = time.time() - started
        self.store.finish_execution(ex, "complete", inputs=input_fps, output=fp)
        self.published[step.name] = artifact
        self.outcomes.append(StepOutcome(step.name, stage.name, artifact, False, seconds))
        self.log(f"{prefix}: done in {seconds:.1f}s -> {artifact.uri}")

    def end_failed(self, err: BaseException, say_where: bool = True) -> Path | None:
        """Records how the run ended, writes the report of what was built (returns its path),
        and closes the store; a refusal of the disk is raised as a StorageError naming the runs directory
        (anything else the caller re-raises)."""
        store = self.store
        # Ctrl-C (and SIGTERM, which the CLI turns into the same exception) is the user's
        # choice, not a failure: the run reads "interrupted", as one killed outright does.
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        recorded = _record_end(store, self.run_id, status, f"{type(err).__name__}: {err}")
        problem = None if isinstance(err, UserError) else storage_problem(err)
        # What was built, and what failed; not after a disk refused a write (the report would
        # be refused too, or fill the disk further).
        report = None
        if recorded and not isinstance(err, KeyboardInterrupt | StorageError) and not problem:
            report = _write_report(store, self.run_id, self.outcomes, self.registry, self.log,
                                   say_where)
        store.close()
        if problem is not None:
            raise StorageError(StorageError.in_runs_dir(store.root, problem)) from err
        return report


def _step_failed(store: RunStore, execution: int, step: str, stage: str,
                 input_fps: dict[str, str], err: BaseException) -> NoReturn:
    """Records a step's failure and raises what the CLI shows: one line for bad input, a
    full or read-only disk, or Ctrl-C; the traceback and the step's name for anything else."""
    message = f"{type(err).__name__}: {err}"
    status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
    with contextlib.suppress(StorageError):  # a full disk may refuse this row too
        store.finish_execution(execution, status, inputs=input_fps, error=message)
    if isinstance(err, KeyboardInterrupt):
        raise err
    if isinstance(err, UserError):
        # Still bad input (exit 2, one line), but say which step received it: a config may
        # run one stage in several steps (the demo evaluates two).
        raise type(err)(f"step '{step}' ({stage}): {err}") from err
    problem = storage_problem(err)
    if problem is not None:
        raise StorageError(StorageError.in_runs_dir(store.root, problem,
                                                  f"'{step}' ({stage})")) from err
    from edgeline.pipeline import console

    if console.verbose():  # else the CLI's one line, which says how to see this
        traceback.print_exc(file=sys.stderr)
    raise StageFailed(step, err) from err


def _record_end(store: RunStore, run_id: str, status: str, error: str) -> bool:
    """Records how the run ended, unless the disk refuses (then the next opening of the
    store reads it as interrupted: its process is gone)."""
    try:
        store.finish_run(run_id, status, error)
    except StorageError:
        return False
    return True


def _write_report(store: RunStore, run_id: str, outcomes: list[StepOutcome],
                  registry: StageRegistry, log: Callable[[str], None],
                  say_where: bool = True) -> Path | None:
    """The run's report (HTML and Markdown) in its folder, and (``say_where``) where it and
    each exported file are; the CLI says it below its end-of-run table instead.

    A report that cannot be written is said, not raised: the run's artifacts are published
    and intact, and ``edgeline runs report`` renders it again.
    """
    from edgeline.pipeline import report

    try:
        html_path, md_path = report.write_report(store, run_id, views=registry.views())
    except Exception as err:  # noqa: BLE001 (any failure of the report: said, run kept)
        from edgeline.pipeline import console

        # A full or read-only disk needs no traceback; anything else shows one with -v.
        if storage_problem(err) is None and console.verbose():
            traceback.print_exc(file=sys.stderr)
        log(f"report: not written ({type(err).__name__}: {err}); "
            f"retry with 'edgeline runs report {run_id} --runs-dir {store.root}'")
        return None
    if say_where:
        from edgeline.pipeline import summary

        for line in summary.where_lines(html_path, outcomes, registry.views()):
            log(line)
    return html_path

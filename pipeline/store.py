"""The run store: where artifacts live, and the lineage of every run in SQLite.

Layout of a runs directory::

    runs/
      lineage.sqlite               runs, executions, artifacts, events (as in ML Metadata)
      artifacts/<stage>/<fingerprint>/   published artifacts, content-addressed
      runs/<run_id>/config.yaml    the fully resolved config of each run
      cache/                       scratch kept across runs (e.g. generated demo data)
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from edgeline.pipeline.artifacts import Artifact, process_alive, sweep_stale, verify
from edgeline.pipeline.errors import StorageError, UserError, storage_errors

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, pipeline TEXT, config_path TEXT, started REAL, finished REAL,
  status TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS executions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, step TEXT, stage TEXT,
  started REAL, finished REAL, status TEXT, cached INTEGER, error TEXT);
CREATE TABLE IF NOT EXISTS artifacts (
  fingerprint TEXT PRIMARY KEY, uri TEXT, type TEXT, producer TEXT, created REAL);
CREATE TABLE IF NOT EXISTS events (
  execution_id INTEGER, fingerprint TEXT, kind TEXT, name TEXT);
"""


def _storage_errors(method):
    """A store write the disk refused (full, read-only) is a :class:`StorageError` naming the
    runs directory: one line for the user, not a chain of SQLite tracebacks."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with storage_errors(lambda problem: StorageError.in_runs_dir(self.root, problem)):
            return method(self, *args, **kwargs)

    return wrapper


class RunStore:
    """A runs directory. ``read_only`` opens it for reading alone (``edgeline runs
    list/show``): nothing is created, swept or updated, so it works on a full disk or a
    read-only copy, and a run whose process is gone reads ``interrupted``."""

    @_storage_errors
    def __init__(self, runs_dir: str | Path, *, read_only: bool = False):
        self.root = Path(runs_dir)
        self.read_only = read_only
        self.cache_dir = self.root / "cache"
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"runs directory {str(self.root)!r} is a file, not a folder; "
                               "pass another --runs-dir")
        if read_only:
            database = (self.root / "lineage.sqlite").resolve()
            if not database.is_file():
                raise UserError(f"no runs recorded in {self.root}")
            self._db = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=30)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "artifacts").mkdir(exist_ok=True)
        (self.root / "runs").mkdir(exist_ok=True)
        self.cache_dir.mkdir(exist_ok=True)
        sweep_stale(self.root / "artifacts")
        self._db = sqlite3.connect(self.root / "lineage.sqlite", timeout=30)
        self._db.executescript(SCHEMA)
        self._add_runner_columns()
        self._db.commit()
        self._mark_interrupted()

    def _add_runner_columns(self) -> None:
        # Which process runs a run: a run whose process died without recording its end
        # (SIGKILL, power loss) is shown as interrupted instead of running for ever.
        # Stores written before these columns existed get them here.
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
        for name, kind in (("pid", "INTEGER"), ("host", "TEXT")):
            if name not in columns:
                self._db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")

    def _stale_runs(self) -> set[str]:
        """Runs still marked running whose process on this host is gone: they were killed, or
        could not record their end (a full disk). Runs of other hosts are left alone."""
        host = socket.gethostname()
        return {
            run_id
            for run_id, pid, run_host in self._db.execute(
                "SELECT id, pid, host FROM runs WHERE status='running'"
            ).fetchall()
            if run_host in (None, host) and not (pid and process_alive(int(pid)))
        }

    def _mark_interrupted(self) -> None:
        """Records the :meth:`_stale_runs` (and their executions) as interrupted."""
        stale = self._stale_runs()
        for run_id in stale:
            self._db.execute(
                "UPDATE runs SET status='interrupted', "
                "error='its process ended without recording the end of the run' WHERE id=?",
                (run_id,),
            )
            self._db.execute(
                "UPDATE executions SET status='interrupted' WHERE run_id=? AND status='running'",
                (run_id,),
            )
        if stale:
            self._db.commit()

    def close(self) -> None:
        self._db.close()

    # -- artifacts -------------------------------------------------------------------
    def artifact_dir(self, stage: str, fingerprint: str) -> Path:
        return self.root / "artifacts" / stage / fingerprint[:16]

    def find(self, stage: str, fingerprint: str) -> tuple[Artifact | None, str | None]:
        """The published artifact for ``fingerprint`` and, if it exists but is damaged,
        what is wrong with it (the runner rebuilds it then)."""
        directory = self.artifact_dir(stage, fingerprint)
        if not (directory / "artifact.json").is_file():
            return None, None
        try:
            artifact = Artifact.load(directory)
        except (json.JSONDecodeError, TypeError, KeyError):
            return None, "artifact.json is unreadable"
        if artifact.fingerprint != fingerprint:
            return None, "artifact.json names another fingerprint"
        problem = verify(artifact)
        if problem:
            return None, problem
        return artifact, None

    @_storage_errors
    def record_artifact(self, artifact: Artifact) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?,?)",
            (artifact.fingerprint, artifact.uri, artifact.type, artifact.producer,
             artifact.created),
        )
        self._db.commit()

    # -- runs and executions ---------------------------------------------------------
    @_storage_errors
    def start_run(self, pipeline: str, config_path: str | None, resolved: dict) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        run_dir = self.root / "runs" / run_id
        run_dir.mkdir(parents=True)
        with open(run_dir / "config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(resolved, f, sort_keys=False)
        self._db.execute(
            "INSERT INTO runs (id, pipeline, config_path, started, finished, status, error, "
            "pid, host) VALUES (?,?,?,?,?,?,?,?,?)",
            (run_id, pipeline, config_path, time.time(), None, "running", None, os.getpid(),
             socket.gethostname()),
        )
        self._db.commit()
        return run_id

    @_storage_errors
    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        self._db.execute(
            "UPDATE runs SET finished=?, status=?, error=? WHERE id=?",
            (time.time(), status, error, run_id),
        )
        self._db.commit()

    @_storage_errors
    def start_execution(self, run_id: str, step: str, stage: str) -> int:
        cur = self._db.execute(
            "INSERT INTO executions (run_id, step, stage, started, status, cached) "
            "VALUES (?,?,?,?,?,0)",
            (run_id, step, stage, time.time(), "running"),
        )
        self._db.commit()
        return int(cur.lastrowid)

    @_storage_errors
    def finish_execution(
        self,
        execution_id: int,
        status: str,
        *,
        cached: bool = False,
        inputs: dict[str, str] | None = None,
        output: str | None = None,
        error: str | None = None,
    ) -> None:
        self._db.execute(
            "UPDATE executions SET finished=?, status=?, cached=?, error=? WHERE id=?",
            (time.time(), status, int(cached), error, execution_id),
        )
        for name, fp in (inputs or {}).items():
            self._db.execute(
                "INSERT INTO events VALUES (?,?,?,?)", (execution_id, fp, "input", name)
            )
        if output:
            self._db.execute(
                "INSERT INTO events VALUES (?,?,?,?)", (execution_id, output, "output", "")
            )
        self._db.commit()

    # -- queries ---------------------------------------------------------------------
    def list_runs(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, pipeline, started, finished, status FROM runs ORDER BY started DESC"
        ).fetchall()
        runs = [dict(zip(("id", "pipeline", "started", "finished", "status"), r)) for r in rows]
        if self.read_only:  # what _mark_interrupted would have recorded
            stale = self._stale_runs()
            for run in runs:
                if run["id"] in stale:
                    run["status"] = "interrupted"
        return runs

    def resolve_run(self, run: str | None) -> str:
        runs = self.list_runs()
        if not runs:
            raise UserError(f"no runs recorded in {self.root}")
        if run in (None, "latest"):
            return runs[0]["id"]
        matches = [r["id"] for r in runs if r["id"].startswith(run)]
        if len(matches) != 1:
            raise UserError(
                f"run {run!r} {'is ambiguous' if matches else 'not found'} in {self.root}; "
                f"see 'edgeline runs list'"
            )
        return matches[0]

    def show_run(self, run_id: str) -> dict[str, Any]:
        run = self._db.execute(
            "SELECT id, pipeline, config_path, started, finished, status, error "
            "FROM runs WHERE id=?",
            (run_id,),
        ).fetchone()
        keys = ("id", "pipeline", "config_path", "started", "finished", "status", "error")
        result: dict[str, Any] = dict(zip(keys, run))
        if self.read_only and run_id in self._stale_runs():
            result["status"] = "interrupted"
        result["config"] = str(self.root / "runs" / run_id / "config.yaml")
        executions = self._db.execute(
            "SELECT id, step, stage, status, cached, started, finished, error FROM executions "
            "WHERE run_id=? ORDER BY id",
            (run_id,),
        ).fetchall()
        result["executions"] = []
        result["artifacts"] = []
        for ex_id, step, stage, status, cached, started, finished, error in executions:
            if status == "running" and result["status"] == "interrupted":
                status = "interrupted"
            events = self._db.execute(
                "SELECT fingerprint, kind, name FROM events WHERE execution_id=?", (ex_id,)
            ).fetchall()
            entry = {
                "step": step,
                "stage": stage,
                "status": status,
                "cached": bool(cached),
                "seconds": (finished - started) if finished else None,
                "error": error,
                "inputs": {name: fp for fp, kind, name in events if kind == "input"},
                "output": next((fp for fp, kind, _ in events if kind == "output"), None),
            }
            result["executions"].append(entry)
            if entry["output"]:
                row = self._db.execute(
                    "SELECT uri FROM artifacts WHERE fingerprint=?", (entry["output"],)
                ).fetchone()
                if row and Path(row[0], "artifact.json").is_file():
                    artifact = Artifact.load(row[0])
                    result["artifacts"].append(
                        {
                            "step": step,
                            "path": artifact.uri,
                            "type": artifact.type,
                            "producer": artifact.producer,
                            "fingerprint": artifact.fingerprint,
                            "inputs": artifact.inputs,
                            "properties": artifact.properties,
                            "metrics": artifact.metrics,
                        }
                    )
        return result

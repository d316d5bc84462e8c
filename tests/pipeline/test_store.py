"""The run store's lineage database: runs whose process died are shown as interrupted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

from edgeline.pipeline.store import RunStore

# A real process starts a run and is then killed with SIGKILL, as a user's Ctrl-\\ or the
# OOM killer would: it never records the end of its run.
START_AND_WAIT = textwrap.dedent("""
    import sys, time
    from edgeline.pipeline.store import RunStore
    store = RunStore(sys.argv[1])
    run_id = store.start_run("demo", None, {"steps": {}})
    store.start_execution(run_id, "images", "ingest")
    print(run_id, flush=True)
    time.sleep(600)
""")


def start_a_run_in_another_process(runs_dir):
    process = subprocess.Popen([sys.executable, "-c", START_AND_WAIT, str(runs_dir)],
                               stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def test_a_killed_run_is_marked_interrupted_and_a_live_one_is_left_running(tmp_path):
    killed, killed_id = start_a_run_in_another_process(tmp_path)
    live, live_id = start_a_run_in_another_process(tmp_path)
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        store = RunStore(tmp_path)
        statuses = {run["id"]: run["status"] for run in store.list_runs()}
        assert statuses == {killed_id: "interrupted", live_id: "running"}
        shown = store.show_run(killed_id)
        assert "ended without recording" in shown["error"]
        assert [e["status"] for e in shown["executions"]] == ["interrupted"]
        assert store.show_run(live_id)["executions"][0]["status"] == "running"
        store.close()
    finally:
        live.kill()
        live.wait()


def test_a_store_written_before_the_pid_column_is_upgraded_in_place(tmp_path):
    with sqlite3.connect(tmp_path / "lineage.sqlite") as db:
        db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, pipeline TEXT, config_path TEXT, "
                   "started REAL, finished REAL, status TEXT, error TEXT)")
        db.execute("INSERT INTO runs VALUES ('old', 'demo', NULL, 1.0, 2.0, 'complete', NULL)")
        db.execute("INSERT INTO runs VALUES ('lost', 'demo', NULL, 3.0, NULL, 'running', NULL)")
    store = RunStore(tmp_path)
    # A run of an old store has no pid: nothing can still be running it after an upgrade.
    assert {r["id"]: r["status"] for r in store.list_runs()} == {
        "old": "complete", "lost": "interrupted"}
    run_id = store.start_run("demo", None, {"steps": {}})
    latest = store.list_runs()[0]
    assert (latest["id"], latest["status"]) == (run_id, "running")
    store.close()

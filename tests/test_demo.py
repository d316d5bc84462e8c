"""`make demo`'s pipeline, run for real through the CLI on the built-in data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _edgeline(*args, cwd):
    return subprocess.run([sys.executable, "-m", "edgeline", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory, repo_root):
    """The demo's ingest steps run once for the module (later stages have their own tests)."""
    runs = tmp_path_factory.mktemp("demo") / "runs"
    first = _edgeline("run", "configs/demo.yaml", "--only", "ingest", "--runs-dir", str(runs),
                      cwd=repo_root)
    assert first.returncode == 0, first.stderr[-3000:]
    return runs, first


def test_demo_ingest_builds_examples_and_accounts_for_every_file(demo_runs, repo_root):
    runs, first = demo_runs
    shown = _edgeline("runs", "show", "--json", "--runs-dir", str(runs), cwd=repo_root)
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    artifacts = {a["step"]: a for a in info["artifacts"]}
    assert set(artifacts) == {"images", "boxes"}
    for artifact in artifacts.values():
        assert artifact["type"] == "Examples"
        assert len(artifact["fingerprint"]) == 64
        for split, counts in artifact["properties"]["splits"].items():
            assert counts["seen"] == counts["written"] + counts["rejected"], split
    train = artifacts["images"]["properties"]["splits"]["train"]
    # The planted faults: CMYK, PNG named .JPEG and two grayscale fixed; one truncated file.
    assert train["fixed"] == 4 and train["rejected"] == 1
    rejected = (artifacts["images"]["path"] + "/rejected.jsonl")
    lines = [json.loads(line) for line in open(rejected)]
    assert len(lines) == 1 and "truncated" in lines[0]["path"]


def test_second_run_does_no_work(demo_runs, repo_root):
    runs, _ = demo_runs
    second = _edgeline("run", "configs/demo.yaml", "--only", "ingest", "--runs-dir", str(runs),
                       cwd=repo_root)
    assert second.returncode == 0, second.stderr
    assert "0 step(s) built, 2 cached" in second.stdout

"""The runner: order, caching, atomic publication, corruption detection, failures."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edgeline.pipeline.artifacts import Artifact
from edgeline.pipeline.config import load_pipeline_config
from edgeline.pipeline.errors import ConfigError, StageFailed, UserError
from edgeline.pipeline.runner import run_pipeline, select_steps
from edgeline.pipeline.stage import Stage, StageRegistry, StageResult
from edgeline.pipeline.store import RunStore


@dataclasses.dataclass(frozen=True)
class CountOptions:
    start: int = 0
    fail: bool = False


CALLS: list[str] = []


def _count(context):
    """A small real stage: writes numbers; adds its inputs' totals to its own."""
    CALLS.append(context.step)
    if context.options.fail:
        raise RuntimeError("the stage broke on purpose")
    total = context.options.start + sum(a.metrics["total"] for a in context.inputs.values())
    (context.output_dir / "numbers.txt").write_text(f"{total}\n" * 100)
    (context.output_dir / "sub").mkdir()
    (context.output_dir / "sub" / "seed.txt").write_text(str(context.seed))
    return StageResult(properties={"rows": 100}, metrics={"total": total})


@pytest.fixture
def registry():
    registry = StageRegistry()
    registry.register(Stage("count", CountOptions, "Numbers", _count))
    return registry


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def _config(registry, overrides=(), **extra):
    data = {
        "name": "toy",
        "seed": 7,
        "steps": {
            "first": {"stage": "count", "start": 1},
            "second": {"stage": "count", "inputs": ["first"], "start": 10},
            "third": {"stage": "count", "inputs": ["second"], "start": 100, **extra},
        },
    }
    return load_pipeline_config(None, registry.options_types(), list(overrides), data=data)


def test_runs_in_order_and_chains_artifacts(tmp_path, registry):
    outcome = run_pipeline(_config(registry), registry, runs_dir=tmp_path, log=lambda m: None)
    assert CALLS == ["first", "second", "third"]
    assert outcome.artifact("third").metrics["total"] == 111
    third = Artifact.load(outcome.artifact("third").uri)
    assert third.type == "Numbers" and third.producer == "third:count"
    assert third.inputs == {"second": outcome.artifact("second").fingerprint}
    assert set(third.files) == {"numbers.txt", "sub/seed.txt"}


def test_second_run_is_all_cache_hits(tmp_path, registry):
    run_pipeline(_config(registry), registry, runs_dir=tmp_path, log=lambda m: None)
    CALLS.clear()
    outcome = run_pipeline(_config(registry), registry, runs_dir=tmp_path, log=lambda m: None)
    assert CALLS == []
    assert all(step.cached for step in outcome.steps)


def test_changed_option_rebuilds_that_step_and_its_dependents_only(tmp_path, registry):
    run_pipeline(_config(registry), registry, runs_dir=tmp_path, log=lambda m: None)
    CALLS.clear()
    run_pipeline(_config(registry, ["second.start=20"]), registry, runs_dir=tmp_path,
                 log=lambda m: None)
    assert CALLS == ["second", "third"]


def test_only_and_from_select_steps(tmp_path, registry):
    config = _config(registry)
    assert select_steps(config, only=["second"]) == {"second"}
    assert select_steps(config, start="second") == {"second", "third"}
    assert select_steps(config, only=["count"]) == {"first", "second", "third"}
    with pytest.raises(ConfigError, match="unknown step or stage 'fourth'"):
        select_steps(config, only=["fourth"])
    with pytest.raises(UserError, match="needs the artifact of 'first'"):
        run_pipeline(config, registry, only=["second"], runs_dir=tmp_path, log=lambda m: None)
    run_pipeline(config, registry, runs_dir=tmp_path, log=lambda m: None)
    CALLS.clear()
    run_pipeline(config, registry, only=["second"], force=True, runs_dir=tmp_path,
                 log=lambda m: None)
    assert CALLS == ["second"]


def test_corrupted_artifact_is_detected_and_rebuilt(tmp_path, registry):
    outcome = run_pipeline(_config(registry), registry, runs_dir=tmp_path, log=lambda m: None)
    numbers = outcome.artifact("second").path / "numbers.txt"
    numbers.write_bytes(numbers.read_bytes()[:50])  # truncated
    CALLS.clear()
    messages = []
    run_pipeline(_config(registry), registry, runs_dir=tmp_path, log=messages.append)
    assert CALLS == ["second"]  # third's inputs are unchanged, so third stays cached
    assert any("damaged" in m and "numbers.txt" in m for m in messages)
    assert numbers.read_text().count("\n") == 100


def test_failing_stage_is_named_and_leaves_earlier_artifacts(tmp_path, registry):
    run_pipeline(_config(registry), registry, runs_dir=tmp_path, log=lambda m: None)
    with pytest.raises(StageFailed, match="step 'third' failed: RuntimeError: the stage broke"):
        run_pipeline(_config(registry, fail=True), registry, runs_dir=tmp_path,
                     log=lambda m: None)
    artifacts = list((tmp_path / "artifacts" / "count").iterdir())
    assert len(artifacts) == 3  # first, second, and the earlier third: nothing half-written
    assert not [p for p in artifacts if p.name.startswith(".")]
    store = RunStore(tmp_path)
    latest = store.show_run(store.resolve_run("latest"))
    assert latest["status"] == "failed"
    assert [e["status"] for e in latest["executions"]] == ["cached", "cached", "failed"]
    store.close()


def test_lineage_lists_every_artifact_with_its_fingerprint(tmp_path, registry):
    outcome = run_pipeline(_config(registry), registry, runs_dir=tmp_path, log=lambda m: None)
    store = RunStore(tmp_path)
    info = store.show_run(outcome.run_id)
    store.close()
    assert [a["step"] for a in info["artifacts"]] == ["first", "second", "third"]
    assert info["artifacts"][2]["metrics"] == {"total": 111}
    assert info["artifacts"][1]["inputs"] == {"first": outcome.artifact("first").fingerprint}
    saved = (tmp_path / "runs" / outcome.run_id / "config.yaml").read_text()
    assert "start: 100" in saved and "fail: false" in saved
    json.dumps(info)  # the JSON form of `edgeline runs show`


def test_seed_is_part_of_the_fingerprint(tmp_path, registry):
    run_pipeline(_config(registry), registry, runs_dir=tmp_path, log=lambda m: None)
    CALLS.clear()
    run_pipeline(_config(registry, ["seed=8"]), registry, runs_dir=tmp_path, log=lambda m: None)
    assert CALLS == ["first", "second", "third"]


def test_only_an_early_step_skips_later_steps_whose_inputs_were_never_built(tmp_path, registry):
    outcome = run_pipeline(_config(registry), registry, only=["first"], runs_dir=tmp_path,
                           log=lambda m: None)
    assert CALLS == ["first"]
    assert [s.step for s in outcome.steps] == ["first"]

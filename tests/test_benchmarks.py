"""The benchmark scripts' cheap parts, so `make bench` cannot rot between full runs (a full
run takes about 40 minutes and is not part of the suite)."""

from __future__ import annotations

import pytest

from benchmarks import bench_evaluate, bench_ingest, bench_rl, run


def test_the_rl_benchmark_loads_the_shipped_cartpole_config_with_its_evaluate_step():
    # configs/cartpole_dqn.yaml gained an evaluate step; the benchmark must still find the rl
    # step's options (it once loaded the file with the rl stage alone and stopped).
    config, options = bench_rl._cartpole_options({"max_env_steps": 1000})
    assert [step.stage for step in config.steps] == ["rl", "evaluate"]
    assert options.algorithm == "dqn"
    assert options.max_env_steps == 1000
    assert options.environment.name == "CartPole-v1"


def test_sha256_note_splits_the_per_image_cost():
    # 1000 images/s = 1.00 ms per image; 0.50 ms of it hashing leaves 2000 images/s.
    note = bench_ingest.sha256_note(1000.0, 1600.0, 0.5)
    assert "1.00 ms per image, 0.50 ms is the SHA-256" in note
    assert "without it 2000 images/s = 1.25x tfds" in note


def test_results_table_says_when_each_part_was_measured(tmp_path):
    rows = [{"part": "ingest", "figure": "images/s", "value": 1524.5, "baseline": "tfds",
             "baseline_value": 1957.6, "ratio": 0.78, "target": ">= 0.8x", "met": False,
             "note": "explained"}]
    path = tmp_path / "RESULTS.md"
    run.write_results(rows, path, 120.0, {"ingest": {"finished": "2026-11-22 17:05",
                                                      "minutes": 2.0}})
    text = path.read_text()
    assert "the last invocation took 2.0 minutes" in text
    assert "how long it took: ingest 2026-11-22 17:05 UTC (2.0 min)." in text
    assert "| ingest | images/s | 1524 | tfds | 1958 | 0.78 | >= 0.8x | **no** | explained |" \
        in text


def test_a_fresh_clone_rerunning_one_part_keeps_the_others_rows(tmp_path):
    # benchmarks/_work (results.json) is not committed: the committed RESULTS.md is what a
    # fresh clone knows of the parts it does not rerun, and it must read back as written.
    rows = [{"part": part, "figure": f"{part} max |difference| of x", "value": 0.5,
             "baseline": "b", "baseline_value": 2.0, "ratio": 4.0, "target": ">= 1x",
             "met": part == "rl", "note": ""} for part in ("ingest", "rl")]
    measured = {"ingest": {"finished": "2026-12-03 13:24", "minutes": 8.9},
                "rl": {"finished": "2026-12-03 12:36", "minutes": 4.2}}
    path = tmp_path / "RESULTS.md"
    run.write_results(rows, path, 60.0, measured)
    previous = run.read_results(path)
    assert previous[run.MEASURED] == measured
    assert [row["figure"] for row in previous["rl"]] == ["rl max |difference| of x"]
    again = tmp_path / "again.md"
    run.write_results(previous["ingest"] + previous["rl"], again, 60.0, measured)
    assert again.read_text() == path.read_text()


def test_evaluate_reports_the_per_round_wall_difference_beside_the_gated_ratio():
    # the gated figure is a ratio of medians; the per-round differences show how far the
    # host's noise reaches (it moved one 9-round run's ratio by a few percent)
    results = {contender: {"wall": 0.6, "cpu": 1.0, "in_process": 0.4, "peak_mb": 160.0,
                           "stats": [0.2] * 12} for contender in bench_evaluate.CONTENDERS}
    results["edgeline"]["paired_wall_ultrafast-pycocotools"] = [-0.023, 0.019, 0.061]
    rows = bench_evaluate._rows("bbox", "5000 images", results)
    paired = [row for row in rows if row["figure"].endswith("per round")]
    assert len(paired) == 1
    assert paired[0]["value"] == pytest.approx(19.0)
    assert paired[0]["met"] is None
    assert paired[0]["note"] == (f"median of {bench_evaluate.ROUNDS} rounds; quartiles -23 to "
                                 "+61 ms")
    assert not [row for row in bench_evaluate._rows("segm", "500 images", results)
                if row["figure"].endswith("per round")]


@pytest.mark.parametrize("part", run.PARTS)
def test_every_part_has_a_benchmark_with_a_run_function(part):
    module = __import__(f"benchmarks.bench_{part}", fromlist=["run"])
    assert callable(module.run)

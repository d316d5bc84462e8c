"""The compress stage on the demo classifier: the built-in demo images (ingest's demo_data,
written as Examples through the records contract), a 'cnn' from the registry trained by the
train stage, compressed here and exported by the export stage.

Acceptance 4 (distillation beats scratch), 5 (QAT int8 within 1 point; the chained recipe
keeps sparsity and clusters in the .tflite) and 6 (the frontier's table, plots and choice).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgeline  # noqa: F401
from edgeline.components.compress import frontier, tflite_kernels
from edgeline.components.compress.options import (
    ClusterOptions,
    CompressFrontierOptions,
    CompressStep,
    FineTuneOptions,
    FrontierOptions,
    PruneOptions,
    Recipe,
)
from edgeline.components.train.options import AugmentationOptions

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

FINE_TUNE = FineTuneOptions(epochs=2, learning_rate=1e-4, augmentation=AugmentationOptions(
    crop_area_range=(0.5, 1.0), horizontal_flip=False))
PRUNE80 = CompressStep(method="prune", prune=PruneOptions(target_sparsity=0.8),
                       fine_tune=FineTuneOptions(epochs=3, learning_rate=5e-4,
                                                 augmentation=FINE_TUNE.augmentation))
# QAT from a trained float network: a small rate, so that the fake-quant ranges and the
# weights settle without the network drifting from what it was (Jacob et al., Sec. 3).
QAT = CompressStep(method="qat", fine_tune=FineTuneOptions(
    epochs=2, learning_rate=1e-5, augmentation=FINE_TUNE.augmentation))
CLUSTER16 = CompressStep(method="cluster", cluster=ClusterOptions(number_of_clusters=16),
                         fine_tune=FineTuneOptions(epochs=1, learning_rate=1e-4,
                                                   augmentation=FINE_TUNE.augmentation))


@pytest.fixture(scope="module")
def demo_frontier(demo_teacher, demo_examples, tmp_path_factory):
    options = CompressFrontierOptions(
        recipes={
            "ptq_int8": Recipe(quantize="int8"),
            "qat": Recipe(steps=(CompressStep(method="bn_fold"), QAT)),
            "prune80_cluster16_qat": Recipe(steps=(
                CompressStep(method="bn_fold"), PRUNE80, CLUSTER16, QAT,
            )),
        },
        fine_tune=FINE_TUNE,
        frontier=FrontierOptions(accuracy_budget=1.0, calibration_images=64, latency_runs=20),
    )
    output = tmp_path_factory.mktemp("frontier") / "frontier"
    return frontier.run(options=options, model_dir=demo_teacher.model_dir.directory,
                        examples_dir=demo_examples, output_dir=output, seed=1,
                        log=lambda message: None)


def test_frontier_writes_the_table_the_plots_and_names_the_chosen_model(demo_frontier):
    result = demo_frontier
    directory = result.directory
    table = (directory / frontier.TABLE_FILE).read_text()
    for name in ("original", "ptq_int8", "qat", "prune80_cluster16_qat"):
        assert f"| {name} |" in table
    for plot in (frontier.SIZE_PLOT, frontier.LATENCY_PLOT):
        assert (directory / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((directory / frontier.REPORT_FILE).read_text())
    rows = {row["recipe"]: row for row in report["rows"]}
    assert report["chosen"] == result.chosen == result.properties["chosen"]
    within = [row for row in rows.values() if row["within_budget"]]
    # The chosen model is the smallest (gzip) of those within 1 point of the original.
    assert result.chosen == min(within, key=lambda row: row["gzip_bytes"])["recipe"]
    assert rows[result.chosen]["chosen"] and "**chosen**" in table
    for row in rows.values():
        assert row["tflite_bytes"] > row["gzip_bytes"] > 0 and row["latency_ms"] > 0
    # int8 files are about 4x smaller than float32; pruning's zeros then gzip away.
    assert rows["ptq_int8"]["tflite_bytes"] < rows["original"]["tflite_bytes"] / 3
    assert rows["prune80_cluster16_qat"]["gzip_bytes"] < rows["qat"]["gzip_bytes"] / 2
    print("\n" + table)  # the README's table comes from this run


def test_qat_int8_tflite_is_within_one_point_of_the_float_model(demo_frontier):
    rows = {row["recipe"]: row for row in demo_frontier.rows}
    assert rows["qat"]["quantize"] == "int8"
    # Original minus QAT int8 top-1 with demo_teacher's seeds 1 (the fixture's), 2, 3:
    # -0.007 / 0.003 / -0.003 (the budget allows three of the 300 images; with the teacher
    # trained on demo_examples it lost two on three of seeds 1-6: see demo_teacher).
    assert rows["qat"]["accuracy"] >= rows["original"]["accuracy"] - 0.01
    assert rows["qat"]["evaluated_images"] == rows["original"]["evaluated_images"] == 300


def test_chained_recipe_keeps_sparsity_and_clusters_in_the_tflite(demo_frontier):
    row = next(r for r in demo_frontier.rows if r["recipe"] == "prune80_cluster16_qat")
    content = (demo_frontier.directory / row["tflite"]).read_bytes()
    stored = tflite_kernels.kernels(content)
    # Pruned and clustered: every kernel but the first conv and the classifier (excluded from
    # pruning by default) is 80% zeros; every kernel holds at most 16 values per channel.
    sparse = [k for k in stored if k.sparsity > 0.5]
    assert len(sparse) == len(stored) - 2
    for kernel in stored:
        assert kernel.values.dtype == np.int8
        assert kernel.max_distinct_per_channel <= 16, kernel.name
    for kernel in sparse:
        assert kernel.sparsity == pytest.approx(0.8, abs=0.01), kernel.name


def test_distilled_student_beats_the_same_student_trained_from_scratch(
        demo_teacher, demo_examples):
    """Hinton et al. (2015) on the demo data: the same student network, the same epochs, the
    same data order; one learns from the labels alone, the other from the teacher too."""
    from edgeline.components.compress import core
    from edgeline.components.compress.finetune import fine_tune
    from edgeline.components.compress.options import DistillOptions

    # A short schedule, where the teacher's soft targets help most (Hinton et al., Sec. 3).
    # The student has half the teacher's widths (16-32-64 vs 32-64-128).
    distill_options = DistillOptions(student="cnn",
                                     student_options={"stage_widths": (16, 32, 64)},
                                     temperature=2.0, alpha=0.1, epochs=3, learning_rate=3e-3)
    source = core.read_source(demo_teacher.model_dir.directory)
    task = core.examples_task(demo_examples, source, FINE_TUNE)
    teacher_metrics = task.evaluate(source.model, source.model, max_images=None)

    # Five student seeds, and their means compared: one seed's gain is about the size of
    # its noise. Distilled minus scratch top-1 for student seeds 1, 2, 3 measured with
    # demo_teacher's seeds 1 (the fixture's), 2, 3: 0.050 / 0.020 / 0.013, 0.033 / 0.050 /
    # -0.010, 0.033 / 0.050 / 0.013; student seeds 4, 5 with teacher seed 1: 0.037 / 0.027.
    # With the fixture's teacher the five differences have mean 0.029 and standard deviation
    # 0.014, so their mean sits about 4.6 standard errors above 0. With the 8-16-32 student
    # and seed 1 alone (this test's earlier form) a seed lost outright: -0.027 (teacher seed
    # 1, student seed 3), and -0.010 with the teacher trained on demo_examples.
    scratch_top1, distilled_top1 = [], []
    for seed in (1, 2, 3, 4, 5):
        scratch = core.student_builder(source, seed=seed)(distill_options)
        fine_tune(scratch, task.training_data(scratch, seed=seed), epochs=distill_options.epochs,
                  learning_rate=distill_options.learning_rate)
        scratch_top1.append(task.evaluate(scratch, scratch, max_images=None)["val_top1"])
        outcome = core.run_steps(
            source, [CompressStep(method="distill", distill=distill_options)], task,
            fine_tune=FINE_TUNE, seed=seed, evaluation_images=None, log=lambda message: None)
        distilled_top1.append(outcome.steps[0].metrics["val_top1"])
        assert outcome.steps[0].report["student_parameters"] < outcome.steps[0].report[
            "teacher_parameters"]
    print(f"\nteacher top-1 {teacher_metrics['val_top1']:.3f}; student ({distill_options.epochs} "
          f"epochs, seeds 1-5) from scratch {np.round(scratch_top1, 3)}, distilled "
          f"{np.round(distilled_top1, 3)}")
    assert np.mean(distilled_top1) > np.mean(scratch_top1)


def test_recipe_mode_from_the_command_line_writes_a_model_with_its_reports(
        demo_teacher, demo_examples, tmp_path, capsys):
    """``edgeline compress``: BN folding then 2:4 pruning of the demo classifier."""
    from edgeline.cli import main
    from edgeline.components.compress.core import REPORT_FILE
    from edgeline.models import io as model_io

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "steps:\n"
        "  - {method: bn_fold}\n"
        "  - {method: prune, prune: {structure: '2:4'}}\n"
        "fine_tune: {epochs: 1, learning_rate: 1.0e-4,\n"
        "            augmentation: {crop_area_range: [0.5, 1.0], horizontal_flip: false}}\n"
    )
    output = tmp_path / "small"
    code = main(["compress", str(recipe), "--model", str(demo_teacher.model_dir.directory),
                 "--examples", str(demo_examples), "--output", str(output), "--seed", "1"])
    assert code == 0
    assert "compressed model written to" in capsys.readouterr().out
    model_dir = model_io.load_model_dir(output)
    network = model_dir.load_keras()
    assert not any(isinstance(layer, __import__("tf_keras").layers.BatchNormalization)
                   for layer in network.layers)
    report = json.loads((output / REPORT_FILE).read_text())
    bn_fold, prune = report["steps"]
    assert len(bn_fold["report"]["folded"]) == 3 and bn_fold["report"]["kept"] == []
    layers = prune["report"]["layers"]
    assert [name for name, layer in layers.items() if layer["pruned"]] == [
        "stage2_conv1", "stage3_conv1"]  # the stem has 3 input channels; the classifier stays
    for name in ("stage2_conv1", "stage3_conv1"):
        assert layers[name]["sparsity"] == pytest.approx(0.5)
    metrics = report["metrics"]
    for key in ("top1", "original_top1", "kernel_sparsity", "parameters"):
        assert key in metrics
    # 2:4 pruning and one epoch of fine-tuning cost 0.047 / 0.017 / 0.017 top-1 with
    # demo_teacher's seeds 1 (the fixture's), 2, 3 (0.820 / 0.837 / 0.883 of 0.867 / 0.853 /
    # 0.900).
    assert metrics["top1"] >= metrics["original_top1"] - 0.10

    # The same command again is a cache hit, as a pipeline step's rerun is: the output
    # already holds this very artifact, so there is nothing to refuse and no work to do.
    before = {p.relative_to(output): p.read_bytes() for p in output.rglob("*") if p.is_file()}
    rerun = ["compress", str(recipe), "--model", str(demo_teacher.model_dir.directory),
             "--output", str(output)]
    assert main([*rerun, "--examples", str(demo_examples), "--seed", "1"]) == 0
    assert "(cached, no work done)" in capsys.readouterr().out
    # Another result is refused without --overwrite (the output is the user's), and a compress
    # that fails after it started (here: Examples with no shards) leaves the output as it was.
    assert main([*rerun, "--examples", str(demo_examples), "--seed", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    empty = tmp_path / "no_examples"
    empty.mkdir()
    rerun.extend(["--seed", "1"])
    assert main([*rerun, "--examples", str(empty), "--overwrite"]) != 0
    after = {p.relative_to(output): p.read_bytes() for p in output.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]

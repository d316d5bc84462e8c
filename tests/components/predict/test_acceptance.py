"""Acceptance line 3 of issue 15: ``edgeline predict`` on the demo detector's int8 .tflite and
a folder of the demo's validation pictures writes annotated copies and predictions.json, and
the mAP of that JSON, scored by ``edgeline coco-eval`` against the validation ground truth,
is the export stage's own figure for the same file within 0.005."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # trains the demo detector (shared, about two CPU minutes)


def _edgeline(*args):
    return subprocess.run([sys.executable, "-m", "edgeline", *map(str, args)],
                          capture_output=True, text=True)


def test_predictions_of_the_int8_detector_score_the_exports_map(
        demo_detector, demo_detection_examples, tmp_path):
    from edgeline.components.export import core
    from edgeline.components.export.options import ExportOptions

    export = core.run(model_dir=demo_detector.model_dir.directory, output_dir=tmp_path / "int8",
                      examples_dir=demo_detection_examples,
                      options=ExportOptions(quantize="int8", representative_size=100,
                                            measure_latency=False))
    parity = export.report["parity"]
    # The folder ingest read: images/ holds train_*.jpg and val_*.jpg; the glob takes the
    # validation pictures, the ones the export's parity gate ran on.
    pictures = demo_detection_examples.parent / "source" / "images"
    output = tmp_path / "predictions"
    result = _edgeline("predict", tmp_path / "int8", pictures / "val_*.jpg", "--output", output)
    assert result.returncode == 0, result.stderr
    ground_truth_path = demo_detection_examples / "validation_annotations.json"
    ground_truth = json.loads(ground_truth_path.read_text())
    count = len(ground_truth["images"])
    assert parity["images"] == count
    assert result.stdout.strip().splitlines()[-1] == (
        f"predict: {count} predicted, 0 skipped of {count} given; predictions.json and "
        f"{count} annotated image(s) in {output}")
    assert len(list(output.glob("val_*.jpg"))) == count
    # The demo's file names are not integers: the rows' image_id is the stem ("val_000003"),
    # and coco-eval finds each image by the row's file_name, as it is written.
    predictions = output / "predictions.json"
    assert all(isinstance(row["image_id"], str) for row in json.loads(predictions.read_text()))
    coco_eval = _edgeline("coco-eval", ground_truth_path, predictions, "--json")
    assert coco_eval.returncode == 0, coco_eval.stderr
    predicted_map = json.loads(coco_eval.stdout)["summary"]["AP"]
    print(f"\nmAP of predictions.json {predicted_map:.4f}, export's map_export "
          f"{parity['map_export']:.4f} (Keras {parity['map_source']:.4f})")
    assert parity["map_export"] > 0.35  # real detections are compared
    assert abs(predicted_map - parity["map_export"]) <= 0.005

"""Acceptance 4 on the demo data: the demo classifier and the demo detector (trained by the
train stage on the built-in data, see tests/conftest.py), each as its Keras model, its
SavedModel and its float32 .tflite from the export stage, get the same metrics from the one
evaluator: classification accuracies within one image of the 300 (see below why not 1e-4),
within 0.005 COCO mAP."""

from __future__ import annotations

import pytest

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.evaluate import core
from edgeline.components.evaluate.options import DetectionOptions, EvaluateOptions

pytestmark = pytest.mark.slow  # shares the demo models (trained once per session)


def _float_tflite(model_dir, examples, output_dir):
    from edgeline.components.export import core as export_core
    from edgeline.components.export.options import ExportOptions

    return export_core.run(model_dir=model_dir, output_dir=output_dir, examples_dir=examples,
                           options=ExportOptions(quantize="none", measure_latency=False))


def _evaluate_forms(model_dir, tflite_path, examples, tmp_path, options):
    results = {}
    for form, path in (("keras", model_dir), ("saved_model", model_dir),
                       ("tflite", tflite_path)):
        form_options = EvaluateOptions(**{**options, "model_form": form})
        results[form] = core.run(options=form_options, examples_dir=examples, model_path=path,
                                 output_dir=tmp_path / form, log=lambda message: None)
        assert results[form].properties["model_form"] == form
    return results


def test_demo_classifier_same_metrics_in_every_form(demo_teacher, demo_examples, tmp_path):
    model_dir = demo_teacher.model_dir.directory
    exported = _float_tflite(model_dir, demo_examples, tmp_path / "export")
    results = _evaluate_forms(model_dir, exported.tflite_path, demo_examples, tmp_path,
                              {"batch_size": 32})
    reference = results["keras"].report
    print("\n" + ", ".join(f"{form}: top-1 {r.report['top1']:.4f} top-5 {r.report['top5']:.4f}"
                           for form, r in results.items()))
    assert reference["num_images"] == 300  # 30 validation images of each of the 10 shapes
    # A trained classifier (chance is 0.1): demo_teacher's training seeds 1 (the fixture's),
    # 2, 3 give 0.867 / 0.853 / 0.900.
    assert reference["top1"] > 0.5
    # One image may change sides between the forms, no more. With demo_teacher's seeds 1
    # (the fixture's), 2, 3 the three forms gave identical figures, and the Keras and .tflite
    # softmax outputs differ by at most 7.2e-7 / 6.0e-7 / 8.3e-7; but the validation image
    # nearest a top-1 boundary is only 5.1e-4 / 1.0e-3 / 2.6e-4 from it (its label's
    # probability minus the best other class's), and 4-5 of the 300 are within 1e-2 of a
    # top-1 or top-5 boundary. A weights file trained on another CPU, or another CPU's
    # rounding, can move one such image across: that changes an accuracy by 1/300 (1/30 for
    # its class). A real difference between the forms (preprocessing, outputs) moves many.
    one_image = 1 / reference["num_images"] + 1e-9
    one_of_a_class = 1 / 30 + 1e-9  # 30 validation images per class
    for form in ("saved_model", "tflite"):
        report = results[form].report
        assert report["num_images"] == reference["num_images"]
        assert abs(report["top1"] - reference["top1"]) <= one_image, form
        assert abs(report["top5"] - reference["top5"]) <= one_image, form
        changed = [name for name, accuracy in reference["per_class_accuracy"].items()
                   if abs(report["per_class_accuracy"][name] - accuracy) > 1e-9]
        assert len(changed) <= 1, (form, changed)  # per-class accuracy is top-1's
        for name, accuracy in reference["per_class_accuracy"].items():
            assert abs(report["per_class_accuracy"][name] - accuracy) <= one_of_a_class, (
                form, name)


def test_demo_detector_same_map_in_every_form(demo_detector, demo_detection_examples, tmp_path):
    model_dir = demo_detector.model_dir.directory
    exported = _float_tflite(model_dir, demo_detection_examples, tmp_path / "export")
    results = _evaluate_forms(
        model_dir, exported.tflite_path, demo_detection_examples, tmp_path,
        {"batch_size": 16, "detection": DetectionOptions(score_threshold=0.05)})
    reference = results["keras"].metrics
    print("\n" + ", ".join(f"{form}: mAP {r.metrics['AP']:.4f} AP50 {r.metrics['AP50']:.4f}"
                           for form, r in results.items()))
    assert reference["num_images"] == 80
    # A trained detector, so the comparison is of real boxes: tests/conftest.py's demo_detector
    # reaches AP50 0.94, 0.86, 0.90 with seeds 1, 2, 3 (seed 1 gave 0.912 in a later run:
    # the trained detector itself moves between machines and runs).
    assert reference["AP50"] > 0.6
    for form in ("saved_model", "tflite"):
        for name in ("AP", "AP50", "AP75"):
            assert abs(results[form].metrics[name] - reference[name]) <= 0.005, (form, name)

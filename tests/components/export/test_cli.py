"""``edgeline export tflite``: exit codes 0, 1 (parity refused, figures printed), 2 (bad input)."""

from __future__ import annotations

import json

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.cli import main


def test_export_prints_the_tensors_and_writes_the_files(trained_cnn, shapes_examples, tmp_path,
                                                         capsys):
    code = main(["export", "tflite", str(trained_cnn["directory"]), "--quantize", "dynamic",
                 "--examples", str(shapes_examples["directory"]), "--include-preprocessing",
                 "--output", str(tmp_path / "out"), "--parity-size", "64",
                 "--latency-runs", "3", "--latency-warmup", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "input  pixels: uint8 [1, 32, 32, 3]" in out
    assert "parity (dynamic): top1_drop" in out and "LiteRT latency" in out
    report = json.loads((tmp_path / "out" / "export.json").read_text())
    assert report["quantize"] == "dynamic" and report["parity"]["passed"]
    # The closing lines: how to try the file, and the MediaPipe Tasks lines that load it.
    model = tmp_path / "out" / "model.tflite"
    assert f"try it on your pictures:  edgeline predict {model} photo.jpg" in out
    assert (f"    with mp.tasks.vision.ImageClassifier.create_from_model_path('{model}') as "
            "model:") in out


def test_a_float_input_with_per_channel_normalization_says_what_mediapipe_needs(
        trained_cnn, tmp_path, capsys):
    code = main(["export", "tflite", str(trained_cnn["directory"]), "--no-parity-check",
                 "--no-latency", "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    assert "MediaPipe Tasks: MediaPipe Tasks applies one normalization" in out
    assert "--include-preprocessing" in out and "import mediapipe" not in out


def test_a_refused_export_exits_1_with_its_figures(trained_cnn, shapes_examples, tmp_path,
                                                   capsys):
    code = main(["export", "tflite", str(trained_cnn["directory"]), "--no-latency",
                 "--examples", str(shapes_examples["directory"]), "--parity-size", "32",
                 "--float-tolerance", "1e-12", "--output", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert "export refused: parity (none): max_abs_difference =" in captured.err
    assert "exceeds the limit 1e-12" in captured.err
    assert (tmp_path / "out" / "model.tflite").is_file()  # kept for inspection


def test_bad_input_exits_2_with_one_line(trained_cnn, tmp_path, capsys):
    code = main(["export", "tflite", str(trained_cnn["directory"]), "--quantize", "int8",
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["edgeline: error: the parity gate needs held-out images: give an Examples "
                   "artifact (--examples DIR), or turn the gate off (--no-parity-check)"]
    code = main(["export", "tflite", str(trained_cnn["directory"]), "--quantize", "none",
                 "--io-type", "int8", "--output", str(tmp_path / "out")])
    assert code == 2
    assert "io_type='int8' with quantize='none'" in capsys.readouterr().err

"""`edgeline coco-eval` through the installed entry point, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _edgeline(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgeline", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_coco_eval_command(tmp_path, coco_data):
    folder = coco_data / "small"
    result = _edgeline("coco-eval", folder / "gt_dataset.json", folder / "dt_dataset.json",
                       "--iou-type", "segm", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 12  # the summary and nothing else: the engines' prints are silenced
    assert lines[0] == (" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | "
                        "maxDets=100 ] = 0.695")
    assert lines[3].endswith("= -1.000")  # no small objects in this set, as pycocotools says

    plots = tmp_path / "plots"
    result = _edgeline("coco-eval", folder / "gt_dataset.json", folder / "dt_dataset.json",
                       "--json", "--plots", plots, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout is one JSON document; the plot note is on stderr
    assert report["summary"]["AP"] == report["summary"]["AP50"]
    assert result.stderr.strip().endswith(f"precision-recall plots to {plots}")
    assert (plots / "pr_all.png").is_file()

    result = _edgeline("coco-eval", folder / "gt_dataset.json", tmp_path / "absent.json",
                       cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"edgeline: error: detections file not found: " \
                            f"{str(tmp_path / 'absent.json')!r}\n"


def test_help_names_the_command_and_its_options(tmp_path):
    result = _edgeline("coco-eval", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("GT.json", "DT.json", "--iou-type", "--json", "--plots"):
        assert option in result.stdout
    assert "coco-eval" in _edgeline("--help", cwd=tmp_path).stdout


def test_help_documents_file_name_and_the_tolerated_inputs(tmp_path):
    help_text = " ".join(_edgeline("coco-eval", "--help", cwd=tmp_path).stdout.split())
    assert "by 'file_name' instead of 'image_id'" in help_text
    assert "same base name" in help_text
    assert "ground truth without 'area'" in help_text


def test_coco_eval_imports_no_tensorflow_and_no_other_stage(tmp_path, coco_data):
    """The whole process is what users time against pycocotools: no TensorFlow, no Beam, no
    other stage's options on this path."""
    folder = coco_data / "val2014_100"
    code = (
        "import sys; from edgeline.cli import main; "
        f"main(['coco-eval', {str(folder / 'instances_val2014_100.json')!r}, "
        f"{str(folder / 'instances_val2014_fakebbox100_results.json')!r}]); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'tf_keras', "
        "'keras', 'apache_beam', 'yaml', 'faster_coco_eval', 'pycocotools'}), "
        "sorted(m for m in sys.modules if m.startswith('edgeline.components.') and "
        "not m.startswith('edgeline.components.evaluate')))"
    )
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[] []"
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "ultrafast_pycocotools" in imported and "tensorflow" not in imported

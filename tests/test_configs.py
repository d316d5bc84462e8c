"""The real-data configs (configs/imagenet_mobilenet_v2.yaml, configs/coco_detector.yaml) run
end to end through the real CLI on a tiny slice of real data, so that they cannot rot.

Only sizes are overridden (`edgeline run CONFIG --set key=value`): the data paths, a narrow
network at a small input, one epoch, a few images for calibration and the parity gate. Every
stage the config names runs as written: Beam ingest of the official ILSVRC tar layout or a
COCO set, training, evaluation, QAT, int8 export with its parity gate, and evaluation of the
exported .tflite in LiteRT.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edgeline.pipeline.config import load_pipeline_config
from edgeline.pipeline.errors import ConfigError

IMAGENET_CONFIG = "configs/imagenet_mobilenet_v2.yaml"
COCO_CONFIG = "configs/coco_detector.yaml"

# ILSVRC slice: 4 classes x 3 training images, 4 validation images. The sample holds one real
# JPEG per class, so each per-class tar holds its own class's image and two real images of
# classes outside the slice, renamed as that class's (the labels only feed the plumbing here).
# One training source is grayscale, which ingest must re-encode as RGB.
TRAIN_CLASSES = ("n01440764", "n01443537", "n01484850", "n01491361")
TRAIN_IMAGES_PER_CLASS = 3
VAL_IMAGES = 4
GRAYSCALE_SOURCE = "n02096051/n02096051_Airedale.JPEG"

# mixed_precision 'auto' is mixed_bfloat16 on a CPU, which this CPU (no AVX512-BF16) emulates at
# 2-3x the cost; the GPU path it stands for (mixed_float16) cannot run here anyway. Quoted:
# YAML reads a bare off as false.
MIXED_PRECISION_OFF = "{step}.mixed_precision='off'"

# COCO slice: VOC images with their boxes, in COCO format.
COCO_TRAIN_IMAGES = 8
COCO_VAL_IMAGES = 4


def _edgeline(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeline", *args], capture_output=True,
                          text=True, cwd=cwd)


def _artifacts(runs_dir: Path, cwd: Path) -> dict[str, dict]:
    """step name -> the artifact entry of `edgeline runs show --json` for the latest run."""
    shown = _edgeline("runs", "show", "--json", "--runs-dir", str(runs_dir), cwd=cwd)
    assert shown.returncode == 0, shown.stderr[-3000:]
    info = json.loads(shown.stdout)
    assert info["status"] == "complete"
    return {artifact["step"]: artifact for artifact in info["artifacts"]}


def _stage_options() -> dict[str, type]:
    from edgeline.cli import stage_registry

    return stage_registry().options_types()


# -- the ILSVRC-2012 tars, built the way image-net.org ships them --------------------------------
def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:  # uncompressed, as the originals
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _write_ilsvrc(shared_data: Path, root: Path) -> tuple[Path, Path]:
    """(source folder holding ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar, the
    filename,wnid labels CSV of the validation tar)."""
    sample = shared_data / "imagenet_sample" / "train"
    others = sorted(p for p in sample.glob("*/*.JPEG") if p.parent.name not in TRAIN_CLASSES
                    and p.relative_to(sample).as_posix() != GRAYSCALE_SOURCE)
    grayscale = sample / GRAYSCALE_SOURCE
    spare = iter([grayscale, *others])
    class_tars = {}
    for wnid in TRAIN_CLASSES:
        sources = [next(sample.joinpath(wnid).glob("*.JPEG"))]
        sources += [next(spare) for _ in range(TRAIN_IMAGES_PER_CLASS - 1)]
        members = {f"{wnid}_{i + 1}.JPEG": p.read_bytes() for i, p in enumerate(sources)}
        class_tars[f"{wnid}.tar"] = _tar_bytes(members)
    source = root / "ilsvrc2012"
    source.mkdir()
    (source / "ILSVRC2012_img_train.tar").write_bytes(_tar_bytes(class_tars))
    val_members, rows = {}, []
    for number in range(1, VAL_IMAGES + 1):
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        val_members[name] = next(spare).read_bytes()
        rows.append((name, TRAIN_CLASSES[(number - 1) % len(TRAIN_CLASSES)]))
    (source / "ILSVRC2012_img_val.tar").write_bytes(_tar_bytes(val_members))
    labels = root / "val_labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("filename", "wnid"), *rows])
    return source, labels


# -- a COCO-format split of voc100 ---------------------------------------------------------------
def _write_coco_splits(shared_data: Path, root: Path) -> dict[str, Path]:
    voc = shared_data / "voc100"
    data = json.loads((voc / "instances.json").read_text())
    annotated = sorted({a["image_id"] for a in data["annotations"]})
    chosen = {"train": annotated[:COCO_TRAIN_IMAGES],
              "val": annotated[COCO_TRAIN_IMAGES:COCO_TRAIN_IMAGES + COCO_VAL_IMAGES]}
    paths = {}
    for split, ids in chosen.items():
        keep = set(ids)
        subset = {**data, "images": [i for i in data["images"] if i["id"] in keep],
                  "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}
        paths[split] = root / f"{split}.json"
        paths[split].write_text(json.dumps(subset))
    paths["images"] = voc / "images"
    return paths


# -- fast: the files parse and validate ----------------------------------------------------------
def test_imagenet_config_validates_with_its_paths_set(repo_root, tmp_path):
    (tmp_path / "imagenet").mkdir()
    config = load_pipeline_config(str(repo_root / IMAGENET_CONFIG), _stage_options(),
                                  [f"images.source={tmp_path / 'imagenet'}"])
    steps = {step.name: step for step in config.steps}
    assert [s.stage for s in config.steps] == ["ingest", "train", "evaluate", "compress",
                                                "export", "evaluate"]
    train = steps["classifier"].options
    assert train.model == "mobilenet_v2" and tuple(train.data.input_size) == (224, 224)
    assert train.label_smoothing > 0 and train.schedule.name == "cosine"
    assert [s.method for s in steps["qat"].options.steps][-1] == "qat"
    export = steps["export_int8"].options
    assert export.quantize == "int8" and export.check_parity
    assert steps["evaluate_int8"].inputs == ("images", "export_int8")


def test_coco_config_validates_with_its_paths_set(repo_root, tmp_path):
    for name in ("train2017", "val2017", "train.json", "val.json"):
        (tmp_path / name).touch() if name.endswith(".json") else (tmp_path / name).mkdir()
    config = load_pipeline_config(str(repo_root / COCO_CONFIG), _stage_options(), [
        f"boxes.images={tmp_path / 'train2017'}", f"boxes.annotations={tmp_path / 'train.json'}",
        f"boxes.val_images={tmp_path / 'val2017'}",
        f"boxes.val_annotations={tmp_path / 'val.json'}",
    ])
    steps = {step.name: step for step in config.steps}
    assert steps["detector"].options.model == "mobilenet_v2_detector"
    assert {steps[name].options.quantize for name in ("export_float", "export_int8")} == {
        "none", "int8"}
    assert steps["evaluate_int8"].inputs == ("boxes", "export_int8")


@pytest.mark.parametrize(("config", "key", "placeholder"), [
    (IMAGENET_CONFIG, "images.source", "/data/imagenet"),
    (COCO_CONFIG, "boxes.images", "/data/coco/train2017"),
])
def test_config_as_shipped_names_the_data_path_to_set(repo_root, config, key, placeholder):
    """Unedited, a config stops before any work with one line naming the key to set and the
    placeholder path it holds."""
    with pytest.raises(ConfigError, match=f"^{re.escape(key)}: .*'{re.escape(placeholder)}'"):
        load_pipeline_config(str(repo_root / config), _stage_options())


# -- slow: end to end through `edgeline run` -----------------------------------------------------
@pytest.mark.slow
def test_imagenet_config_runs_end_to_end_on_ilsvrc_tars(repo_root, shared_data, tmp_path):
    source, val_labels = _write_ilsvrc(shared_data, tmp_path)
    runs_dir = tmp_path / "runs"
    tiny = [
        f"images.source={source}", f"images.val_labels={val_labels}",
        "images.train_shards=2", "images.val_shards=1", "images.workers=1",
        "classifier.model_options.width_multiplier=0.35", "classifier.epochs=1",
        "classifier.batch_size=4", "classifier.data.input_size=[32, 32]",
        "classifier.data.shuffle_buffer=16", "classifier.optimizer.learning_rate=0.01",
        MIXED_PRECISION_OFF.format(step="classifier"),
        "evaluate_float.batch_size=4", "evaluate_float.plots=false",
        "qat.fine_tune.epochs=1", "qat.fine_tune.batch_size=4",
        "qat.fine_tune.steps_per_epoch=1", "qat.evaluation_images=4",
        "export_int8.representative_size=8", "export_int8.parity_size=4",
        "export_int8.measure_latency=false",
        # One flipped prediction among 4 held-out images is 25 points of top-1: the gate
        # runs and reports, with a budget that 4 images can measure.
        "export_int8.max_metric_drop=1.0",
        "evaluate_int8.plots=false",
    ]
    args = ["run", IMAGENET_CONFIG, "--runs-dir", str(runs_dir)]
    for override in tiny:
        args += ["--set", override]
    ran = _edgeline(*args, cwd=repo_root)
    assert ran.returncode == 0, ran.stderr[-5000:]
    assert "6 step(s) built, 0 cached" in ran.stdout
    artifacts = _artifacts(runs_dir, repo_root)

    examples = artifacts["images"]
    assert examples["type"] == "Examples"
    splits = examples["properties"]["splits"]
    train_count = len(TRAIN_CLASSES) * TRAIN_IMAGES_PER_CLASS
    assert (splits["train"]["seen"], splits["train"]["written"]) == (train_count, train_count)
    assert splits["train"]["fixed"] == 1  # the grayscale JPEG, re-encoded as RGB
    assert (splits["validation"]["seen"], splits["validation"]["written"]) == (VAL_IMAGES,
                                                                               VAL_IMAGES)
    assert examples["properties"]["num_classes"] == len(TRAIN_CLASSES)
    labels = Path(examples["path"], "labels.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in labels] == sorted(TRAIN_CLASSES)

    assert artifacts["classifier"]["type"] == "Model"
    preprocessing = json.loads(Path(artifacts["classifier"]["path"],
                                    "preprocessing.json").read_text())
    assert preprocessing["input_size"] == [32, 32]
    for step in ("evaluate_float", "evaluate_int8"):
        metrics = artifacts[step]["metrics"]
        assert metrics["num_images"] == VAL_IMAGES, step
        assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0, step
    assert artifacts["evaluate_int8"]["properties"]["model_type"] == "TFLiteModel"

    assert artifacts["qat"]["type"] == "Model"
    export = artifacts["export_int8"]
    assert export["type"] == "TFLiteModel" and export["properties"]["quantize"] == "int8"
    assert export["metrics"]["parity_passed"] is True
    assert "parity_top1_export" in export["metrics"]
    _check_tflite(Path(export["path"], "model.tflite"), input_size=(32, 32),
                  outputs=len(TRAIN_CLASSES))


def _check_tflite(path: Path, *, input_size: tuple[int, int], outputs: int) -> None:
    """The exported classifier runs in LiteRT: uint8 pixels in (preprocessing inside), one
    score per class out, int8 kernels inside."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (image_input,) = interpreter.get_input_details()
    assert image_input["dtype"] == np.uint8
    assert tuple(image_input["shape"][1:]) == (*input_size, 3)
    pixels = np.random.default_rng(0).integers(0, 256, size=(1, *input_size, 3), dtype=np.uint8)
    interpreter.set_tensor(image_input["index"], pixels)
    interpreter.invoke()
    (scores,) = interpreter.get_output_details()
    result = interpreter.get_tensor(scores["index"])
    assert result.shape == (1, outputs) and np.all(np.isfinite(result))
    dtypes = {detail["dtype"] for detail in interpreter.get_tensor_details()}
    assert np.int8 in dtypes


@pytest.mark.slow
def test_coco_config_runs_end_to_end_on_voc_images(repo_root, shared_data, tmp_path):
    paths = _write_coco_splits(shared_data, tmp_path)
    runs_dir = tmp_path / "runs"
    tiny = [
        f"boxes.images={paths['images']}", f"boxes.annotations={paths['train']}",
        f"boxes.val_images={paths['images']}", f"boxes.val_annotations={paths['val']}",
        "boxes.train_shards=2", "boxes.val_shards=1", "boxes.workers=1",
        "detector.model_options.backbone_width_multiplier=0.35",
        "detector.model_options.fpn_channels=16", "detector.model_options.head_channels=16",
        "detector.model_options.head_depth=1", "detector.epochs=1",
        "detector.batch_size=4", "detector.data.input_size=[64, 64]",
        "detector.data.shuffle_buffer=16", MIXED_PRECISION_OFF.format(step="detector"),
        # An untrained detector scores ~1e-4 (the 0.01 prior squared): keep every detection,
        # so that COCO scoring sees real boxes rather than an empty result list.
        "detector.decoding.score_threshold=0.0", "evaluate.detection.score_threshold=0.0",
        "evaluate.plots=false", "evaluate.batch_size=4",
        "export_float.parity_size=4", "export_float.measure_latency=false",
        "export_int8.representative_size=8", "export_int8.parity_size=4",
        "export_int8.measure_latency=false", "evaluate_int8.plots=false",
        # One epoch learns nothing to keep 95% of: the gate's budget would be 5% of ~1e-4.
        "export_int8.max_relative_metric_drop=1.0",
    ]
    args = ["run", COCO_CONFIG, "--runs-dir", str(runs_dir)]
    for override in tiny:
        args += ["--set", override]
    ran = _edgeline(*args, cwd=repo_root)
    assert ran.returncode == 0, ran.stderr[-5000:]
    assert "6 step(s) built, 0 cached" in ran.stdout
    artifacts = _artifacts(runs_dir, repo_root)

    examples = artifacts["boxes"]
    assert examples["properties"]["task"] == "detection"
    splits = examples["properties"]["splits"]
    assert splits["train"]["written"] == COCO_TRAIN_IMAGES
    assert splits["validation"]["written"] == COCO_VAL_IMAGES
    voc_categories = json.loads(Path(paths["train"]).read_text())["categories"]
    assert examples["properties"]["num_classes"] == len(voc_categories)
    truth = json.loads(Path(examples["path"], "validation_annotations.json").read_text())
    assert len(truth["images"]) == COCO_VAL_IMAGES and truth["annotations"]

    assert artifacts["detector"]["type"] == "Model"
    val_ids = {image["id"] for image in truth["images"]}
    category_ids = {category["id"] for category in voc_categories}
    for step in ("evaluate", "evaluate_int8"):
        metrics = artifacts[step]["metrics"]
        assert metrics["num_images"] == COCO_VAL_IMAGES, step
        for key in ("AP", "AP50", "AP75", "AR100"):
            assert -1.0 <= metrics[key] <= 1.0, (step, key)  # COCOeval: -1 when undefined
        detections = json.loads(Path(artifacts[step]["path"], "detections.json").read_text())
        # Threshold 0: every image fills its 100 slots (the config's max_detections).
        assert len(detections) == 100 * COCO_VAL_IMAGES, step
        assert {d["image_id"] for d in detections} == val_ids, step
        assert {d["category_id"] for d in detections} <= category_ids, step
    assert artifacts["evaluate_int8"]["properties"]["model_type"] == "TFLiteModel"
    for step, quantize in (("export_float", "none"), ("export_int8", "int8")):
        export = artifacts[step]
        assert export["type"] == "TFLiteModel" and export["properties"]["quantize"] == quantize
        assert export["properties"]["task"] == "detection"
        assert export["metrics"]["parity_passed"] is True
        tflite = Path(export["path"], "model.tflite")
        assert tflite.stat().st_size == export["metrics"]["size_bytes"] > 0
    # int8 weights: the file is well under half the float32 one.
    float_size = artifacts["export_float"]["metrics"]["size_bytes"]
    assert artifacts["export_int8"]["metrics"]["size_bytes"] < float_size / 2

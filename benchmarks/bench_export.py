"""Export benchmark: size and LiteRT latency of MobileNet v2 (224x224, 1000 classes) exported
as float32, float16, dynamic-range int8 and full-integer int8, side by side.

    python -m benchmarks.run export

Every export is converted by ``edgeline.components.export.convert.convert_keras`` and timed in
``ai_edge_litert`` (batch 1, after warm-up), with 1 thread and with every core. The machine
is shared, so the four exports are timed in turn, round after round, and each figure is the
median of its per-round medians: a burst of load slows all four alike instead of one. The float32 export is the baseline of each figure. The weights are the untrained
network's, with its batch-norm statistics fitted to the calibration images so activations have
a trained network's scale: size and speed do not depend on what the weights learned.
Target (the export issue): full-integer int8 at least 1.5x faster than float32 on 1 thread.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)

INPUT_SIZE = 224
CALIBRATION_IMAGES = 32
WARMUP = 10
ROUNDS = 5  # the modes are timed in turn, round after round, so load drift hits all alike
RUNS_PER_ROUND = 10
INT8_SPEEDUP_TARGET = 1.5
MODES = ("none", "float16", "dynamic", "int8")
LABELS = {"none": "float32", "float16": "float16", "dynamic": "dynamic", "int8": "int8"}


def _calibration_images(count: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields: image-like statistics (neighbouring pixels correlate)
    rather than white noise, normalized with the ImageNet mean and std."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, 7, 7, 3)).astype(np.float32)
    pixels = tf.image.resize(coarse, (INPUT_SIZE, INPUT_SIZE), method="bicubic").numpy()
    pixels = np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    return ((pixels / 255.0 - mean) / std).astype(np.float32)


def _mobilenet_v2(calibration: np.ndarray):
    import tf_keras as keras

    from edgeline import models

    model = models.build("mobilenet_v2", num_classes=1000,
                         input_shape=(INPUT_SIZE, INPUT_SIZE, 3))
    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(calibration, training=True)  # BN statistics of the calibration images
    for layer in norms:
        layer.momentum = 0.99
    return model


TIMING_NOTE = (f"median of {ROUNDS} interleaved rounds of {RUNS_PER_ROUND} runs after "
               f"{WARMUP} warm-up runs; ratio = speed-up over float32")


def _row(figure, value, baseline, baseline_value, *, target="", met=None, note="",
         higher_is_better=False):
    ratio = None
    if baseline_value and value:
        ratio = (value / baseline_value) if higher_is_better else (baseline_value / value)
    return {"figure": figure, "value": value, "baseline": baseline,
            "baseline_value": baseline_value, "ratio": ratio, "target": target, "met": met,
            "note": note}


def run(workdir: Path) -> list[dict]:
    from edgeline.common import litert
    from edgeline.components.export import convert

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    calibration = _calibration_images(CALIBRATION_IMAGES)
    model = _mobilenet_v2(calibration)
    threads_all = litert.all_threads()
    contents, measured = {}, {}
    for mode in MODES:
        started = time.time()
        contents[mode] = convert.convert_keras(model, quantize=mode, representative=calibration)
        measured[mode] = {"bytes": len(contents[mode]), "convert_s": time.time() - started}
        (workdir / f"mobilenet_v2_{LABELS[mode]}.tflite").write_bytes(contents[mode])
    for threads, key in ((1, "latency_1"), (threads_all, "latency_all")):
        runtimes = {mode: litert.LiteRTModel(contents[mode], num_threads=threads)
                    for mode in MODES}
        for runtime in runtimes.values():
            runtime.latency_ms(warmup=WARMUP, runs=1)
        rounds = {mode: [] for mode in MODES}
        for _ in range(ROUNDS):
            for mode, runtime in runtimes.items():
                rounds[mode].append(runtime.latency_ms(warmup=1, runs=RUNS_PER_ROUND))
        for mode in MODES:
            measured[mode][key] = float(np.median(rounds[mode]))
    base = measured["none"]
    rows = []
    for mode in MODES:
        if mode == "none":
            continue
        figures = measured[mode]
        rows.append(_row(f"MobileNet v2 224 {LABELS[mode]} .tflite size (MB)",
                         figures["bytes"] / 1e6, "float32 size (MB)", base["bytes"] / 1e6,
                         note="ratio = float32 size / this size"))
    for mode in MODES:
        if mode == "none":
            continue
        figures = measured[mode]
        is_int8 = mode == "int8"
        speedup = base["latency_1"] / figures["latency_1"]
        rows.append(_row(
            f"MobileNet v2 224 {LABELS[mode]} LiteRT latency, 1 thread (ms)",
            figures["latency_1"], "float32, 1 thread (ms)", base["latency_1"],
            target=f">= {INT8_SPEEDUP_TARGET}x float32" if is_int8 else "",
            met=(speedup >= INT8_SPEEDUP_TARGET) if is_int8 else None,
            note=TIMING_NOTE,
        ))
        rows.append(_row(
            f"MobileNet v2 224 {LABELS[mode]} LiteRT latency, {threads_all} threads (ms)",
            figures["latency_all"], f"float32, {threads_all} threads (ms)", base["latency_all"],
            note=TIMING_NOTE,
        ))
    rows.append(_row("MobileNet v2 224 float32 LiteRT latency, 1 thread (ms)",
                     base["latency_1"], "", None,
                     note=f"{base['bytes'] / 1e6:.2f} MB; {threads_all} threads: "
                          f"{base['latency_all']:.2f} ms"))
    rows.append(_row("conversion time, int8 incl. calibration (s)",
                     measured["int8"]["convert_s"], "float32 conversion (s)", base["convert_s"],
                     note=f"{CALIBRATION_IMAGES} calibration images; ratio = float32 / int8"))
    return rows

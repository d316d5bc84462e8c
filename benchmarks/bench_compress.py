"""Compression figures, each beside its uncompressed baseline, on the registry's 'cnn'
(32-64-128 wide, 40x40 inputs, 10 classes) fine-tuned on generated images.

    python -m benchmarks.run compress

* gzip size of the float ``.tflite``: pruned to 80% vs dense (the issue's 3x);
* gzip size of prune 80% -> cluster 16 -> QAT (int8) vs the dense float ``.tflite``: the
  Deep Compression chain;
* LiteRT latency (batch 1, 1 thread) of the QAT int8 ``.tflite`` vs the float32 one;
* Keras inference time of the BN-folded network vs the original (TFLite's converter folds BN
  itself, so the gain is for Keras/TF serving).
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np

import edgeline  # noqa: F401

NUM_CLASSES = 10
SIZE = 40


def _data(count: int, seed: int):
    """Images whose class is the position of a bright blob: learnable, no download."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, NUM_CLASSES, count)
    images = rng.normal(0, 0.5, (count, SIZE, SIZE, 3)).astype(np.float32)
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 5)
        image[row * 20:row * 20 + 12, col * 8:col * 8 + 8] += 1.5
    return images, labels


def _row(figure, value, baseline, baseline_value, ratio, target, met, note):
    return {"figure": figure, "value": value, "baseline": baseline,
            "baseline_value": baseline_value, "ratio": ratio, "target": target, "met": met,
            "note": note}


def run(workdir: Path) -> list[dict]:
    import tensorflow as tf
    import tf_keras as keras

    from edgeline.common.litert import measure_latency
    from edgeline.components.compress.bn_fold import fold_batch_norm
    from edgeline.components.compress.cluster import cluster
    from edgeline.components.compress.finetune import TrainingData
    from edgeline.components.compress.options import (
        ClusterOptions,
        FineTuneOptions,
        PruneOptions,
        QatOptions,
    )
    from edgeline.components.compress.prune import prune
    from edgeline.components.compress.qat import qat
    from edgeline.components.export.convert import convert_keras
    from edgeline.models import registry

    workdir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    images, labels = _data(1024, seed=0)
    model = registry.build("cnn", num_classes=NUM_CLASSES, input_shape=(SIZE, SIZE, 3),
                           stage_widths=(32, 64, 128))
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, epochs=3, batch_size=32, verbose=0)
    data = TrainingData(
        train=tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(1024, seed=0)
        .repeat().batch(32),
        steps_per_epoch=32,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    tune = FineTuneOptions(epochs=2, learning_rate=1e-3)

    def gzip_bytes(content: bytes) -> int:
        return len(gzip.compress(content, compresslevel=9))

    dense_float = convert_keras(model, quantize="none")
    pruned = prune(model, data, PruneOptions(target_sparsity=0.8), tune).model
    pruned_float = convert_keras(pruned, quantize="none")
    clustered = cluster(pruned, data, ClusterOptions(number_of_clusters=16),
                        FineTuneOptions(epochs=1, learning_rate=1e-4)).model
    chained = convert_keras(qat(clustered, data, QatOptions(), tune).model, quantize="int8")
    qat_int8 = convert_keras(qat(model, data, QatOptions(), tune).model, quantize="int8")
    for name, content in (("dense_float", dense_float), ("pruned_float", pruned_float),
                          ("prune_cluster_qat_int8", chained), ("qat_int8", qat_int8)):
        (workdir / f"{name}.tflite").write_bytes(content)

    rows = []
    dense_gzip, pruned_gzip = gzip_bytes(dense_float), gzip_bytes(pruned_float)
    ratio = dense_gzip / pruned_gzip
    rows.append(_row("gzip bytes, float .tflite, pruned 80%", pruned_gzip, "dense float",
                     dense_gzip, ratio, ">= 3x smaller", ratio >= 3.0,
                     "first conv and classifier stay dense (the default exclusions)"))
    chained_gzip = gzip_bytes(chained)
    ratio = dense_gzip / chained_gzip
    rows.append(_row("gzip bytes, prune 80% -> cluster 16 -> QAT int8", chained_gzip,
                     "dense float", dense_gzip, ratio, ">= 8x smaller", ratio >= 8.0,
                     "the Deep Compression order, without Huffman coding"))
    latency = measure_latency(qat_int8, thread_counts=[1], warmup=10, runs=200)[1]
    float_latency = measure_latency(dense_float, thread_counts=[1], warmup=10, runs=200)[1]
    ratio = float_latency / latency
    rows.append(_row("LiteRT latency ms, QAT int8, batch 1, 1 thread", latency, "float32",
                     float_latency, ratio, "faster than float32", ratio > 1.0,
                     "median of 200 runs, XNNPACK"))

    folded, _ = fold_batch_norm(model)
    batch = images[:256]

    def seconds(network) -> float:
        network.predict(batch, batch_size=256, verbose=0)  # trace once
        started = time.perf_counter()
        for _ in range(10):
            network.predict(batch, batch_size=256, verbose=0)
        return (time.perf_counter() - started) / 10

    folded_seconds, original_seconds = seconds(folded), seconds(model)
    ratio = original_seconds / folded_seconds
    rows.append(_row("Keras predict seconds, 256 images, BN folded", folded_seconds,
                     "with BN layers", original_seconds, ratio, "faster than with BN",
                     ratio > 1.0, "outputs equal to 1e-4; TFLite folds BN itself"))
    return rows

"""Where training runs: the tf.distribute strategy and the precision policy.

- One device: TensorFlow's default strategy (the only one ``BackupAndRestore`` accepts besides
  the mirrored ones).
- ``MirroredStrategy`` over every GPU, or over the logical CPU devices when there is no GPU
  (that is how the tests prove the multi-device path on a CPU machine).
- ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names a cluster of several workers.
- Mixed precision (Micikevicius et al., "Mixed Precision Training", ICLR 2018): float16 with
  dynamic loss scaling on GPUs; bfloat16, which keeps float32's exponent range and needs no
  loss scaling, on CPUs (and TPUs).

Collective ops must be configured before TensorFlow runs anything, so :func:`select_strategy`
is the first thing the train core does. Seeds, op determinism and restoring the policy after a
run are :mod:`edgeline.common.determinism`'s.
"""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf
import tf_keras as keras

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.pipeline.errors import UserError


def cluster_spec() -> dict[str, Any]:
    """``TF_CONFIG`` as a dict ({} when unset); a malformed one is a user error."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"TF_CONFIG is not valid JSON: received {text[:80]!r}") from None
    if not isinstance(config, dict):
        raise UserError(f"TF_CONFIG must be a JSON object, received {text[:80]!r}")
    return config


def worker_count() -> int:
    cluster = cluster_spec().get("cluster", {})
    return sum(len(cluster.get(role, [])) for role in ("chief", "worker"))


def select_strategy(kind: str) -> tf.distribute.Strategy:
    """The strategy for ``kind``: ``auto``, ``one_device``, ``mirrored`` or ``multi_worker``."""
    if kind == "auto":
        if worker_count() > 1:
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "one_device"
    if kind == "one_device":
        return tf.distribute.get_strategy()
    if kind == "multi_worker":
        if worker_count() < 1:
            raise UserError(
                "distribution: multi_worker needs TF_CONFIG naming the cluster and this "
                f"worker's task; received TF_CONFIG={os.environ.get('TF_CONFIG', '')!r}"
            )
        implementation = (
            tf.distribute.experimental.CommunicationImplementation.NCCL
            if tf.config.list_physical_devices("GPU")
            else tf.distribute.experimental.CommunicationImplementation.RING
        )
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=implementation
            )
        )
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
        # NCCL is GPU-only; on CPU devices the gradients are summed on one device.
        return tf.distribute.MirroredStrategy(
            devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    raise UserError(
        f"distribution: expected auto, one_device, mirrored or multi_worker, received {kind!r}"
    )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the shared outputs (always, outside multi-worker)."""
    return bool(strategy.extended.should_checkpoint)


def task_identity() -> tuple[str, int]:
    """This worker's (type, index) from TF_CONFIG; ("chief", 0) when training alone."""
    task = cluster_spec().get("task", {})
    return str(task.get("type", "chief")), int(task.get("index", 0))


def is_chief_task() -> bool:
    """Whether TF_CONFIG makes this process the chief (the only process, without one)."""
    spec = cluster_spec()
    task_type, index = task_identity()
    if "chief" in spec.get("cluster", {}):
        return task_type == "chief"
    return task_type in ("chief", "worker") and index == 0


def precision_policy(kind: str) -> str:
    """The Keras dtype policy for the ``mixed_precision`` option."""
    if kind == "off":
        return "float32"
    if kind == "auto":
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    return kind


def set_precision_policy(name: str) -> None:
    keras.mixed_precision.set_global_policy(name)

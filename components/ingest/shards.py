"""Deterministic sharding and the per-shard writer.

The shard of a record is a function of its key alone (a hash, so classes spread over all
shards), and records within a shard are written in hash-of-key order. A shard's bytes thus
depend only on which inputs it holds and their contents: the same input gives the same
shards whatever the number of workers, the runner, or the order files were listed in.

:func:`write_shard` reads the image bytes itself (inputs arrive as small refs), checks and
fixes each image, and writes the TFRecord and a small JSON report (counts, what was fixed,
what was rejected and why) that the driver merges into rejected.jsonl and the artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable

from edgeline.components.ingest import tfrecord
from edgeline.components.ingest.images import ImageRejected, prepare_image
from edgeline.components.ingest.plan import IngestPlan
from edgeline.components.ingest.sources import ByteReader, FileRef, InputRefused
from edgeline.pipeline import records


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def shard_of(key: str, shard_count: int) -> int:
    """Which shard ``key`` goes to: the first 8 bytes of sha256(key), modulo the count."""
    return int.from_bytes(_digest(key)[:8], "big") % shard_count


def order_in_shard(ref: FileRef) -> tuple:
    """A total order on refs that depends on nothing but the refs (ties only for the same
    key listed twice, e.g. a repeated tar member, broken by where its bytes are)."""
    return _digest(ref.key), ref.key, ref.display_path, ref.offset


def report_path(report_dir: str, split: str, shard: int) -> str:
    return os.path.join(report_dir, f"{split}-{shard:05d}.json")


def _features(plan: IngestPlan, ref: FileRef, data: bytes):
    """(features, fix, box notes) for one input, or ImageRejected."""
    image = prepare_image(
        data, quality=plan.reencode_quality, verify_decode=plan.verify_decode
    )
    sha256 = hashlib.sha256(image.encoded).hexdigest()
    if plan.task == "classification":
        from edgeline.components.ingest.imagenet import classification_features

        return classification_features(plan, ref, image, sha256), image.fix, []
    from edgeline.components.ingest.coco import detection_features, size_problem

    problem = size_problem(plan.coco_images[ref.split][ref.label], image)
    if problem:
        raise ImageRejected(problem)
    features, box_notes = detection_features(plan, ref, image, sha256)
    return features, image.fix, box_notes


def write_shard(plan: IngestPlan, split: str, shard: int, refs: Iterable[FileRef]) -> dict:
    """Write shard ``shard`` of ``split`` and its report; return the report."""
    started = time.perf_counter()
    count = plan.shard_counts[split]
    path = os.path.join(plan.output_dir, records.shard_name(split, shard, count))
    report = {"split": split, "shard": shard, "written": 0, "fixed": [], "rejected": [],
              "boxes": []}
    with tfrecord.TFRecordWriter(path) as writer, ByteReader() as reader:
        for ref in sorted(refs, key=order_in_shard):
            reason = ref.reject
            if reason is None:
                try:
                    features, fix, box_notes = _features(plan, ref, reader.read(ref))
                except (ImageRejected, InputRefused) as err:
                    reason = str(err)
                except OSError as err:
                    reason = f"unreadable: {err.strerror or err}"
            if reason is not None:
                report["rejected"].append(
                    {"path": ref.display_path, "key": ref.key, "reason": reason}
                )
                continue
            writer.write_parts(tfrecord.example_parts(features))
            report["written"] += 1
            if fix:
                report["fixed"].append({"path": ref.display_path, "key": ref.key, "fix": fix})
            report["boxes"] += ({"path": ref.display_path, **note} for note in box_notes)
    report["bytes"] = writer.bytes_written
    report["seconds"] = time.perf_counter() - started
    tmp = f"{report_path(plan.report_dir, split, shard)}.tmp-{uuid.uuid4().hex}"  # per attempt
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f)
    os.replace(tmp, report_path(plan.report_dir, split, shard))
    return report

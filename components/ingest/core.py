"""The ingest core: a source in, an Examples artifact's files out.

    run(options, output_dir) ->
        <split>-XXXXX-of-YYYYY.tfrecord   the shards (train, validation)
        labels.txt                        wnid<TAB>text, or category_id<TAB>name (detection)
        rejected.jsonl                    one line per input not written: path and reason
        fixed.jsonl                       one line per input re-encoded: path and what was done
        boxes.jsonl                       detection: one line per box dropped or fixed, and why
        <split>_annotations.json          detection: the COCO ground truth of written images
        dataset_info.json, features.json  for tfds.builder_from_directory

Steps: 1. resolve the source (generate built-in demo data on first use); 2. plan: find the
layout, classes and ground truth, list the units of work (bad input stops here with a
UserError); 3. run the Beam pipeline; 4. merge the shard writers' reports, so that every
input is accounted for: per split ``seen == written + rejected``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from edgeline.components.ingest.options import IngestOptions
from edgeline.components.ingest.plan import SPLITS, IngestPlan
from edgeline.pipeline import records
from edgeline.pipeline.artifacts import path_identity
from edgeline.pipeline.errors import UserError
from edgeline.pipeline.stage import StageResult


# -- 1. source ------------------------------------------------------------------------------
def builtin_source(kind: str, cache_dir: Path, seed: int) -> Path:
    """The built-in demo set ``kind`` for ``seed``, generated into ``cache_dir`` once (written
    aside and renamed, so a half-written set is never used)."""
    from edgeline.components.ingest import demo_data

    root = Path(cache_dir) / f"builtin-{kind}-v{demo_data.DEMO_DATA_VERSION}-seed{seed}"
    if root.is_dir():
        return root
    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
    writer = {"classification": demo_data.write_classification_set,
              "detection": demo_data.write_detection_set}[kind]
    try:
        writer(tmp, seed=seed)
    except BaseException:
        # Never left behind: on a full disk the half-written set would keep it full.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def coco_splits(options: IngestOptions, source: str | None):
    from edgeline.components.ingest.coco import CocoSplit

    if source is not None:
        images = os.path.join(source, "images")
        found = []
        for split, names in (("train", ("train.json",)), ("validation", ("val.json",
                                                                           "validation.json"))):
            for name in names:
                if os.path.isfile(os.path.join(source, name)):
                    found.append(CocoSplit(split, images, os.path.join(source, name)))
                    break
        if not found or not os.path.isdir(images):
            raise UserError(f"no COCO set in {source!r}: expected images/ with train.json "
                            "and/or val.json (or pass images and annotations)")
        return found
    splits = []
    if options.images is not None:
        splits.append(CocoSplit(options.split, options.images, options.annotations))
    if options.val_images is not None:
        splits.append(CocoSplit("validation", options.val_images, options.val_annotations))
    return splits


# -- 2. plan --------------------------------------------------------------------------------
def _plan(options: IngestOptions, source: str | None, val_labels, work_dir: Path,
          output_dir: Path):
    """(units, plan, extra): extra holds what the driver needs afterwards."""
    shard_counts = {"train": options.train_shards, "validation": options.val_shards}
    common = dict(
        output_dir=str(output_dir),
        report_dir=str(work_dir / "reports"),
        reencode_quality=options.reencode_quality,
        verify_decode=options.verify_decode,
    )
    if options.format == "imagenet":
        from edgeline.components.ingest.imagenet import plan_imagenet

        found = plan_imagenet(source, val_labels=val_labels, class_names=options.class_names)
        splits = [s for s in SPLITS if any(u.split == s for u in found.units)]
        plan = IngestPlan(
            task="classification",
            shard_counts={s: shard_counts[s] for s in splits},
            class_index={wnid: i for i, wnid in enumerate(found.classes)},
            class_text=found.class_text,
            val_ground_truth=found.ground_truth,
            **common,
        )
        labels = [f"{wnid}\t{found.class_text[wnid]}" for wnid in found.classes]
        extra = {"labels": labels, "class_names": found.classes, "label_order":
                 found.label_order}
        return found.units, plan, extra
    from edgeline.components.ingest.coco import plan_coco

    splits_given = coco_splits(options, source)
    found = plan_coco(splits_given)
    splits = [s for s in SPLITS if s in found.images]
    plan = IngestPlan(
        task="detection",
        shard_counts={s: shard_counts[s] for s in splits},
        coco_images=found.images,
        categories=found.categories,
        **common,
    )
    labels = [f"{cid}\t{name}" for cid, name in found.categories.items()]
    extra = {"labels": labels, "class_names": [n for n in found.categories.values()],
             "label_order": "COCO category ids", "ground_truth": found.ground_truth,
             "annotation_files": {c.split: c.annotations_path for c in splits_given}}
    return found.units, plan, extra


# -- 4. merge -------------------------------------------------------------------------------
def _merge_reports(plan: IngestPlan) -> dict[str, dict]:
    """Per split: counts, shard lengths, fixed and rejected entries; empty shards written."""
    from edgeline.components.ingest.shards import report_path

    merged = {}
    for split, count in plan.shard_counts.items():
        summary = {"written": 0, "fixed": [], "rejected": [], "boxes": [], "shard_lengths": [],
                   "bytes": 0, "writer_seconds": 0.0}
        for shard in range(count):
            path = report_path(plan.report_dir, split, shard)
            if not os.path.exists(path):
                # No input hashed to this shard: an empty file is an empty TFRecord.
                name = records.shard_name(split, shard, count)
                Path(plan.output_dir, name).write_bytes(b"")
                summary["shard_lengths"].append(0)
                continue
            with open(path, encoding="utf-8") as f:
                report = json.load(f)
            summary["written"] += report["written"]
            summary["fixed"] += report["fixed"]
            summary["rejected"] += report["rejected"]
            summary["boxes"] += report["boxes"]
            summary["shard_lengths"].append(report["written"])
            summary["bytes"] += report["bytes"]
            summary["writer_seconds"] += report["seconds"]
        merged[split] = summary
    return merged


def _split_counts(plan: IngestPlan, split: str, summary: dict) -> dict:
    counts = {
        "seen": summary["written"] + len(summary["rejected"]),
        "written": summary["written"],
        "fixed": len(summary["fixed"]),
        "rejected": len(summary["rejected"]),
        "shards": plan.shard_counts[split],
        "bytes": summary["bytes"],
    }
    if plan.task == "detection":
        actions = [note["action"] for note in summary["boxes"]]
        counts |= {"boxes_dropped": actions.count("dropped"),
                   "boxes_fixed": actions.count("fixed")}
    return counts


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def _write_outputs(output_dir: Path, plan: IngestPlan, merged: dict, extra: dict) -> None:
    def entries(kind: str, fields: Sequence[str]) -> list[dict]:
        rows = [{"split": split, **{k: e[k] for k in fields}}
                for split, summary in merged.items() for e in summary[kind]]
        return sorted(rows, key=lambda r: (SPLITS.index(r["split"]), r["path"]))

    _write_jsonl(output_dir / "rejected.jsonl", entries("rejected", ("path", "reason")))
    _write_jsonl(output_dir / "fixed.jsonl", entries("fixed", ("path", "fix")))
    (output_dir / "labels.txt").write_text("\n".join(extra["labels"]) + "\n", encoding="utf-8")
    if plan.task == "detection":
        from edgeline.components.ingest.coco import write_ground_truth, written_ground_truth
        from edgeline.components.ingest.sources import printable

        boxes = [{"split": split, **note} for split, summary in merged.items()
                 for note in summary["boxes"]]
        boxes.sort(key=lambda r: (SPLITS.index(r["split"]), r["path"], r["index"]))
        _write_jsonl(output_dir / "boxes.jsonl", boxes)
        for split, data in extra["ground_truth"].items():
            ids = {printable(str(i)): i for i in plan.coco_images[split]}
            rejected = {ids[e["key"]] for e in merged[split]["rejected"]}
            truth = written_ground_truth(data, rejected, merged[split]["boxes"])
            write_ground_truth(str(output_dir / f"{split}_annotations.json"), truth,
                               extra["annotation_files"][split])


@contextlib.contextmanager
def _quiet_root_logger():
    """Importing Beam logs a warning about GCP client libraries through the root logger,
    which configures logging to print it; a handler on root for the import keeps it quiet
    (a DataflowRunner without those libraries still fails with Beam's own clear error)."""
    root = logging.getLogger()
    handler = None if root.handlers else logging.NullHandler()
    if handler:
        root.addHandler(handler)
    try:
        yield
    finally:
        if handler:
            root.removeHandler(handler)


def run(
    options: IngestOptions,
    output_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = False,
) -> StageResult:
    """Ingest ``options``' source into ``output_dir``; return the artifact's properties
    (task, splits with seen/written/fixed/rejected/shards, num_classes) and metrics."""
    from edgeline.components.ingest.tfds_metadata import write_tfds_metadata

    started = time.time()
    # Absolute: the plan and the units carry these paths to workers whose working directory
    # is not this process's (a dask worker, a Dataflow VM).
    output_dir = Path(os.path.abspath(output_dir))
    source, val_labels = _resolve_source(options, cache_dir, seed)
    work_dir = output_dir / f".ingest-work-{uuid.uuid4().hex[:8]}"
    # Bad input stops in planning, before Beam is even imported.
    units, plan, extra = _plan(options, source, val_labels, work_dir, output_dir)
    merged = _run_beam(options, units, plan, work_dir, progress)
    splits = {split: _split_counts(plan, split, summary) for split, summary in merged.items()}
    if not any(s["seen"] for s in splits.values()):
        raise UserError(f"no input files found in ingest source {source!r}")
    _write_outputs(output_dir, plan, merged, extra)
    tfds_name = write_tfds_metadata(
        str(output_dir),
        task=plan.task,
        class_names=extra["class_names"],
        shard_lengths={s: m["shard_lengths"] for s, m in merged.items()},
        split_bytes={s: m["bytes"] for s, m in merged.items()},
        description=f"edgeline ingest of {source}",
    )
    seconds = time.time() - started
    seen = sum(s["seen"] for s in splits.values())
    properties = {
        "task": plan.task,
        "format": options.format,
        "source": str(source),
        "splits": splits,
        "num_classes": len(extra["class_names"]),
        "label_order": extra["label_order"],
        "tfds_name": tfds_name,
    }
    metrics = {
        "seconds": round(seconds, 3),
        "files_per_second": round(seen / seconds, 2),
        # Time inside the shard writers (read, check, hash, write), summed over workers.
        "shard_writer_seconds": round(sum(m["writer_seconds"] for m in merged.values()), 3),
    }
    return StageResult(properties=properties, metrics=metrics)


def _resolve_source(options: IngestOptions, cache_dir: str | os.PathLike | None,
                    seed: int) -> tuple[str, str | None]:
    """The source folder and validation labels to read: the options' own, or for a
    ``builtin:`` source the demo data written (once) into ``cache_dir``."""
    source, val_labels = options.source, options.val_labels
    if source in ("builtin:classification", "builtin:detection"):
        if cache_dir is None:
            raise UserError(f"source {source!r} needs a cache directory for the demo data")
        source = str(builtin_source(source.split(":")[1], Path(cache_dir), seed))
        if options.format == "imagenet" and val_labels is None:
            val_labels = os.path.join(source, "val_labels.csv")
    return source, val_labels


def _run_beam(options: IngestOptions, units, plan, work_dir: Path, progress: bool) -> dict:
    """Runs the Beam pipeline over the planned ``units`` and returns each split's merged
    report; the work directory (the pickled plan, the workers' reports) is removed after."""
    from edgeline.components.ingest.plan import forget_plan

    with _quiet_root_logger():
        from edgeline.components.ingest import beam_pipeline
    workers = options.workers or os.cpu_count() or 1
    beam_pipeline.pipeline_options(workers, options.runner, options.beam_options)  # flags ok?
    (work_dir / "reports").mkdir(parents=True)
    try:
        plan_path = str(work_dir / "plan.pkl")
        plan.save(plan_path)
        beam_pipeline.run_pipeline(
            units,
            plan_path,
            report_dir=plan.report_dir,
            total_shards=sum(plan.shard_counts.values()),
            workers=workers,
            runner=options.runner,
            beam_args=options.beam_options,
            progress=progress,
        )
        forget_plan(plan_path)
        return _merge_reports(plan)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


# -- identity of the data outside the pipeline ----------------------------------------------


def source_fingerprint(options: IngestOptions) -> dict:
    """What the runner folds into the step's fingerprint besides the options."""
    if options.source in ("builtin:classification", "builtin:detection"):
        from edgeline.components.ingest import demo_data

        return {"builtin": options.source, "version": demo_data.DEMO_DATA_VERSION}
    identity = {}
    for name in ("source", "val_labels", "class_names", "images", "annotations",
                 "val_images", "val_annotations"):
        path = getattr(options, name)
        if path is not None and os.path.exists(path):
            identity[name] = path_identity(path)
    if options.format == "imagenet" and options.val_labels is None:
        from importlib.metadata import version

        identity["tfds"] = version("tensorflow-datasets")  # ships the default ground truth
    return identity

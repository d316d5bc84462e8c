"""Options of the ingest stage (one step of a pipeline file, or ``edgeline ingest ...``).

    images:
      stage: ingest
      format: imagenet                 # or coco
      source: /data/imagenet           # folder or ILSVRC tars; builtin:classification
      val_labels: my_val_labels.csv    # default: tfds' validation_labels.txt
      train_shards: 1024
      val_shards: 128
      workers: 0                       # 0: one per CPU core

    boxes:
      stage: ingest
      format: coco
      images: /data/coco/train2017
      annotations: /data/coco/annotations/instances_train2017.json
      val_images: /data/coco/val2017
      val_annotations: /data/coco/annotations/instances_val2017.json
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Union

from edgeline.pipeline.config import ExistingPath

BUILTIN_SOURCES = ("builtin:classification", "builtin:detection")
BuiltinSource = Literal["builtin:classification", "builtin:detection"]


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    """What to ingest, and how.

    Attributes:
      format: ``imagenet``, a classification set in ImageNet layout; ``coco``, COCO-format
        detection.
      source: imagenet: a folder (train/<wnid>/, val/) or one holding
        ILSVRC2012_img_{train,val}.tar; coco: a folder holding images/ and train.json /
        val.json. builtin:* generates demo data.
      val_labels: imagenet: validation ground truth, a filename,wnid CSV (default: tfds' file).
      class_names: imagenet: "wnid text" lines naming the classes (default: found in source,
        else the wnid).
      images: coco: one split's image folder (``split`` names that split).
      annotations: coco: that split's COCO JSON.
      split: coco: which split ``images`` and ``annotations`` are.
      val_images: coco: the validation split's image folder.
      val_annotations: coco: the validation split's COCO JSON.
      train_shards: shards of the train split (~100-200 MB each on real ImageNet: 1.28M
        images).
      val_shards: shards of the validation split (50k images on ImageNet).
      workers: worker processes of Beam's local DirectRunner (0: one per CPU core); the shards
        are byte-identical whatever it is. Other runners size their own workers.
      runner: the Beam runner: DirectRunner, DaskRunner (``edgeline[dask]``, with
        ``--dask_client_address``), DataflowRunner, FlinkRunner, SparkRunner, ... (README,
        "Scaling out").
      beam_options: any other Beam pipeline flags, passed through (e.g. ["--project", "p"]).
      reencode_quality: JPEG quality of re-encoded images (grayscale, CMYK, PNG, ...); other
        JPEGs pass through byte for byte.
      verify_decode: also decode every passed-through JPEG in full (a full decode each, slower).
        Without it every JPEG written is already walked to its end, segment by segment, so that
        TensorFlow decodes it (images.py).
    """

    format: Literal["imagenet", "coco"] = "imagenet"
    source: Union[BuiltinSource, ExistingPath] | None = None
    val_labels: ExistingPath | None = None
    class_names: ExistingPath | None = None
    images: ExistingPath | None = None
    annotations: ExistingPath | None = None
    split: Literal["train", "validation"] = "train"
    val_images: ExistingPath | None = None
    val_annotations: ExistingPath | None = None
    train_shards: int = 1024
    val_shards: int = 128
    workers: int = 0
    runner: str = "DirectRunner"
    beam_options: tuple[str, ...] = ()
    reencode_quality: int = 95
    verify_decode: bool = False

    def __post_init__(self):
        for name in ("train_shards", "val_shards"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"Received: {name}={value}; {name} must be >= 1")
        if self.workers < 0:
            raise ValueError(f"Received: workers={self.workers}; workers must be >= 0")
        if not 1 <= self.reencode_quality <= 100:
            raise ValueError(f"Received: reencode_quality={self.reencode_quality}; "
                             "reencode_quality must be in [1, 100]")
        if self.format == "imagenet":
            self._check_imagenet()
        else:
            self._check_coco()

    def _check_imagenet(self) -> None:
        if self.source is None:
            raise ValueError("Received: source=None; format imagenet needs a source folder")
        if self.source == "builtin:detection":
            raise ValueError("Received: source='builtin:detection'; format imagenet takes "
                             "'builtin:classification' or a folder")
        for name in ("images", "annotations", "val_images", "val_annotations"):
            if getattr(self, name) is not None:
                raise ValueError(f"Received: {name}={getattr(self, name)!r}; {name} is for "
                                 "format coco")

    def _check_coco(self) -> None:
        for name in ("val_labels", "class_names"):
            if getattr(self, name) is not None:
                raise ValueError(f"Received: {name}={getattr(self, name)!r}; {name} is for "
                                 "format imagenet")
        if self.source == "builtin:classification":
            raise ValueError("Received: source='builtin:classification'; format coco takes "
                             "'builtin:detection' or a folder")
        pairs = ((self.images, self.annotations), (self.val_images, self.val_annotations))
        for images, annotation_file in pairs:
            if (images is None) != (annotation_file is None):
                raise ValueError(f"Received: images={images!r}, annotations={annotation_file!r}; "
                                 "a COCO split needs both an image folder and annotations")
        given = [p for p in pairs if p[0] is not None]
        if self.source is None and not given:
            raise ValueError("Received: source=None, annotations=None; format coco needs a "
                             "source folder or images and annotations")
        if self.source is not None and given:
            raise ValueError(f"Received: source={self.source!r} and images/annotations; "
                             "give one or the other")
        if self.split == "validation" and self.val_annotations is not None:
            raise ValueError("Received: split='validation' and val_annotations; two "
                             "validation splits")

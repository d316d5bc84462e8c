"""``dataset_info.json`` and ``features.json``, so ``tfds.builder_from_directory(dir)`` reads
the shards as they are (https://www.tensorflow.org/datasets/external_tfrecord).

tfds joins the keys of nested FeaturesDicts with "/", so nesting ``image`` > ``class`` >
``label`` reads exactly the ``image/class/label`` key that TF Model Garden and the TF Object
Detection API read: one set of shards serves all three. Per-object detection features are
``Sequence``s (1-D tensors), one per key, as in records.detection_feature_spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SHARD_TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}"  # = records.shard_name


def _features(task: str, class_names: Sequence[str]):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    F = tfds.features
    image = {
        "encoded": F.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "format": F.Text(),
        "height": F.Scalar(tf.int64),
        "width": F.Scalar(tf.int64),
        "filename": F.Text(),
        "source_id": F.Text(),
        "key": F.FeaturesDict({"sha256": F.Text()}),
    }
    if task == "classification":
        image["class"] = F.FeaturesDict({
            "label": F.ClassLabel(names=list(class_names)),
            "synset": F.Text(),
            "text": F.Text(),
        })
    else:
        image["object"] = F.FeaturesDict({
            "bbox": F.FeaturesDict(
                {side: F.Sequence(tf.float32) for side in ("xmin", "ymin", "xmax", "ymax")}
            ),
            # COCO category ids are not contiguous, so not a ClassLabel.
            "class": F.FeaturesDict({"label": F.Sequence(tf.int64),
                                     "text": F.Sequence(F.Text())}),
            "is_crowd": F.Sequence(tf.int64),
            "area": F.Sequence(tf.float32),
        })
    return F.FeaturesDict({"image": F.FeaturesDict(image)})


def write_tfds_metadata(
    output_dir: str,
    *,
    task: str,
    class_names: Sequence[str],
    shard_lengths: Mapping[str, Sequence[int]],
    split_bytes: Mapping[str, int],
    description: str,
) -> str:
    """Write the metadata; return the tfds dataset name."""
    import tensorflow_datasets as tfds

    name = f"edgeline_{task}"
    template = tfds.core.ShardedFileTemplate(
        data_dir=output_dir, template=SHARD_TEMPLATE, dataset_name=name,
        filetype_suffix="tfrecord",
    )
    split_infos = [
        tfds.core.SplitInfo(name=split, shard_lengths=list(lengths),
                            num_bytes=int(split_bytes[split]), filename_template=template)
        for split, lengths in shard_lengths.items()
    ]
    tfds.folder_dataset.write_metadata(
        data_dir=output_dir,
        features=_features(task, class_names),
        split_infos=split_infos,
        filename_template=template,
        check_data=False,
        description=description,
    )
    return name

"""A single-stage, anchor-free detector for the mobile use case, its losses and its decoding.

Architecture (``build_detector``, registered as ``mobilenet_v2_detector``):
- Backbone: MobileNet v2 (Sandler et al., CVPR 2018, arXiv:1801.04381) with a width
  multiplier, feature maps C3, C4, C5 at strides 8, 16, 32.
- Neck: a small feature pyramid (Lin, Dollar, Girshick, He, Hariharan, Belongie, "Feature
  Pyramid Networks for Object Detection", CVPR 2017, arXiv:1612.03144): 1x1 lateral
  projections to ``fpn_channels``, a top-down path of nearest-neighbour 2x upsampling and
  addition, then a 3x3 depthwise-separable convolution on each merged level.
- Head, per level: ``head_depth`` depthwise-separable convolutions, then three 1x1
  convolutions giving, per location, 4 box numbers, 1 objectness logit and ``num_classes``
  class logits (the YOLO family's "one prediction per grid cell": Redmon et al., 2016; Ge et
  al., "YOLOX", 2021, arXiv:2107.08430). The objectness and class biases start at
  ``-log((1 - pi) / pi)``, pi = 0.01, so that early training is not swamped by the many
  background locations (Lin et al., 2017, Sec. 4.1).
Every op is in TFLite's builtin set (CONV_2D, DEPTHWISE_CONV_2D, RELU6, ADD,
RESIZE_NEAREST_NEIGHBOR, RESHAPE, CONCATENATION; decoding adds LOGISTIC, EXP, TOPK_V2, GATHER,
NON_MAX_SUPPRESSION_V5), so a model with its decoding converts without Select-TF ops.

Output encoding (what ``model(images)`` returns): one float32 tensor ``(N, A, 5 + C)``.
- Locations: for each level (stride s in ``DETECTOR_STRIDES`` = 8, 16, 32, in that order), the
  ``(H / s) * (W / s)`` cells in row-major order; A is the sum over levels. Cell (i, j) has its
  centre at pixel ``((i + 0.5) s, (j + 0.5) s)`` (:func:`anchor_points`).
- ``[..., 0:4]`` = ``(t_y, t_x, t_h, t_w)``: the box centre is the cell centre plus
  ``(t_y, t_x) * s``, its height and width are ``s * exp(t_h)`` and ``s * exp(t_w)``
  (:func:`decode_boxes`; the inverse is :func:`encode_boxes`).
- ``[..., 4]`` = objectness logit: sigmoid of it estimates the IoU of the predicted box with
  the object it covers (0 on background).
- ``[..., 5:]`` = class logits, one independent sigmoid per class (focal loss).
A detection's score is ``sigmoid(objectness) * sigmoid(class logit)``.

Boxes everywhere in this module are ``[ymin, xmin, ymax, xmax]`` normalized to [0, 1] by the
input height and width: the TFRecord convention of :mod:`edgeline.pipeline.records` and the
order ``tf.image.non_max_suppression`` expects.

Ground truth for the loss (``y_true``): ``(N, M, 5)`` rows ``[ymin, xmin, ymax, xmax,
class_index]`` (0-based class index), padded to a fixed M with rows whose class index is -1.

Training targets (:func:`assign_targets`): a ground-truth box belongs to one pyramid level by
its longer side in pixels (below 4 * 8 = 32: stride 8; below 4 * 16 = 64: stride 16; else
stride 32; ``size_boundaries``). At that level, every cell whose centre lies within
``center_radius`` strides of the box centre (Chebyshev distance; 1.0 gives up to 2 x 2 cells,
1.5 up to 3 x 3, and always at least one) is a positive for it; a cell claimed by several
boxes takes the smallest (as FCOS does: Tian et al., ICCV 2019, arXiv:1904.01355).

Losses (:func:`detector_loss`, :class:`DetectorLoss`), each summed over locations and divided by
the number of positives in the batch:
- box: ``1 - GIoU`` (Rezatofighi et al., CVPR 2019, arXiv:1902.09630), ``1 - IoU``, or
  smooth L1 on the encoded ``t`` (Girshick, "Fast R-CNN", 2015), on positives;
- objectness: binary cross-entropy over every location against 1 on positives and 0 elsewhere
  (``objectness_target="one"``, YOLOX: Ge et al., 2021, arXiv:2107.08430), or against the IoU
  of the predicted box with its target on positives (``"iou"``, YOLOv3/v5's IoU-aware
  objectness; gradient stopped through the target);
- classification: binary cross-entropy of the class logits on positives only
  (``classification_loss="positive_bce"``, YOLOX and YOLOv5: telling objects from background
  is the objectness' job), or the sigmoid focal loss over every location and class
  (``"focal"``, RetinaNet: Lin, Goyal, Girshick, He, Dollar, "Focal Loss for Dense Object
  Detection", ICCV 2017, arXiv:1708.02002): ``FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)``
  with alpha = 0.25, gamma = 2.

Why these defaults (the "Models that learn" diagnosis, on the built-in detection set at
128 x 128, measured with the evaluate stage's COCO numbers). The first recipe combined
RetinaNet's focal classification over every location with YOLOv5's IoU objectness, 1.5-stride
positives and Adam at 4e-3, and reached box mAP 0.093 / AP50 0.245 in the demo's 300 steps,
0.26 / 0.375 in 1,500. Recall was not the problem: 81% of the objects had a detection of the
right class at IoU 0.5, but the median score of those detections was 0.18 while
wrong-class detections on the same objects scored higher (90 of them above 0.3 on 100 images).
Three causes, each measured by changing it alone:
1. Objectness chasing the IoU of boxes that are not learned yet: early in training every IoU
   is near 0, so the objectness learned "nothing here" everywhere and every score stayed low.
   A target of 1 lets it separate objects from background from the first step.
2. Class logits trained by the focal loss at every location: almost all of its weight goes to
   background cells, which the objectness already handles, so the three classes were barely
   told apart where the objects are. BCE on positives only puts the whole class loss there.
   With 1 and 2: 0.15 / 0.40 in 300 steps, 0.50 / 0.83 in 1,000.
3. Too many, too loose positives and too low a rate: 1.5-stride radius makes cells whose
   centre lies outside a 10-pixel object regress it; 1.0 stride and Adam at 1.6e-2 (with the
   corrected data below): 0.74 / 0.99 in 975 steps (2.5 strides: 0.33; 4e-3: 0.64).
The data had a fault of its own: its shapes were drawn one pixel wider and taller than their
boxes (PIL includes both end coordinates), which biased every small box outward by 1.5 pixels
per side and capped a perfect 10-pixel detection at IoU 0.83; the generator draws to the
box's last pixel now (``edgeline.components.ingest.demo_data``, data version 2).
Per size, before -> after (the demo's detector step, ``configs/demo.yaml``): AP 0.093 ->
0.737, AP50 0.245 -> 0.994, AP75 0.057 -> 0.896; small (area < 32^2) AP 0.048 -> 0.697, AR
0.270 -> 0.755; medium AP 0.205 -> 0.825, AR 0.555 -> 0.856; large AP 0.250 -> 0.778, AR
0.500 -> 0.778 (the validation split then had one large object, now a handful).
What is left is mostly the small objects' boxes: at stride 8 their edges are off by 0.7 px on
average, which costs IoU 0.85+ on a 10-pixel object.

Decoding (:func:`decode_detections`): scores, the ``pre_nms_top_k`` best (location, class)
pairs, then non-maximum suppression per class (boxes of different classes are moved apart so
they never overlap, a single NMS call) with ``tf.raw_ops.NonMaxSuppressionV5``: hard NMS at
``iou_threshold``, or, when ``soft_nms_sigma > 0``, soft-NMS (Bodla et al., ICCV 2017,
arXiv:1704.04503): each selected box multiplies the scores of the others by the Gaussian
``exp(-iou^2 / (2 sigma))`` (TensorFlow's and TFLite's convention; ``iou_threshold`` is then
unused) and boxes whose score falls below ``score_threshold`` are dropped. TFLite's builtin
NON_MAX_SUPPRESSION_V5 implements both. The output has a fixed size:
``boxes (N, K, 4)``, ``scores (N, K)``, ``classes (N, K)`` int32 (0-based class index),
``num_detections (N,)`` int32, K = ``max_detections``; rows past ``num_detections`` are zeros.
Boxes are clipped to the image; a box with no area left is dropped.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import tensorflow as tf
import tf_keras as keras

from edgeline.models.layers import batch_norm, check_choice
from edgeline.models.mobilenet import mobilenet_v2_features

DETECTOR_STRIDES = (8, 16, 32)
BOX_CHANNELS = 4
OBJECTNESS_CHANNEL = 4
CLASS_CHANNELS_START = 5
# exp() of a larger log-size would exceed e^8 ~ 3000 strides: far outside any input, and near
# float16's range under mixed precision.
MAX_LOG_SIZE = 8.0
MAX_SIZE_STRIDES = math.exp(MAX_LOG_SIZE)


# -- architecture ---------------------------------------------------------------------------


def _separable(x, filters: int, name: str):
    """3x3 depthwise + BN + ReLU6, then 1x1 pointwise + BN + ReLU6 (MobileNet's unit)."""
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(batch_norm(x, name=f"{name}_dw_bn"))
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_pw_relu")(batch_norm(x, name=f"{name}_pw_bn"))


def _feature_pyramid(features: dict, channels: int) -> dict:
    """Lin et al. (2017), Sec. 3: lateral 1x1, top-down nearest 2x upsampling + add, 3x3."""
    merged = {}
    top_down = None
    for stride in sorted(features, reverse=True):  # 32, 16, 8
        lateral = keras.layers.Conv2D(channels, 1, use_bias=False, name=f"fpn_lateral{stride}")(
            features[stride]
        )
        lateral = batch_norm(lateral, name=f"fpn_lateral{stride}_bn")
        if top_down is not None:
            upsampled = keras.layers.UpSampling2D(
                2, interpolation="nearest", name=f"fpn_upsample{stride}"
            )(top_down)
            lateral = keras.layers.Add(name=f"fpn_merge{stride}")([lateral, upsampled])
        top_down = lateral
        merged[stride] = _separable(lateral, channels, name=f"fpn_out{stride}")
    return merged  # {stride: (N, H/stride, W/stride, channels)}


def _head(x, *, num_classes: int, channels: int, depth: int, prior_bias: float, name: str):
    for index in range(depth):
        x = _separable(x, channels, name=f"{name}_conv{index + 1}")
    box = keras.layers.Conv2D(BOX_CHANNELS, 1, name=f"{name}_box")(x)
    objectness = keras.layers.Conv2D(
        1, 1, bias_initializer=keras.initializers.Constant(prior_bias), name=f"{name}_objectness"
    )(x)
    classes = keras.layers.Conv2D(
        num_classes, 1, bias_initializer=keras.initializers.Constant(prior_bias),
        name=f"{name}_classes",
    )(x)
    x = keras.layers.Concatenate(name=f"{name}_outputs")([box, objectness, classes])
    rows, cols = x.shape[1], x.shape[2]
    return keras.layers.Reshape((rows * cols, CLASS_CHANNELS_START + num_classes),
                                name=f"{name}_flatten")(x)  # (N, rows * cols, 5 + C)


def build_detector(
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    name: str = "mobilenet_v2_detector",
    backbone_width_multiplier: float = 0.5,
    fpn_channels: int = 64,
    head_channels: int = 64,
    head_depth: int = 2,
    prior_probability: float = 0.01,
) -> keras.Model:
    """Builds the detector; its output is the raw ``(N, A, 5 + C)`` tensor of the module doc.

    Args:
      num_classes: object classes (without background).
      input_shape: ``(height, width, 3)``, static, height and width multiples of 32.
      name: the model's name.
      backbone_width_multiplier: MobileNet v2's alpha (0.35, 0.5, 0.75, 1.0, ...).
      fpn_channels: channels of every pyramid level.
      head_channels: channels of the head's separable convolutions.
      head_depth: separable convolutions in each level's head (0 for none).
      prior_probability: pi of the objectness and class bias initialization.
    """
    height, width = input_shape[0], input_shape[1]
    if height is None or width is None or height % 32 or width % 32:
        raise ValueError(
            f"Received: input_shape={tuple(input_shape)}; the detector needs a static height "
            "and width that are multiples of 32 (its coarsest stride)"
        )
    if min(fpn_channels, head_channels) < 1 or head_depth < 0:
        raise ValueError(
            f"Received: fpn_channels={fpn_channels}, head_channels={head_channels}, "
            f"head_depth={head_depth}; channels must be >= 1 and head_depth >= 0"
        )
    if not 0.0 < prior_probability < 1.0:
        raise ValueError(
            f"Received: prior_probability={prior_probability}; it must be in (0, 1)"
        )
    prior_bias = -math.log((1.0 - prior_probability) / prior_probability)

    inputs = keras.Input(shape=input_shape, name="images")
    features = mobilenet_v2_features(inputs, backbone_width_multiplier)
    pyramid = _feature_pyramid(features, fpn_channels)
    per_level = [
        _head(pyramid[stride], num_classes=num_classes, channels=head_channels, depth=head_depth,
              prior_bias=prior_bias, name=f"head{stride}")
        for stride in DETECTOR_STRIDES
    ]
    outputs = keras.layers.Concatenate(axis=1, name="raw_detections")(per_level)  # (N, A, 5+C)
    return keras.Model(inputs, outputs, name=name)


def head_outputs(model: keras.Model) -> keras.Model | None:
    """The detector's three predictions before they are joined into one raw tensor: a model
    with ``model``'s input and outputs ``box (N, A, 4)``, ``objectness (N, A, 1)`` and
    ``classes (N, A, C)`` (locations in the raw output's order), or None when ``model`` has
    no ``head<stride>_box / _objectness / _classes`` layers (a SavedModel, a rebuilt graph).

    An int8 export needs them apart: joined, box offsets (about +-2) and logits (about +-20)
    share one quantization scale, whose step of 0.13 moves a stride-32 box by 4 pixels.
    """
    parts = []
    for kind in ("box", "objectness", "classes"):
        per_level = []
        for stride in DETECTOR_STRIDES:
            try:
                layer = model.get_layer(f"head{stride}_{kind}")
            except ValueError:
                return None
            _, rows, cols, channels = layer.output.shape
            per_level.append(keras.layers.Reshape(
                (rows * cols, channels), name=f"head{stride}_{kind}_locations")(layer.output))
        parts.append(keras.layers.Concatenate(axis=1, name=f"{kind}_outputs")(per_level))
    return keras.Model(model.inputs, parts, name=f"{model.name}_heads")  # (N, A, 4|1|C)


# -- locations and box coding ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AnchorPoints:
    """The A output locations: ``centers`` (A, 2) as (y, x) pixels, ``strides`` (A,),
    ``levels`` (A,) (0 for stride 8, ...)."""

    centers: np.ndarray
    strides: np.ndarray
    levels: np.ndarray


def anchor_points(
    input_size: tuple[int, int], strides: tuple[int, ...] = DETECTOR_STRIDES
) -> AnchorPoints:
    """Cell centres of every level, in the order of the model's output."""
    height, width = int(input_size[0]), int(input_size[1])
    centers, location_strides, levels = [], [], []
    for level, stride in enumerate(strides):
        rows, cols = height // stride, width // stride
        ys, xs = np.meshgrid(
            (np.arange(rows) + 0.5) * stride, (np.arange(cols) + 0.5) * stride, indexing="ij"
        )
        centers.append(np.stack([ys.ravel(), xs.ravel()], axis=-1))  # (rows * cols, 2)
        location_strides.append(np.full(rows * cols, stride))
        levels.append(np.full(rows * cols, level))
    return AnchorPoints(
        centers=np.concatenate(centers).astype(np.float32),
        strides=np.concatenate(location_strides).astype(np.float32),
        levels=np.concatenate(levels).astype(np.int32),
    )


def _check_locations(num_locations, input_size, strides) -> AnchorPoints:
    points = anchor_points(input_size, strides)
    if num_locations is not None and num_locations != len(points.strides):
        raise ValueError(
            f"Received: outputs with {num_locations} locations for input_size="
            f"{tuple(input_size)} and strides={tuple(strides)}, which give "
            f"{len(points.strides)}; pass the input size the model was built for"
        )
    return points


def decode_boxes(
    box_outputs, input_size: tuple[int, int], strides: tuple[int, ...] = DETECTOR_STRIDES
):
    """``(N, A, 4)`` raw ``t`` -> ``(N, A, 4)`` normalized ``[ymin, xmin, ymax, xmax]``."""
    points = _check_locations(box_outputs.shape[-2], input_size, strides)
    stride = tf.constant(points.strides[:, None])  # (A, 1)
    centers = tf.constant(points.centers) + box_outputs[..., 0:2] * stride  # (N, A, 2) pixels
    # Clamped after the exponential, not before: TFLite's quantizer gives MINIMUM's input the
    # scale of its output, and through the slice that scale reached the whole raw tensor, so
    # an int8 export clipped every objectness and class logit to the range of log-sizes.
    sizes = tf.minimum(tf.exp(box_outputs[..., 2:4]), MAX_SIZE_STRIDES) * stride  # (N, A, 2)
    scale = tf.constant([1.0 / input_size[0], 1.0 / input_size[1]], dtype=tf.float32)
    return tf.concat([(centers - 0.5 * sizes) * scale, (centers + 0.5 * sizes) * scale], -1)


def encode_boxes(boxes, input_size: tuple[int, int], strides: tuple[int, ...] = DETECTOR_STRIDES):
    """The inverse of :func:`decode_boxes`: ``(N, A, 4)`` normalized boxes -> raw ``t``."""
    points = _check_locations(boxes.shape[-2], input_size, strides)
    stride = tf.constant(points.strides[:, None])  # (A, 1)
    scale = tf.constant([float(input_size[0]), float(input_size[1])])
    corner_min, corner_max = boxes[..., 0:2] * scale, boxes[..., 2:4] * scale  # pixels
    offsets = (0.5 * (corner_min + corner_max) - tf.constant(points.centers)) / stride
    log_sizes = tf.math.log(tf.maximum(corner_max - corner_min, 1e-3) / stride)
    return tf.concat([offsets, log_sizes], axis=-1)


def box_iou(boxes_a, boxes_b):
    """Element-wise IoU and generalized IoU (Rezatofighi et al., 2019, Alg. 1) of two
    ``(..., 4)`` tensors of ``[ymin, xmin, ymax, xmax]`` boxes; returns ``(iou, giou)``."""
    def area(boxes):
        return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(
            boxes[..., 3] - boxes[..., 1], 0.0
        )

    inner_min = tf.maximum(boxes_a[..., 0:2], boxes_b[..., 0:2])
    inner_max = tf.minimum(boxes_a[..., 2:4], boxes_b[..., 2:4])
    intersection = tf.reduce_prod(tf.maximum(inner_max - inner_min, 0.0), axis=-1)
    union = area(boxes_a) + area(boxes_b) - intersection
    iou = tf.math.divide_no_nan(intersection, union)
    hull_min = tf.minimum(boxes_a[..., 0:2], boxes_b[..., 0:2])
    hull_max = tf.maximum(boxes_a[..., 2:4], boxes_b[..., 2:4])
    hull = tf.reduce_prod(tf.maximum(hull_max - hull_min, 0.0), axis=-1)
    giou = iou - tf.math.divide_no_nan(hull - union, hull)
    return iou, giou


# -- targets and losses ---------------------------------------------------------------------


def default_size_boundaries(strides: tuple[int, ...] = DETECTOR_STRIDES) -> tuple[float, ...]:
    """Longer-side boundaries (pixels) between levels: 4 strides of the finer level."""
    return tuple(4.0 * stride for stride in strides[:-1])


@dataclasses.dataclass(frozen=True)
class Targets:
    """Per location: ``positive`` (N, A) bool, ``boxes`` (N, A, 4), ``classes`` (N, A) int32
    (only meaningful where positive)."""

    positive: tf.Tensor
    boxes: tf.Tensor
    classes: tf.Tensor


def assign_targets(
    ground_truth,
    *,
    input_size: tuple[int, int],
    strides: tuple[int, ...] = DETECTOR_STRIDES,
    center_radius: float = 1.0,
    size_boundaries: tuple[float, ...] | None = None,
) -> Targets:
    """Matches ``(N, M, 5)`` ground truth to the A locations (rules in the module docstring)."""
    size_boundaries = default_size_boundaries(strides) if size_boundaries is None else tuple(
        size_boundaries
    )
    if len(size_boundaries) != len(strides) - 1:
        raise ValueError(
            f"Received: size_boundaries={size_boundaries}; it needs {len(strides) - 1} "
            f"boundaries for strides={tuple(strides)}"
        )
    points = anchor_points(input_size, strides)
    ground_truth = tf.cast(ground_truth, tf.float32)
    # One always-invalid row, so that images (and batches) without objects still have M >= 1.
    ground_truth = tf.pad(ground_truth, [[0, 0], [0, 1], [0, 0]], constant_values=-1.0)
    gt_boxes = ground_truth[..., 0:4]  # (N, M, 4)
    gt_classes = tf.cast(ground_truth[..., 4], tf.int32)  # (N, M)
    valid = gt_classes >= 0

    scale = tf.constant([float(input_size[0]), float(input_size[1])])
    corner_min, corner_max = gt_boxes[..., 0:2] * scale, gt_boxes[..., 2:4] * scale
    gt_centers = 0.5 * (corner_min + corner_max)  # (N, M, 2) pixels
    gt_sizes = tf.maximum(corner_max - corner_min, 0.0)  # (N, M, 2)
    longer_side = tf.reduce_max(gt_sizes, axis=-1)  # (N, M)
    gt_levels = tf.add_n(
        [tf.cast(longer_side >= boundary, tf.int32) for boundary in size_boundaries]
    ) if size_boundaries else tf.zeros_like(gt_classes)

    distance = tf.reduce_max(
        tf.abs(gt_centers[:, None, :, :] - points.centers[None, :, None, :]), axis=-1
    )  # (N, A, M), Chebyshev, pixels
    near = distance < center_radius * points.strides[None, :, None]
    same_level = gt_levels[:, None, :] == points.levels[None, :, None]
    candidate = near & same_level & valid[:, None, :]  # (N, A, M)

    area = tf.reduce_prod(gt_sizes, axis=-1)  # (N, M)
    cost = tf.where(candidate, area[:, None, :], tf.float32.max)  # smallest box wins
    matched = tf.argmin(cost, axis=-1, output_type=tf.int32)  # (N, A)
    return Targets(
        positive=tf.reduce_any(candidate, axis=-1),
        boxes=tf.gather(gt_boxes, matched, batch_dims=1),  # (N, A, 4)
        classes=tf.gather(gt_classes, matched, batch_dims=1),  # (N, A)
    )


def sigmoid_focal_loss(labels, logits, alpha: float | None = 0.25, gamma: float = 2.0):
    """Element-wise focal loss of Lin et al. (2017), Eq. 5, on sigmoid outputs.

    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)`` with ``p_t = p`` for label 1 and ``1 - p`` for
    label 0 (soft labels in between interpolate), ``alpha_t = alpha`` for label 1 and
    ``1 - alpha`` for label 0. With ``gamma = 0`` and ``alpha = None`` it is the binary
    cross-entropy. ``log(p_t)`` comes from the numerically stable cross-entropy with logits.
    """
    labels = tf.cast(labels, logits.dtype)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    probabilities = tf.sigmoid(logits)
    p_t = labels * probabilities + (1.0 - labels) * (1.0 - probabilities)
    loss = tf.pow(1.0 - p_t, gamma) * cross_entropy if gamma else cross_entropy
    if alpha is not None:
        loss *= labels * alpha + (1.0 - labels) * (1.0 - alpha)
    return loss


def _smooth_l1(difference, beta: float):
    absolute = tf.abs(difference)
    return tf.where(absolute < beta, 0.5 * tf.square(absolute) / beta, absolute - 0.5 * beta)


BoxLoss = Literal["giou", "iou", "smooth_l1"]
ClassificationLoss = Literal["focal", "positive_bce"]
ObjectnessTarget = Literal["iou", "one"]


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """The options of :func:`detector_loss` (see the module docstring)."""

    input_size: tuple[int, int]
    strides: tuple[int, ...] = DETECTOR_STRIDES
    box_loss: BoxLoss = "giou"
    box_weight: float = 5.0
    objectness_weight: float = 1.0
    classification_weight: float = 1.0
    focal_alpha: float | None = 0.25
    focal_gamma: float = 2.0
    classification_loss: ClassificationLoss = "positive_bce"
    objectness_target: ObjectnessTarget = "one"
    center_radius: float = 1.0
    size_boundaries: tuple[float, ...] | None = None
    smooth_l1_beta: float = 1.0 / 9.0

    def __post_init__(self):
        check_choice("box_loss", self.box_loss, ("giou", "iou", "smooth_l1"))
        check_choice("classification_loss", self.classification_loss, ("focal", "positive_bce"))
        check_choice("objectness_target", self.objectness_target, ("iou", "one"))
        if self.focal_gamma < 0:
            raise ValueError(f"Received: focal_gamma={self.focal_gamma}; it must be >= 0")
        if self.focal_alpha is not None and not 0.0 <= self.focal_alpha <= 1.0:
            raise ValueError(f"Received: focal_alpha={self.focal_alpha}; it must be in [0, 1]")
        if self.center_radius < 0.5:
            raise ValueError(
                f"Received: center_radius={self.center_radius}; it must be >= 0.5 so that "
                "every object has a positive location"
            )


def _per_image_losses(y_true, y_pred, settings: LossSettings) -> dict:
    """Loss terms per image ``(N,)``, each divided by the mean number of positives per image
    (so their mean over the batch is the sum over the batch divided by its positives)."""
    y_pred = tf.cast(y_pred, tf.float32)
    targets = assign_targets(
        y_true, input_size=settings.input_size, strides=settings.strides,
        center_radius=settings.center_radius, size_boundaries=settings.size_boundaries,
    )
    positive = tf.cast(targets.positive, tf.float32)  # (N, A)
    num_positives = tf.reduce_sum(positive)
    batch_size = tf.cast(tf.shape(positive)[0], tf.float32)
    normalizer = tf.maximum(num_positives, 1.0) / batch_size

    pred_boxes = decode_boxes(y_pred[..., 0:4], settings.input_size, settings.strides)
    iou, giou = box_iou(pred_boxes, targets.boxes)  # (N, A)
    if settings.box_loss == "giou":
        box_per_location = 1.0 - giou
    elif settings.box_loss == "iou":
        box_per_location = 1.0 - iou
    else:
        encoded = encode_boxes(targets.boxes, settings.input_size, settings.strides)
        box_per_location = tf.reduce_sum(
            _smooth_l1(y_pred[..., 0:4] - encoded, settings.smooth_l1_beta), axis=-1
        )
    box = tf.reduce_sum(box_per_location * positive, axis=1)

    if settings.objectness_target == "iou":
        objectness_target = tf.stop_gradient(tf.clip_by_value(iou, 0.0, 1.0)) * positive
    else:
        objectness_target = positive
    objectness = tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(
            labels=objectness_target, logits=y_pred[..., OBJECTNESS_CHANNEL]
        ),
        axis=1,
    )
    class_logits = y_pred[..., CLASS_CHANNELS_START:]
    class_targets = tf.one_hot(targets.classes, class_logits.shape[-1]) * positive[..., None]
    if settings.classification_loss == "focal":
        classification = tf.reduce_sum(
            sigmoid_focal_loss(class_targets, class_logits, settings.focal_alpha,
                               settings.focal_gamma),
            axis=[1, 2],
        )
    else:
        classification = tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=class_targets, logits=class_logits)
            * positive[..., None],
            axis=[1, 2],
        )
    terms = {
        "box": box / normalizer,
        "objectness": objectness / normalizer,
        "classification": classification / normalizer,
    }
    terms["total"] = (
        settings.box_weight * terms["box"]
        + settings.objectness_weight * terms["objectness"]
        + settings.classification_weight * terms["classification"]
    )
    terms["num_positives"] = num_positives
    return terms


def detector_loss(y_true, y_pred, **settings) -> dict[str, tf.Tensor]:
    """The detector's losses for a batch, as scalars: ``box``, ``objectness``,
    ``classification`` (unweighted), ``total`` (weighted sum) and ``num_positives``.

    Args:
      y_true: ``(N, M, 5)`` ground truth (module docstring), class index -1 for padding.
      y_pred: ``(N, A, 5 + C)`` raw model outputs.
      **settings: the fields of :class:`LossSettings`; ``input_size`` is required.
    """
    terms = _per_image_losses(y_true, y_pred, LossSettings(**settings))
    return {
        name: value if name == "num_positives" else tf.reduce_mean(value)
        for name, value in terms.items()
    }


@keras.saving.register_keras_serializable(package="edgeline")
class DetectorLoss(keras.losses.Loss):
    """:func:`detector_loss`'s ``total`` as a Keras loss for ``model.compile(loss=...)``.

    ``y_true`` is the padded ``(N, M, 5)`` ground truth; the per-image values it returns
    average (Keras' default reduction) to the batch's total divided by its positives.
    """

    def __init__(self, input_size, name: str = "detector_loss", reduction="auto", **settings):
        super().__init__(name=name, reduction=reduction)
        self.settings = LossSettings(input_size=tuple(input_size), **settings)

    def call(self, y_true, y_pred):
        return _per_image_losses(y_true, y_pred, self.settings)["total"]

    def get_config(self):
        config = super().get_config()
        config.update(dataclasses.asdict(self.settings))
        return config


# -- decoding -------------------------------------------------------------------------------


def _decode_image(boxes, scores, *, max_detections, score_threshold, iou_threshold,
                  soft_nms_sigma, pre_nms_top_k, class_agnostic):
    """One image: boxes (A, 4), scores (A, C) -> fixed-size detections."""
    num_classes = scores.shape[-1]
    flat_scores = tf.reshape(scores, [-1])  # (A * C,)
    top_k = min(pre_nms_top_k, flat_scores.shape[0])
    candidate_scores, candidates = tf.math.top_k(flat_scores, k=top_k)  # (k,)
    candidate_classes = tf.math.floormod(candidates, num_classes)
    candidate_boxes = tf.clip_by_value(
        tf.gather(boxes, tf.math.floordiv(candidates, num_classes)), 0.0, 1.0
    )  # (k, 4)
    # A box clipped to nothing (it lay outside the image) is no detection; it must not reach
    # NMS either: TFLite's NON_MAX_SUPPRESSION_V5 kernel, finding its IoU with itself to be 0,
    # selects it again and again.
    extent = candidate_boxes[:, 2:4] - candidate_boxes[:, 0:2]
    candidate_scores *= tf.cast(extent[:, 0] * extent[:, 1] > 0.0, tf.float32)
    nms_boxes = candidate_boxes
    if not class_agnostic:
        # Boxes lie in [0, 1]; shifting class c by 2c keeps classes from ever overlapping, so
        # one NMS call suppresses within each class only.
        nms_boxes += 2.0 * tf.cast(candidate_classes, tf.float32)[:, None]
    selected, selected_scores, num_valid = tf.raw_ops.NonMaxSuppressionV5(
        boxes=nms_boxes,
        scores=candidate_scores,
        max_output_size=max_detections,
        iou_threshold=iou_threshold,
        score_threshold=max(score_threshold, 0.0),  # scores of dropped boxes are 0
        soft_nms_sigma=soft_nms_sigma,
        pad_to_max_output_size=True,
    )  # (K,), (K,), ()
    keep = tf.range(max_detections) < num_valid  # (K,)
    keep_float = tf.cast(keep, tf.float32)
    return {
        "boxes": tf.gather(candidate_boxes, selected) * keep_float[:, None],
        "scores": selected_scores * keep_float,
        "classes": tf.gather(candidate_classes, selected) * tf.cast(keep, tf.int32),
        "num_detections": tf.cast(num_valid, tf.int32),
    }


def decode_detections(raw_outputs, **settings) -> dict[str, tf.Tensor]:
    """Raw ``(N, A, 5 + C)`` outputs -> fixed-size detections (see the module docstring).

    ``settings`` are the keyword arguments of :func:`decode_head_outputs` (``input_size`` is
    required), which decodes the raw tensor's three parts.
    """
    raw_outputs = tf.cast(raw_outputs, tf.float32)
    return decode_head_outputs(
        raw_outputs[..., 0:BOX_CHANNELS],
        raw_outputs[..., OBJECTNESS_CHANNEL:CLASS_CHANNELS_START],
        raw_outputs[..., CLASS_CHANNELS_START:],
        **settings,
    )


def decode_head_outputs(
    box_outputs,
    objectness_logits,
    class_logits,
    *,
    input_size: tuple[int, int],
    strides: tuple[int, ...] = DETECTOR_STRIDES,
    max_detections: int = 100,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    soft_nms_sigma: float = 0.0,
    pre_nms_top_k: int = 1000,
    class_agnostic: bool = False,
) -> dict[str, tf.Tensor]:
    """The raw output's three parts, given apart (as :func:`head_outputs` returns them), ->
    fixed-size detections.

    Args:
      box_outputs: ``(N, A, 4)`` encoded boxes ``t``.
      objectness_logits: ``(N, A, 1)``.
      class_logits: ``(N, A, C)``.
      input_size: ``(height, width)`` the model was built for.
      strides: the model's output strides.
      max_detections: K, detections kept per image.
      score_threshold: detections scoring below it are dropped.
      iou_threshold: hard-NMS overlap above which the lower-scoring box is removed.
      soft_nms_sigma: sigma of soft-NMS's Gaussian decay; 0 for hard NMS.
      pre_nms_top_k: (location, class) candidates kept before NMS.
      class_agnostic: suppress across classes too.

    Returns:
      ``boxes (N, K, 4)`` normalized ``[ymin, xmin, ymax, xmax]``, ``scores (N, K)``,
      ``classes (N, K)`` int32, ``num_detections (N,)`` int32.

    A static batch size is decoded image by image in the graph (plain builtin ops for
    TFLite); an unknown one with ``tf.map_fn``.
    """
    if max_detections < 1 or pre_nms_top_k < 1:
        raise ValueError(
            f"Received: max_detections={max_detections}, pre_nms_top_k={pre_nms_top_k}; "
            "both must be >= 1"
        )
    if soft_nms_sigma < 0:
        raise ValueError(f"Received: soft_nms_sigma={soft_nms_sigma}; it must be >= 0")
    box_outputs = tf.cast(box_outputs, tf.float32)
    boxes = decode_boxes(box_outputs, input_size, strides)  # (N, A, 4)
    scores = tf.sigmoid(tf.cast(objectness_logits, tf.float32)) * tf.sigmoid(
        tf.cast(class_logits, tf.float32))  # (N, A, C)
    settings = dict(
        max_detections=max_detections, score_threshold=score_threshold,
        iou_threshold=iou_threshold, soft_nms_sigma=soft_nms_sigma,
        pre_nms_top_k=pre_nms_top_k, class_agnostic=class_agnostic,
    )
    batch_size = box_outputs.shape[0]
    if batch_size is not None:
        per_image = [
            _decode_image(image_boxes, image_scores, **settings)
            for image_boxes, image_scores in zip(tf.unstack(boxes), tf.unstack(scores))
        ]
        return {key: tf.stack([image[key] for image in per_image]) for key in per_image[0]}
    return tf.map_fn(
        lambda inputs: _decode_image(inputs[0], inputs[1], **settings),
        (boxes, scores),
        fn_output_signature={
            "boxes": tf.TensorSpec([max_detections, 4], tf.float32),
            "scores": tf.TensorSpec([max_detections], tf.float32),
            "classes": tf.TensorSpec([max_detections], tf.int32),
            "num_detections": tf.TensorSpec([], tf.int32),
        },
    )

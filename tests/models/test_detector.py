"""The detector: focal loss (acceptance 3), box coding, target assignment, losses, decoding
with NMS and soft-NMS, and conversion to TFLite's builtin op set."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from edgeline import models
from edgeline.models import detector

INPUT_SIZE = (64, 64)
NUM_LOCATIONS = 8 * 8 + 4 * 4 + 2 * 2  # strides 8, 16, 32 on 64x64


def _logit(probability):
    return float(np.log(probability / (1.0 - probability)))


# -- focal loss (acceptance 3) --------------------------------------------------------------


def _focal_loss_numpy(labels, logits, alpha, gamma):
    """Lin et al. (2017), Eq. 5, written out: -alpha_t (1 - p_t)^gamma log(p_t)."""
    labels, logits = labels.astype(np.float64), logits.astype(np.float64)
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    p_t = np.where(labels == 1, probabilities, 1.0 - probabilities)
    alpha_t = 1.0 if alpha is None else np.where(labels == 1, alpha, 1.0 - alpha)
    return -alpha_t * (1.0 - p_t) ** gamma * np.log(p_t)


@pytest.fixture
def labels_and_logits():
    rng = np.random.default_rng(0)
    labels = (rng.random((64, 10)) < 0.2).astype(np.float32)
    logits = rng.uniform(-8.0, 8.0, (64, 10)).astype(np.float32)
    return labels, logits


def test_focal_loss_with_gamma_zero_and_neutral_alpha_is_cross_entropy(labels_and_logits):
    labels, logits = labels_and_logits
    focal = detector.sigmoid_focal_loss(labels, tf.constant(logits), alpha=None, gamma=0.0)
    cross_entropy = keras.losses.binary_crossentropy(
        labels[..., None], logits[..., None], from_logits=True
    )  # (64, 10): one binary problem per element
    np.testing.assert_allclose(focal.numpy(), cross_entropy.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        focal.numpy(), _focal_loss_numpy(labels, logits, None, 0.0), rtol=1e-5, atol=1e-6
    )
    # alpha = 0.5 weighs both classes alike: half the cross-entropy.
    half = detector.sigmoid_focal_loss(labels, tf.constant(logits), alpha=0.5, gamma=0.0)
    np.testing.assert_allclose(half.numpy(), 0.5 * cross_entropy.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.75, 1.0), (None, 5.0), (0.1, 0.5)])
def test_focal_loss_matches_the_formula(labels_and_logits, alpha, gamma):
    labels, logits = labels_and_logits
    focal = detector.sigmoid_focal_loss(labels, tf.constant(logits), alpha=alpha, gamma=gamma)
    np.testing.assert_allclose(
        focal.numpy(), _focal_loss_numpy(labels, logits, alpha, gamma), rtol=1e-4, atol=1e-7
    )


def test_focal_loss_down_weights_easy_examples():
    """gamma = 2: an example classified with p_t = 0.9 costs 100x less than under CE."""
    logits = tf.constant([_logit(0.9)])
    focal = detector.sigmoid_focal_loss(tf.constant([1.0]), logits, alpha=None, gamma=2.0)
    assert focal.numpy()[0] == pytest.approx(0.01 * -np.log(0.9), rel=1e-4)


# -- locations, box coding, IoU -------------------------------------------------------------


def test_anchor_points_follow_the_output_order():
    points = detector.anchor_points((128, 96))
    assert len(points.strides) == 16 * 12 + 8 * 6 + 4 * 3
    np.testing.assert_array_equal(points.centers[0], [4.0, 4.0])
    np.testing.assert_array_equal(points.centers[1], [4.0, 12.0])  # row-major
    np.testing.assert_array_equal(points.centers[12], [12.0, 4.0])
    np.testing.assert_array_equal(points.centers[16 * 12], [8.0, 8.0])  # first of stride 16
    assert points.levels[-1] == 2 and points.strides[-1] == 32


def test_decode_inverts_encode():
    rng = np.random.default_rng(1)
    raw = rng.uniform(-2.0, 2.0, (2, NUM_LOCATIONS, 4)).astype(np.float32)
    boxes = detector.decode_boxes(tf.constant(raw), INPUT_SIZE)
    np.testing.assert_allclose(detector.encode_boxes(boxes, INPUT_SIZE), raw, atol=1e-4)
    # t = 0 is the cell itself: a box of one stride centred on the cell centre.
    cell = detector.decode_boxes(tf.zeros((1, NUM_LOCATIONS, 4)), INPUT_SIZE).numpy()[0, 0]
    np.testing.assert_allclose(cell, [0.0, 0.0, 8 / 64, 8 / 64], atol=1e-7)


def test_decode_refuses_outputs_of_another_input_size():
    with pytest.raises(ValueError, match="84 locations for input_size=\\(128, 128\\)"):
        detector.decode_boxes(tf.zeros((1, NUM_LOCATIONS, 4)), (128, 128))


def _iou_numpy(a, b):
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    hull = np.prod(np.maximum(a[2:], b[2:]) - np.minimum(a[:2], b[:2]))
    return inter / union, inter / union - (hull - union) / hull


def test_box_iou_and_giou_match_their_definitions():
    rng = np.random.default_rng(2)
    corners = rng.random((50, 2, 2))
    boxes_a = np.concatenate([corners.min(1), corners.max(1)], -1).astype(np.float32)
    corners = rng.random((50, 2, 2))
    boxes_b = np.concatenate([corners.min(1), corners.max(1)], -1).astype(np.float32)
    iou, giou = detector.box_iou(tf.constant(boxes_a), tf.constant(boxes_b))
    expected = np.array([_iou_numpy(a, b) for a, b in zip(boxes_a, boxes_b)])
    np.testing.assert_allclose(iou.numpy(), expected[:, 0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(giou.numpy(), expected[:, 1], rtol=1e-4, atol=1e-6)


# -- target assignment ----------------------------------------------------------------------


def _positives(ground_truth, input_size=(128, 128), center_radius=1.5):
    targets = detector.assign_targets(np.asarray(ground_truth, np.float32), input_size=input_size,
                                      center_radius=center_radius)
    points = detector.anchor_points(input_size)
    positive = targets.positive.numpy()[0]
    return points, positive, targets


def test_objects_go_to_the_level_of_their_size_and_the_cells_around_their_centre():
    # A 16-pixel box centred at (60, 60): stride 8; cells within 1.5 strides: 3 x 3.
    small = [[[52 / 128, 52 / 128, 68 / 128, 68 / 128, 1]]]
    points, positive, targets = _positives(small)
    assert positive.sum() == 9
    assert set(points.levels[positive]) == {0}
    np.testing.assert_array_equal(np.unique(points.centers[positive][:, 0]), [52.0, 60.0, 68.0])
    assert set(targets.classes.numpy()[0][positive]) == {1}
    # A 48-pixel box: stride 16. A 100-pixel box centred at (64, 64): stride 32, 2 x 2 cells.
    _, positive, _ = _positives([[[0.3, 0.3, 0.3 + 48 / 128, 0.3 + 48 / 128, 0]]])
    assert set(points.levels[positive]) == {1}
    points, positive, _ = _positives([[[14 / 128, 14 / 128, 114 / 128, 114 / 128, 0]]])
    assert set(points.levels[positive]) == {2} and positive.sum() == 4


def test_the_default_radius_of_one_stride_keeps_the_cells_nearest_the_centre():
    # Centred on a cell centre (60, 60): that cell alone; between four centres: those four.
    points, positive, _ = _positives([[[52 / 128, 52 / 128, 68 / 128, 68 / 128, 1]]],
                                     center_radius=1.0)
    np.testing.assert_array_equal(points.centers[positive], [[60.0, 60.0]])
    points, positive, _ = _positives([[[56 / 128, 56 / 128, 72 / 128, 72 / 128, 1]]],
                                     center_radius=1.0)
    assert sorted(map(tuple, points.centers[positive])) == [
        (60.0, 60.0), (60.0, 68.0), (68.0, 60.0), (68.0, 68.0)]
    assert detector.LossSettings(input_size=(128, 128)).center_radius == 1.0


def test_padding_rows_and_empty_images_give_no_positives():
    padded = [[[0.1, 0.1, 0.2, 0.2, -1], [0.5, 0.5, 0.9, 0.9, -1]]]
    assert not _positives(padded)[1].any()
    empty = detector.assign_targets(np.zeros((2, 0, 5), np.float32), input_size=(64, 64))
    assert not empty.positive.numpy().any()


def test_a_cell_claimed_by_two_objects_takes_the_smaller():
    ground_truth = [[[50 / 128, 50 / 128, 70 / 128, 70 / 128, 0],    # 20 px
                     [52 / 128, 52 / 128, 68 / 128, 68 / 128, 2]]]   # 16 px, same centre
    _, positive, targets = _positives(ground_truth)
    assert set(targets.classes.numpy()[0][positive]) == {2}


# -- losses ---------------------------------------------------------------------------------

GROUND_TRUTH = np.array(
    [
        [[0.10, 0.10, 0.30, 0.35, 0], [0.40, 0.30, 0.95, 0.90, 2], [0, 0, 0, 0, -1]],
        [[0.55, 0.05, 0.80, 0.30, 1], [0, 0, 0, 0, -1], [0, 0, 0, 0, -1]],
    ],
    np.float32,
)
NUM_CLASSES = 3


def _oracle_outputs(ground_truth=GROUND_TRUTH):
    """Raw outputs that say exactly what the assignment asks for."""
    targets = detector.assign_targets(ground_truth, input_size=INPUT_SIZE)
    positive = targets.positive.numpy()
    box = detector.encode_boxes(targets.boxes, INPUT_SIZE).numpy()
    objectness = np.where(positive, 12.0, -12.0)[..., None]
    one_hot = np.eye(NUM_CLASSES)[targets.classes.numpy()] * positive[..., None]
    classes = np.where(one_hot > 0, 12.0, -12.0)
    return np.concatenate([box, objectness, classes], -1).astype(np.float32)


@pytest.mark.parametrize("box_loss", ["giou", "iou", "smooth_l1"])
def test_losses_vanish_for_the_oracle_and_not_for_noise(box_loss):
    oracle = detector.detector_loss(
        GROUND_TRUTH, _oracle_outputs(), input_size=INPUT_SIZE, box_loss=box_loss
    )
    noise = np.random.default_rng(3).normal(0, 1, (2, NUM_LOCATIONS, 5 + NUM_CLASSES))
    noisy = detector.detector_loss(
        GROUND_TRUTH, noise.astype(np.float32), input_size=INPUT_SIZE, box_loss=box_loss
    )
    assert oracle["box"].numpy() < 1e-4
    assert oracle["classification"].numpy() < 1e-4  # BCE at logits of +-12: 6e-6 a class
    assert noisy["box"].numpy() > 0.1 and noisy["classification"].numpy() > 1.0
    assert oracle["num_positives"].numpy() == noisy["num_positives"].numpy() > 0


def test_objectness_target_is_the_iou_of_the_predicted_box():
    """Boxes 1.5x too large on each side have IoU 1 / 2.25 with their objects; the objectness
    loss is smallest where sigmoid(objectness) equals that IoU."""
    outputs = _oracle_outputs()
    positive = detector.assign_targets(GROUND_TRUTH, input_size=INPUT_SIZE).positive.numpy()
    outputs[..., 2:4] += np.log(1.5)

    def objectness_loss(logit_at_positives):
        outputs[..., 4] = np.where(positive, logit_at_positives, -30.0)
        terms = detector.detector_loss(GROUND_TRUTH, outputs, input_size=INPUT_SIZE,
                                       objectness_target="iou")
        return float(terms["objectness"])

    at_iou = objectness_loss(_logit(1 / 2.25))
    assert at_iou < objectness_loss(_logit(1 / 2.25) + 0.3)
    assert at_iou < objectness_loss(_logit(1 / 2.25) - 0.3)


def test_objectness_target_one_asks_for_certainty_at_every_positive_whatever_its_box():
    """YOLOX's objectness (Ge et al., 2021): 1 at positives, so that it does not wait for the
    boxes to be good before it separates objects from background."""
    outputs = _oracle_outputs()
    positive = detector.assign_targets(GROUND_TRUTH, input_size=INPUT_SIZE).positive.numpy()
    outputs[..., 2:4] += np.log(1.5)  # boxes 1.5x too large: IoU 1 / 2.25

    def objectness_loss(logit_at_positives):
        outputs[..., 4] = np.where(positive, logit_at_positives, -30.0)
        terms = detector.detector_loss(GROUND_TRUTH, outputs, input_size=INPUT_SIZE,
                                       objectness_target="one")
        return float(terms["objectness"])

    losses = [objectness_loss(logit) for logit in (_logit(1 / 2.25), 2.0, 6.0, 12.0)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 1e-3


def test_bce_on_positives_ignores_class_logits_of_the_background():
    """classification_loss='positive_bce' (YOLOX, YOLOv5): the classes are learned where there
    is an object; telling objects from background is the objectness' job. The focal loss
    (RetinaNet) scores every location's class logits instead."""
    outputs = _oracle_outputs()
    positive = detector.assign_targets(GROUND_TRUTH, input_size=INPUT_SIZE).positive.numpy()
    noisy = outputs.copy()
    noisy[..., 5:] = np.where(positive[..., None], outputs[..., 5:], 5.0)  # background: "yes"

    def classification(raw, loss):
        return float(detector.detector_loss(GROUND_TRUTH, raw, input_size=INPUT_SIZE,
                                            classification_loss=loss)["classification"])

    assert classification(noisy, "positive_bce") == pytest.approx(
        classification(outputs, "positive_bce"), abs=1e-6)
    assert classification(noisy, "focal") > 10 * classification(outputs, "focal") + 1.0
    wrong = outputs.copy()
    wrong[..., 5:] = np.where(positive[..., None], -outputs[..., 5:], outputs[..., 5:])
    assert classification(wrong, "positive_bce") > 10.0  # the wrong class at every positive


@pytest.mark.parametrize("box_loss", ["giou", "smooth_l1"])
def test_minimizing_the_loss_over_raw_outputs_finds_the_objects(box_loss):
    """Gradient descent on the raw outputs alone (no network) drives them to the objects:
    the loss's gradients agree with decoding."""
    raw = tf.Variable(np.zeros((2, NUM_LOCATIONS, 5 + NUM_CLASSES), np.float32))
    optimizer = keras.optimizers.Adam(0.1)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = detector.detector_loss(
                GROUND_TRUTH, raw, input_size=INPUT_SIZE, box_loss=box_loss
            )["total"]
        optimizer.apply_gradients([(tape.gradient(loss, raw), raw)])
        return loss

    losses = [float(step()) for _ in range(300)]
    assert losses[-1] < 0.1 * losses[0]
    found = detector.decode_detections(raw, input_size=INPUT_SIZE, score_threshold=0.3)
    for image, objects in enumerate(GROUND_TRUTH):
        objects = objects[objects[:, 4] >= 0]
        assert found["num_detections"].numpy()[image] == len(objects)
        for box in objects:
            matches = found["classes"].numpy()[image] == box[4]
            ious = [_iou_numpy(box[:4], detection)[0]
                    for detection in found["boxes"].numpy()[image][matches]]
            assert max(ious) > 0.9


def test_keras_loss_trains_under_compile_and_fit():
    raw_inputs = keras.Input((NUM_LOCATIONS, 5 + NUM_CLASSES))
    model = keras.Model(raw_inputs, keras.layers.Dense(5 + NUM_CLASSES)(raw_inputs))
    loss = detector.DetectorLoss(input_size=INPUT_SIZE, box_loss="iou", focal_gamma=1.5)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    features = np.random.default_rng(4).normal(0, 1, (2, NUM_LOCATIONS, 5 + NUM_CLASSES))
    history = model.fit(features.astype(np.float32), GROUND_TRUTH, epochs=10, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    # The value Keras reports is detector_loss's total (mean over images of per-image terms).
    expected = detector.detector_loss(
        GROUND_TRUTH, model(features), input_size=INPUT_SIZE, box_loss="iou", focal_gamma=1.5
    )["total"]
    assert model.evaluate(features, GROUND_TRUTH, verbose=0) == pytest.approx(
        float(expected), rel=1e-4
    )
    clone = detector.DetectorLoss.from_config(loss.get_config())
    assert clone.settings == loss.settings


def test_bad_loss_settings():
    with pytest.raises(ValueError, match="box_loss='l2'"):
        detector.detector_loss(GROUND_TRUTH, _oracle_outputs(), input_size=INPUT_SIZE,
                               box_loss="l2")
    with pytest.raises(ValueError, match="focal_gamma=-1"):
        detector.DetectorLoss(input_size=INPUT_SIZE, focal_gamma=-1)
    with pytest.raises(ValueError, match="classification_loss='softmax'"):
        detector.DetectorLoss(input_size=INPUT_SIZE, classification_loss="softmax")
    with pytest.raises(ValueError, match="objectness_target='centerness'"):
        detector.DetectorLoss(input_size=INPUT_SIZE, objectness_target="centerness")


# -- decoding -------------------------------------------------------------------------------


def _raw_with(detections, num_classes=2):
    """Raw outputs holding ``(location, box, class, score)`` detections, background elsewhere."""
    boxes = np.tile([[0.0, 0.0, 0.1, 0.1]], (1, NUM_LOCATIONS, 1)).astype(np.float32)
    objectness = np.full((1, NUM_LOCATIONS, 1), -30.0, np.float32)
    classes = np.full((1, NUM_LOCATIONS, num_classes), -30.0, np.float32)
    for location, box, class_index, score in detections:
        boxes[0, location] = box
        objectness[0, location] = 30.0  # sigmoid = 1
        classes[0, location, class_index] = _logit(score)
    encoded = detector.encode_boxes(tf.constant(boxes), INPUT_SIZE).numpy()
    return np.concatenate([encoded, objectness, classes], -1)


FIRST = (0.2, 0.2, 0.6, 0.6)
OVERLAPPING = (0.2, 0.3, 0.6, 0.7)  # IoU with FIRST: 0.3 / 0.5 = 0.6
DISTANT = (0.7, 0.7, 0.9, 0.9)


def test_nms_suppresses_within_a_class_only():
    raw = _raw_with([(3, FIRST, 0, 0.9), (10, OVERLAPPING, 0, 0.8), (20, OVERLAPPING, 1, 0.7),
                     (30, DISTANT, 0, 0.6), (40, DISTANT, 1, 0.01)])
    found = detector.decode_detections(raw, input_size=INPUT_SIZE, max_detections=5,
                                       iou_threshold=0.5, score_threshold=0.05)
    assert found["num_detections"].numpy().tolist() == [3]
    np.testing.assert_allclose(found["scores"].numpy()[0], [0.9, 0.7, 0.6, 0, 0], atol=1e-5)
    assert found["classes"].numpy()[0].tolist() == [0, 1, 0, 0, 0]
    np.testing.assert_allclose(found["boxes"].numpy()[0][:3], [FIRST, OVERLAPPING, DISTANT],
                               atol=1e-5)
    assert not found["boxes"].numpy()[0][3:].any()  # padding rows are zeros
    agnostic = detector.decode_detections(raw, input_size=INPUT_SIZE, max_detections=5,
                                          class_agnostic=True)
    assert agnostic["classes"].numpy()[0][: agnostic["num_detections"].numpy()[0]].tolist() == [
        0, 0]


def test_soft_nms_decays_overlapping_scores():
    raw = _raw_with([(3, FIRST, 0, 0.9), (10, OVERLAPPING, 0, 0.8), (30, DISTANT, 0, 0.6)])
    sigma = 0.5
    found = detector.decode_detections(raw, input_size=INPUT_SIZE, max_detections=4,
                                       soft_nms_sigma=sigma, score_threshold=0.05)
    decayed = 0.8 * np.exp(-(0.6**2) / (2 * sigma))  # Gaussian weight of the second box
    assert found["num_detections"].numpy().tolist() == [3]
    np.testing.assert_allclose(found["scores"].numpy()[0], [0.9, 0.6, decayed, 0.0], atol=1e-4)
    # A decayed score under the threshold drops the box.
    strict = detector.decode_detections(raw, input_size=INPUT_SIZE, max_detections=4,
                                        soft_nms_sigma=sigma, score_threshold=0.58)
    assert strict["num_detections"].numpy().tolist() == [2]


def test_decoding_with_an_unknown_batch_size_matches_the_static_one():
    raw = np.concatenate([_raw_with([(3, FIRST, 0, 0.9)]), _raw_with([(30, DISTANT, 1, 0.6)])])
    static = detector.decode_detections(raw, input_size=INPUT_SIZE, max_detections=3)
    dynamic_decode = tf.function(
        lambda outputs: detector.decode_detections(outputs, input_size=INPUT_SIZE,
                                                   max_detections=3),
        input_signature=[tf.TensorSpec([None, NUM_LOCATIONS, 7], tf.float32)],
    )
    dynamic = dynamic_decode(raw)
    for key in static:
        np.testing.assert_allclose(dynamic[key].numpy(), static[key].numpy(), atol=1e-6)
    assert static["num_detections"].numpy().tolist() == [1, 1]


def test_boxes_outside_the_image_are_dropped():
    outside = (1.2, 1.2, 1.5, 1.5)  # clipped to the image, nothing is left
    raw = _raw_with([(3, outside, 0, 0.95), (30, DISTANT, 1, 0.6)])
    found = detector.decode_detections(raw, input_size=INPUT_SIZE, max_detections=3)
    assert found["num_detections"].numpy().tolist() == [1]
    np.testing.assert_allclose(found["boxes"].numpy()[0, 0], DISTANT, atol=1e-5)


def _convert_builtins_only(function, variables=()):
    """TFLite flatbuffer of a traced function, with TFLite's builtin op set alone; the
    converter's trackable is a module holding only the variables (given the Keras model it
    would first write a SavedModel of every layer, which takes minutes)."""
    holder = tf.Module()
    holder.model_variables = list(variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], holder
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


@pytest.mark.parametrize("soft_nms_sigma", [0.0, 0.5])
def test_decoding_converts_to_tflite_builtins_and_matches(soft_nms_sigma):
    """Decoding alone (NON_MAX_SUPPRESSION_V5, TOPK_V2, ...) on random raw outputs, many of
    whose boxes fall outside the image, gives LiteRT the same detections as TensorFlow."""
    from ai_edge_litert.interpreter import Interpreter

    settings = dict(input_size=INPUT_SIZE, max_detections=20, score_threshold=0.01,
                    soft_nms_sigma=soft_nms_sigma)
    decode = tf.function(
        lambda raw: detector.decode_detections(raw, **settings),
        input_signature=[tf.TensorSpec([1, NUM_LOCATIONS, 5 + NUM_CLASSES], tf.float32,
                                       name="raw")],
    )
    runner = Interpreter(model_content=_convert_builtins_only(decode)).get_signature_runner()
    for seed in range(3):
        raw = np.random.default_rng(seed).normal(0, 2, (1, NUM_LOCATIONS, 5 + NUM_CLASSES))
        raw = raw.astype(np.float32)
        tflite, expected = runner(raw=raw), decode(raw)
        assert expected["num_detections"].numpy()[0] == 20
        assert tflite["num_detections"].tolist() == expected["num_detections"].numpy().tolist()
        assert tflite["classes"].tolist() == expected["classes"].numpy().tolist()
        np.testing.assert_allclose(tflite["scores"], expected["scores"], atol=1e-5)
        np.testing.assert_allclose(tflite["boxes"], expected["boxes"], atol=1e-5)


# -- the network ----------------------------------------------------------------------------


def _tiny_detector(num_classes=3):
    return models.build(
        "mobilenet_v2_detector", num_classes=num_classes, input_shape=(*INPUT_SIZE, 3),
        backbone_width_multiplier=0.35, fpn_channels=16, head_channels=16, head_depth=1,
    )


def test_detector_outputs_and_prior(assert_config_round_trip):
    model = _tiny_detector()
    assert model.output_shape == (None, NUM_LOCATIONS, 5 + 3)
    assert model.get_layer("fpn_upsample16").interpolation == "nearest"
    # Objectness and class biases start at the focal-loss prior pi = 0.01.
    bias = model.get_layer("head8_classes").bias.numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), 0.01, rtol=1e-5)
    assert_config_round_trip(model, (2, *INPUT_SIZE, 3))


def test_detector_input_must_be_a_multiple_of_32():
    with pytest.raises(ValueError, match="input_shape=\\(100, 100, 3\\)"):
        models.build("mobilenet_v2_detector", input_shape=(100, 100, 3))


@pytest.mark.slow
def test_detector_with_decoding_converts_to_tflite_builtins_and_matches():
    """The network and its decoding (soft-NMS) convert with TFLite's builtin op set alone
    (no Select-TF ops), and LiteRT reproduces TensorFlow's detections."""
    from ai_edge_litert.interpreter import Interpreter

    # Seeded weights. Unseeded, they came from wherever earlier tests in the same worker had
    # left the global RNG, and some draws make two candidates' scores tie within float
    # rounding, which LiteRT and TensorFlow break differently (an order swap, or a different
    # 10th detection at the max_detections cut): seed 6 of seeds 0-7 does (with the head
    # kernels scaled by 8 instead of 4, seeds 2 and 6). The test is about conversion, so it
    # uses a draw without such a tie.
    keras.utils.set_random_seed(2)
    model = _tiny_detector()
    images = np.random.default_rng(5).uniform(-1, 1, (4, *INPUT_SIZE, 3)).astype(np.float32)
    # Batch-norm statistics from data (freshly initialized ones leave the features near zero
    # and every score at the prior), and a wider spread of scores, so that the detections
    # and their order do not hang on float rounding.
    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # one training-mode pass sets the moving statistics
    model(images, training=True)
    for layer in norms:
        layer.momentum = 0.9
    for stride in detector.DETECTOR_STRIDES:
        for part in ("objectness", "classes"):
            layer = model.get_layer(f"head{stride}_{part}")
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 4.0, bias])
    settings = dict(input_size=INPUT_SIZE, max_detections=10, soft_nms_sigma=0.5,
                    score_threshold=0.001)

    @tf.function(input_signature=[tf.TensorSpec([1, *INPUT_SIZE, 3], tf.float32, name="images")])
    def serve(images):
        return detector.decode_detections(model(images, training=False), **settings)

    interpreter = Interpreter(model_content=_convert_builtins_only(serve, model.variables))
    runner = interpreter.get_signature_runner()
    tflite = runner(images=images[:1])
    expected = {key: value.numpy() for key, value in serve(images[:1]).items()}
    assert expected["num_detections"][0] > 1
    assert tflite["num_detections"].tolist() == expected["num_detections"].tolist()
    assert tflite["classes"].tolist() == expected["classes"].tolist()
    np.testing.assert_allclose(tflite["scores"], expected["scores"], atol=1e-4)
    np.testing.assert_allclose(tflite["boxes"], expected["boxes"], atol=1e-4)

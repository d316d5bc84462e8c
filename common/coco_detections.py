"""Detector outputs -> COCO detections in pixels, with the COCO image ids of the ground truth.

The conversion half of COCO scoring (:mod:`.coco` is the scoring half): the train stage's box
mAP, the evaluate stage and the export stage's parity gate all turn detections into COCO
results here, so a Model's ``box_map`` and a Metrics artifact's ``map`` come from one code path.

A detector's network returns raw ``(N, A, 5 + C)`` predictions (see
:mod:`edgeline.models.detector`); they are decoded here with the caller's score threshold and
NMS or soft-NMS settings. A model exported with its decoding inside already returns ``boxes``,
``scores``, ``classes`` and ``num_detections``, which are used as they are.

Boxes are normalized ``[ymin, xmin, ymax, xmax]`` of the network input, which is the whole
image resized (the detection evaluation convention: no crop), so the pixel box is the
normalized one times the image's width and height; COCO wants ``[x, y, width, height]``.
The image id is the integer in ``image/source_id`` (ingest writes the COCO id there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgeline.pipeline.errors import UserError

DECODED_KEYS = ("boxes", "scores", "classes", "num_detections")


def _named(outputs: Mapping[str, np.ndarray], key: str) -> np.ndarray | None:
    matches = [name for name in outputs if key in name.lower()]
    if key == "classes" or key == "boxes" or key == "scores":
        matches = [name for name in matches if "num_detections" not in name.lower()]
    return outputs[matches[0]] if len(matches) == 1 else None


def decoded_detections(
    outputs: Mapping[str, np.ndarray],
    *,
    input_size: Sequence[int],
    decode_settings: Mapping,
    strides: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """``boxes (N, K, 4)``, ``scores (N, K)``, ``classes (N, K)``, ``num_detections (N,)`` of a
    detector's outputs: raw outputs are decoded with ``decode_settings``, decoded ones taken."""
    named = {key: _named(outputs, key) for key in DECODED_KEYS}
    if all(value is not None for value in named.values()):
        return {
            "boxes": np.asarray(named["boxes"], np.float32),
            "scores": np.asarray(named["scores"], np.float32),
            # rint: a runtime may return class indices and counts as floats.
            "classes": np.rint(np.asarray(named["classes"])).astype(np.int64),
            "num_detections": np.rint(
                np.asarray(named["num_detections"]).reshape(-1)).astype(np.int64),
        }
    if len(outputs) != 1:
        raise UserError(
            f"Received: detector outputs {sorted(outputs)}; expected one raw (N, A, 5 + C) "
            f"tensor or the decoded {DECODED_KEYS}"
        )
    (raw,) = outputs.values()
    if raw.ndim != 3 or raw.shape[-1] < 6:
        raise UserError(
            f"Received: detector output of shape {raw.shape}; expected (N, A, 5 + classes)"
        )
    from edgeline.models import detector

    extra = {"strides": tuple(strides)} if strides else {}
    decoded = detector.decode_detections(
        raw, input_size=tuple(int(s) for s in input_size), **extra, **dict(decode_settings)
    )
    return {
        "boxes": decoded["boxes"].numpy(),
        "scores": decoded["scores"].numpy(),
        "classes": decoded["classes"].numpy().astype(np.int64),
        "num_detections": decoded["num_detections"].numpy().astype(np.int64),
    }


def image_id_of(source_id: bytes | str) -> int:
    """The COCO image id stored in ``image/source_id``."""
    text = source_id.decode() if isinstance(source_id, bytes) else str(source_id)
    try:
        return int(text)
    except ValueError:
        raise UserError(
            f"Received: image/source_id={text!r}; expected the integer COCO image id"
        ) from None


def to_coco_detections(
    decoded: Mapping[str, np.ndarray],
    *,
    image_ids: Sequence[int],
    heights: Sequence[int],
    widths: Sequence[int],
    category_ids: Sequence[int],
) -> list[dict]:
    """COCO results (``image_id``, ``category_id``, ``bbox [x, y, w, h]`` in pixels,
    ``score``) of decoded detections; class index ``c`` is ``category_ids[c]``."""
    category_ids = np.asarray(category_ids, np.int64)
    results = []
    for row, image_id in enumerate(image_ids):
        count = int(decoded["num_detections"][row])
        # Clipped to the image, as the TF Object Detection API and Detectron2 do: the part of a
        # box past the edge covers no object pixel and would only lower its IoU.
        boxes = np.clip(decoded["boxes"][row, :count], 0.0, 1.0)  # (k, 4) normalized
        scale = np.array([heights[row], widths[row], heights[row], widths[row]], np.float64)
        ymin, xmin, ymax, xmax = (boxes * scale).T  # (k,) each, in pixels
        classes = decoded["classes"][row, :count]
        if count and (classes.min() < 0 or classes.max() >= len(category_ids)):
            raise UserError(
                f"Received: class index {int(classes.max())}; the model has "
                f"{len(category_ids)} categories"
            )
        for i in range(count):
            results.append({
                "image_id": int(image_id),
                "category_id": int(category_ids[classes[i]]),
                "bbox": [float(xmin[i]), float(ymin[i]), float(xmax[i] - xmin[i]),
                         float(ymax[i] - ymin[i])],
                "score": float(decoded["scores"][row, i]),
            })
    return results

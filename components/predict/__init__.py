"""``edgeline predict``: a model on your own pictures, or a Policy on a few episodes.

Not a pipeline stage (it publishes no artifact): a command over the stages' artifacts, as
``yolo predict`` is for Ultralytics users. It reads Model, TFLiteModel and Policy artifacts
through ``edgeline.common`` and ``edgeline.models``, and plays policies with the evaluate
stage's public ``GreedyEvaluator``; no stage calls it.

    run              images -> predictions.json and annotated copies (core.run)
    play             a Policy -> returns and a GIF of the first episode (policy.play)
    PredictOptions
"""

from edgeline.components.predict.options import PredictOptions
from edgeline.pipeline.stage import lazy_public_names

__getattr__ = lazy_public_names(__name__, {"run": "core", "play": "policy"})
__all__ = ["PredictOptions", "play", "run"]

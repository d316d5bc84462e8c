"""The evaluate stage: top-k, COCO mAP and average return, on a Keras, SavedModel or TFLite model.

Its public names, the only ones other stages may use (export gates on its metrics, compress
scores with it, rl evaluates its policy with it during training):

    run               the stage core on a Model (core.run)
    top_k_correct     which images are right at top-k
    GreedyEvaluator   the mean greedy return of a policy over episodes
    EvaluateOptions
"""

# Every name lazily, EvaluateOptions too, and the helper from the stdlib-only module: this
# __init__ runs for `edgeline coco-eval` (coco_cli is a module of this package), whose start-up
# users time against pycocotools and which needs none of them.
from edgeline.pipeline.lazy import lazy_public_names

__getattr__ = lazy_public_names(__name__, {
    "EvaluateOptions": "options", "run": "core", "top_k_correct": "classification",
    "GreedyEvaluator": "returns",
})
__all__ = ["EvaluateOptions", "GreedyEvaluator", "run", "top_k_correct"]

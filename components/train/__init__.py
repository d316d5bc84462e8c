"""The train stage: Examples in, a trained Model out (Keras, tf.distribute).

Its public names, the only ones other stages may use (compress fine-tunes with them):

    run              the stage core (core.run)
    make_task        the task (loss, metrics, datasets) of a classifier or detector
    read_examples    an Examples artifact's shards, task and classes
    TrainOptions, DataOptions, AugmentationOptions
"""

from edgeline.components.train.options import AugmentationOptions, DataOptions, TrainOptions
from edgeline.pipeline.stage import lazy_public_names

__getattr__ = lazy_public_names(__name__, {
    "run": "core", "make_task": "task", "read_examples": "data",
})
__all__ = ["AugmentationOptions", "DataOptions", "TrainOptions", "make_task", "read_examples",
           "run"]

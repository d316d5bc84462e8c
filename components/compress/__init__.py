"""The compress stage: TF-MOT pruning, QAT, clustering, distillation and BN folding on a Model,
and the compression frontier of several recipes.

Its public names (no other stage calls it: calls between stages run one way, and compress is
at their top):

    run              one recipe on a Model (core.run)
    CompressOptions
"""

from edgeline.components.compress.options import CompressOptions
from edgeline.pipeline.stage import lazy_public_names

__getattr__ = lazy_public_names(__name__, {"run": "core"})
__all__ = ["CompressOptions", "run"]
